"""The requests an ApiServerSource adapter posts, reproduced byte for byte.

Knative's receive adapter (``pkg/adapter/apiserver/events``) wraps each object it watches in a
binary-mode CloudEvent: ``ce-type`` ``dev.knative.apiserver.resource.{add,update,delete}``,
``ce-source`` the API server URL, ``ce-subject`` a self link that always names a namespace
segment (empty for cluster-scoped objects), the extensions ``kind``, ``name``, ``namespace``
and ``apiversion``, a fresh UUID as ``ce-id`` and the send time (RFC 3339, nanoseconds) as
``ce-time``. Its HTTP client is Go's: Go's header names, and the object encoded by Go's JSON
encoder (keys sorted, no spaces, ``<``, ``>`` and ``&`` escaped).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

RESOURCE_TYPE = "dev.knative.apiserver.resource.{action}"
DEFAULT_SOURCE = "https://10.96.0.1:443"
# Set by Go's HTTP client around the CloudEvent; a replay posts its own.
TRANSPORT_HEADERS = frozenset({"host", "content-length", "accept-encoding", "user-agent"})
_GO_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_GO_ESCAPES["\u2029"] = "\\u2029"


def go_json(value: Any) -> bytes:
    """``value`` as Go's encoding/json writes a decoded object (``map[string]any``)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in _GO_ESCAPES.items():
        text = text.replace(char, escaped)  # these only occur inside JSON strings
    return text.encode()


def go_time(moment: datetime, nanosecond: int | None = None) -> str:
    """Go's ``time.RFC3339Nano`` in UTC: trailing zeros of the fraction dropped.
    ``nanosecond`` (0-999999999) replaces the microseconds Python keeps."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    nanos = moment.microsecond * 1000 if nanosecond is None else nanosecond
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def plural(kind: str) -> str:
    """The adapter's guess of a resource's plural (apimachinery UnsafeGuessKindToResource)."""
    singular = kind.lower()
    if not singular or singular.endswith("endpoints"):
        return singular
    if singular.endswith("s"):
        return singular + "es"
    if singular.endswith("y"):
        return singular[:-1] + "ies"
    return singular + "s"


def subject(api_version: str, kind: str, namespace: str, name: str) -> str:
    version = api_version
    if "." in version and "/" not in version:
        version += "/versionUnknown"
    return f"/apis/{version}/namespaces/{namespace}/{plural(kind)}/{name}"


def adapter_headers(
    obj: Mapping[str, Any],
    *,
    action: str,
    event_id: str,
    sent_at: datetime,
    nanosecond: int | None = None,
    source: str = DEFAULT_SOURCE,
) -> dict[str, str]:
    """The CloudEvent headers the adapter sets for ``obj`` in Resource mode (binary)."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    return {
        "Ce-Apiversion": api_version,
        "Ce-Id": event_id,
        "Ce-Kind": kind,
        "Ce-Name": name,
        "Ce-Namespace": namespace,
        "Ce-Source": source,
        "Ce-Specversion": "1.0",
        "Ce-Subject": subject(api_version, kind, namespace, name),
        "Ce-Time": go_time(sent_at, nanosecond),
        "Ce-Type": RESOURCE_TYPE.format(action=action),
        "Content-Type": "application/json",
    }


def sendable(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers without the ones an HTTP client sets for itself."""
    return {k: v for k, v in headers.items() if k.lower() not in TRANSPORT_HEADERS}
