"""The HTTP entry: a functions-framework target.

    functions-framework --target handle --source functions/main.py --port 8080

It only parses the CloudEvent, hands it to the pipeline, and maps the outcome to a status:
202 with an empty body for every accepted event (never the ``@cloud_event`` decorator's
200 ``OK``, which a Knative Broker counts as a failed delivery), 400 for what is not a valid
CloudEvent, 413 for a body over the limit, 503 when a retry can fix a failed agent call (never
500: an ApiServerSource drops a 500 at once).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import flask
import functions_framework
from cloudevents.exceptions import GenericException
from cloudevents.http import from_http

from khook.core.events import Envelope
from khook.core.outcome import Counts, Outcome, Status
from khook.logs import log
from khook.runtime import NotReady, current
from khook.settings import SettingsError

logger = logging.getLogger("khook.http")

HEALTH_PATHS = ("/healthz", "/readyz")
_REQUIRED_BINARY = ("ce-id", "ce-source", "ce-type")
_CHUNK = 64 * 1024


class BadRequest(ValueError):
    pass


@functions_framework.http
def handle(request: flask.Request) -> flask.Response:
    try:
        return _handle(request)
    except Exception as exc:  # a bug must not take the worker down; say so and log it all
        logger.exception("unexpected error handling a request")
        return _response(500, error=f"internal error: {type(exc).__name__}")


def _handle(request: flask.Request) -> flask.Response:
    if request.path in HEALTH_PATHS:
        return _health(request.path)
    if request.method != "POST":
        response = _response(405, error="POST a CloudEvent to this URL")
        response.headers["Allow"] = "POST"
        return response
    try:
        runtime = current()
        pipeline = runtime.pipeline()
    except (NotReady, SettingsError) as exc:
        _drain(request)
        return _response(503, error=str(exc))
    limit = runtime.settings.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        _drain(request)
        return _response(413, error=f"body is {request.content_length} bytes; limit {limit}")
    body = _read(request, limit)
    if body is None:
        return _response(413, error=f"body exceeds the limit of {limit} bytes")
    try:
        envelope = parse_cloudevent(dict(request.headers), body)
    except BadRequest as exc:
        return _response(400, error=str(exc))
    outcome = pipeline.process(envelope)
    return _outcome_response(outcome)


def parse_cloudevent(headers: dict[str, str], body: bytes) -> Envelope:
    """Binary or structured mode, into attributes and data; data in JSON is decoded here."""
    lower = {k.lower(): v for k, v in headers.items()}
    media = lower.get("content-type", "").split(";")[0].strip().lower()
    if "ce-specversion" not in lower and not media.startswith("application/cloudevents"):
        raise BadRequest(
            "not a CloudEvent: send binary mode (ce-specversion, ce-id, ce-source, ce-type "
            "headers) or structured mode (Content-Type: application/cloudevents+json)"
        )
    if "ce-specversion" in lower:
        missing = [h for h in _REQUIRED_BINARY if not lower.get(h)]
        if missing:
            raise BadRequest(f"missing required CloudEvent header(s): {', '.join(missing)}")
    try:
        event = from_http(headers, body, data_unmarshaller=lambda raw: raw)
    except GenericException as exc:
        raise BadRequest(f"not a valid CloudEvent: {_first_line(exc)}") from None
    attributes = {k: str(v) for k, v in event.get_attributes().items()}
    if not _sender_set_time(lower, body):
        # The SDK stamps a missing time with "now"; khook then uses its own clock instead.
        attributes.pop("time", None)
    return Envelope(attributes, _decode_data(event.data, attributes.get("datacontenttype", "")))


def _sender_set_time(lower_headers: dict[str, str], body: bytes) -> bool:
    if "ce-specversion" in lower_headers:
        return bool(lower_headers.get("ce-time"))
    try:
        envelope = json.loads(body)
    except ValueError:
        return False
    return isinstance(envelope, dict) and bool(envelope.get("time"))


def _decode_data(data: Any, content_type: str) -> Any:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    is_json = not media or media == "application/json" or media.endswith("+json")
    if isinstance(data, bytes | bytearray) or (is_json and isinstance(data, str)):
        raw = bytes(data) if not isinstance(data, str) else data.encode()
        if not raw.strip():
            return None
        if not is_json:
            return raw
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"event data is not valid JSON: {exc}") from None
    return data


def _health(path: str) -> flask.Response:
    if path == "/healthz":
        return _response(200, body={"status": "ok"})
    try:
        hooks = current().pipeline().hooks.current(wait=False)
    except (NotReady, SettingsError) as exc:
        return _response(503, body={"status": "not ready", "error": str(exc)})
    if not hooks.synced:
        return _response(503, body={"status": "not ready", "error": "listing Hooks"})
    return _response(
        200, body={"status": "ready", "hooks": len(hooks.hooks), "invalidHooks": len(hooks.invalid)}
    )


def _outcome_response(outcome: Outcome) -> flask.Response:
    if outcome.retryable:
        reasons = [outcome.error] if outcome.error else []
        reasons += [r.reason for r in outcome.results if r.status is Status.FAILED and r.retryable]
        response = _response(503, outcome=outcome, body={"error": "; ".join(reasons)})
        if outcome.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(outcome.retry_after)))
        return response
    return _response(202, outcome=outcome)


def _response(
    status: int,
    *,
    outcome: Outcome | None = None,
    error: str | None = None,
    body: dict[str, Any] | None = None,
) -> flask.Response:
    if error is not None:
        body = {"error": error}
        log(
            logger,
            logging.WARNING if status < 500 else logging.ERROR,
            "request rejected",
            status=status,
            error=error,
        )
    response = flask.Response(
        json.dumps(body) if body is not None else "",
        status=status,
        mimetype="application/json" if body is not None else None,
    )
    if body is None:
        del response.headers["Content-Type"]  # an empty answer has no media type
    types = list(outcome.event_types) if outcome else []
    response.headers["X-Khook-Event-Type"] = ",".join(types) or "none"
    response.headers["X-Khook-Outcome"] = (outcome.counts() if outcome else Counts()).header()
    return response


def _read(request: flask.Request, limit: int) -> bytes | None:
    """Read at most ``limit`` bytes; None (after draining the rest) when there is more."""
    stream = request.stream
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            _drain(request)
            return None
        chunks.append(chunk)


def _drain(request: flask.Request) -> None:
    # functions-framework reads the whole request after we answer; reading it here, in
    # chunks and discarding them, keeps an oversized body from being held in memory.
    while request.stream.read(_CHUNK):
        pass


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
