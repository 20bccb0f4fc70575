"""CloudEvents over HTTP, parsed strictly: headers and body bytes in, an Envelope out.

Binary mode (``ce-*`` headers, the data as the body: what an ApiServerSource sends) and
structured mode (``application/cloudevents+json``). Every byte comes from the network, so
every way the input can be wrong is a :class:`CloudEventError` (a 400), never an exception of
another kind: JSON nested deeper than orjson's limit (1024 levels), attributes that are null
or of the wrong type, a wrong specversion, an undecodable body.

khook parses CloudEvents itself rather than through the cloudevents SDK's ``from_http``, which
answers some of these with exceptions that are not its own (a RecursionError for deep JSON)
and stamps a missing ``time`` with the current time.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

import orjson

from khook.core.events import Envelope

SPEC_VERSIONS = frozenset({"1.0", "0.3"})
REQUIRED = ("id", "source", "type")
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
# A CloudEvents attribute name is lowercase letters and digits; the spec recommends at most
# 20 characters. Bounds on names, values and their number keep a request's cost bounded.
_NAME_LIMIT = 64
_VALUE_LIMIT = 4096
_ATTRIBUTE_LIMIT = 64
# The attributes an ApiServerSource sends (the spec's and its extensions): valid names all,
# and fewer than the limit; by header, so one lookup decides each of these headers.
_SENT = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
    | {"kind", "name", "namespace", "apiversion"}
)
_KNOWN = {f"ce-{name}": name for name in _SENT}


class CloudEventError(ValueError):
    """Not a CloudEvent khook can read: the sender's fault, answered 400, never retried."""


def media_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def is_json_media(media: str) -> bool:
    return not media or media == "application/json" or media.endswith("+json")


def parse(headers: Mapping[str, str], body: bytes) -> Envelope:
    """Parse one CloudEvent; ``headers`` may use any case."""
    return parse_lowercase({k.lower(): v for k, v in headers.items()}, body)


def parse_lowercase(lower: Mapping[str, str], body: bytes) -> Envelope:
    """:func:`parse`, for headers whose names are all lowercase already (an ASGI server's)."""
    if "ce-specversion" in lower:
        return _binary(lower, body)
    media = media_type(lower.get("content-type", ""))
    if media == STRUCTURED:
        return _structured(body)
    if media == BATCH:
        raise CloudEventError("batched CloudEvents are not accepted: send one event per request")
    raise CloudEventError(
        "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type headers) "
        "or structured mode (Content-Type: application/cloudevents+json)"
    )


def _binary(lower: Mapping[str, str], body: bytes) -> Envelope:
    attributes: dict[str, str] = {}
    for name, value in lower.items():
        known = _KNOWN.get(name)
        if known is not None and len(value) <= _VALUE_LIMIT:
            attributes[known] = value  # a valid name, lowercase: nothing to check
        elif name.startswith("ce-"):
            _put(attributes, name[3:], value)
    if len(attributes) > _ATTRIBUTE_LIMIT:  # the known ones came past the limit
        raise CloudEventError(f"more than {_ATTRIBUTE_LIMIT} CloudEvent attributes")
    _check_required(attributes, "header", "ce-")
    content_type = lower.get("content-type", "")
    if content_type:
        _put(attributes, "datacontenttype", content_type)
    return Envelope(attributes, decode_data(body, content_type))


def _structured(body: bytes) -> Envelope:
    document = _loads(body, "not a valid CloudEvent: the body")
    if not isinstance(document, dict):
        raise CloudEventError("a structured CloudEvent is a JSON object")
    attributes = _structured_attributes(document)
    _check_required(attributes, "attribute", "")
    content_type = attributes.get("datacontenttype", "")
    if "data_base64" in document:
        if "data" in document:
            raise CloudEventError("a CloudEvent carries data or data_base64, not both")
        raw = document["data_base64"]
        if not isinstance(raw, str):
            raise CloudEventError("data_base64 must be a string")
        try:
            data_bytes = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise CloudEventError("data_base64 is not valid base64") from None
        return Envelope(attributes, decode_data(data_bytes, content_type))
    data = document.get("data")
    if isinstance(data, str) and is_json_media(media_type(content_type)) and content_type:
        # JSON data given as a JSON string: the sender serialised it twice.
        return Envelope(attributes, decode_data(data.encode(), content_type))
    return Envelope(attributes, data)


def _structured_attributes(document: Mapping[str, Any]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for name, value in document.items():
        if name in ("data", "data_base64"):
            continue
        if value is None:
            if name in REQUIRED or name == "specversion":
                raise CloudEventError(f"CloudEvent attribute {name!r} is null")
            continue  # an optional attribute set to null is absent
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int):
            text = str(value)
        else:
            raise CloudEventError(
                f"CloudEvent attribute {_shown(name)!r} must be a string, integer or boolean"
            )
        _put(attributes, name, text)
    return attributes


def decode_data(body: bytes, content_type: str) -> Any:
    """The event's data: JSON decoded when its media type is JSON, else the bytes."""
    if not body.strip():
        return None
    if not is_json_media(media_type(content_type)):
        return body
    return _loads(body, "event data")


def _loads(raw: bytes, what: str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CloudEventError(f"{what} is not valid JSON: {_first_line(str(exc))}") from None


def _put(attributes: dict[str, str], name: str, value: str) -> None:
    if len(attributes) >= _ATTRIBUTE_LIMIT:
        raise CloudEventError(f"more than {_ATTRIBUTE_LIMIT} CloudEvent attributes")
    if not name or len(name) > _NAME_LIMIT or not (name.isascii() and name.isalnum()):
        # Not a CloudEvents attribute name (an intermediary's header such as ce-foo-bar):
        # not part of the event, so not khook's to judge.
        return
    if len(value) > _VALUE_LIMIT:
        raise CloudEventError(f"CloudEvent attribute {name!r} is over {_VALUE_LIMIT} characters")
    attributes[name.lower()] = value


def _check_required(attributes: Mapping[str, str], what: str, prefix: str) -> None:
    version = attributes.get("specversion", "")
    if version not in SPEC_VERSIONS:
        raise CloudEventError(
            f"unsupported CloudEvents specversion {_shown(version)!r}; khook reads 1.0 (and 0.3)"
        )
    if attributes.get("id") and attributes.get("source") and attributes.get("type"):
        return  # REQUIRED, all there: no list of what is missing to make
    missing = [prefix + name for name in REQUIRED if not attributes.get(name)]
    if missing:
        raise CloudEventError(f"missing required CloudEvent {what}(s): {', '.join(missing)}")


def _shown(text: str) -> str:
    """Echo what the sender sent, but short and printable."""
    clipped = text[:40]
    return "".join(ch if ch.isprintable() else "?" for ch in clipped)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0][:200] if lines else "undecodable"
