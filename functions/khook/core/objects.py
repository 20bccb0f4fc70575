"""Reading Kubernetes objects, which arrive as untyped JSON, into typed values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

JSON = Mapping[str, Any]

# For isinstance(value, MAPPING): JSON's objects are dicts, told apart at once, where
# isinstance(value, Mapping) alone calls ABCMeta.__instancecheck__, a Python function (~80 ns).
MAPPING = (dict, Mapping)


def get_path(obj: Any, *path: str) -> Any:
    """Walk nested mappings; any missing step or non-mapping gives None."""
    cur = obj
    for step in path:
        # JSON decodes to dicts: the exact type check first spares most the slower ABC check,
        # and a missing step (None) is told apart before it.
        if type(cur) is not dict and (cur is None or not isinstance(cur, Mapping)):
            return None
        cur = cur.get(step)
    return cur


def get_str(obj: Any, *path: str) -> str:
    value = obj  # get_path's walk, inline: this runs ~20 times for every event
    for step in path:
        if type(value) is not dict and (value is None or not isinstance(value, Mapping)):
            return ""
        value = value.get(step)
    if type(value) is str or isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def get_int(obj: Any, *path: str) -> int | None:
    value = obj  # get_path's walk, inline (as in get_str)
    for step in path:
        if type(value) is not dict and (value is None or not isinstance(value, Mapping)):
            return None
        value = value.get(step)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return None


def get_list(obj: Any, *path: str) -> list[Any]:
    value = obj  # get_path's walk, inline: a Pod's event reads about ten lists
    for step in path:
        if type(value) is not dict and (value is None or not isinstance(value, Mapping)):
            return []
        value = value.get(step)
    return value if isinstance(value, list) else []


def parse_time(value: Any) -> datetime | None:
    """Parse a Kubernetes/CloudEvents RFC 3339 timestamp (nanoseconds allowed)."""
    if not isinstance(value, str) or not value:
        return None
    try:  # what Kubernetes and CloudEvents write ("...Z", any fraction) needs no rewriting
        parsed = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        if parsed.tzinfo is UTC:
            return parsed
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python keeps microseconds; Go writes up to nanoseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{digits[:6].ljust(6, '0')}{rest}"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # an offset that pushes it past year 1 or 9999
        return None


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a Z, second precision: the form Kubernetes writes.

    ``isoformat`` (C, 0.5 µs) rather than ``strftime`` (1.9 µs: it rewrites its format in
    Python's C layer, then calls the C library's), for the same text; before year 1000,
    where ``%Y`` writes fewer than four digits, ``strftime`` still."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    if value.year < 1000:
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat(timespec="seconds")[:19] + "Z"


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Enough to name one Kubernetes object. ``namespace`` is empty for cluster-scoped kinds."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = ""
    uid: str = ""

    @property
    def display(self) -> str:
        return f"{self.kind}/{self.name}"

    @classmethod
    def of(cls, obj: Any, kind: str | None = None, api_version: str | None = None) -> ObjectRef:
        """The object's reference (``kind`` and ``api_version``: the object's own, when the
        caller has read them already)."""
        metadata = get_path(obj, "metadata")  # read once: every event's subject is built here
        return cls(
            get_str(obj, "kind") if kind is None else kind,
            get_str(metadata, "name"),
            get_str(metadata, "namespace"),
            get_str(obj, "apiVersion") if api_version is None else api_version,
            get_str(metadata, "uid"),
        )


def controller_owner(obj: Any, namespace: str | None = None) -> ObjectRef | None:
    """The object's controlling owner, seen through a ReplicaSet to its Deployment
    (``namespace``: the object's, when the caller has read it already).

    A Deployment's ReplicaSet is named ``<deployment>-<pod-template-hash>``; the Pod carries the
    same hash as a label, so the Deployment name is recoverable without an API call.
    """
    if namespace is None:
        namespace = get_str(obj, "metadata", "namespace")
    refs = [r for r in get_list(obj, "metadata", "ownerReferences") if isinstance(r, MAPPING)]
    if not refs:
        return None
    ref = next((r for r in refs if r.get("controller") is True), refs[0])
    kind, name = get_str(ref, "kind"), get_str(ref, "name")
    if not kind or not name:
        return None
    template_hash = get_str(obj, "metadata", "labels", "pod-template-hash")
    if kind == "ReplicaSet" and template_hash and name.endswith(f"-{template_hash}"):
        return ObjectRef(
            kind="Deployment",
            name=name[: -len(template_hash) - 1],
            namespace=namespace,
            api_version="apps/v1",
        )
    return ObjectRef(
        kind=kind,
        name=name,
        namespace=namespace,
        api_version=get_str(ref, "apiVersion"),
        uid=get_str(ref, "uid"),
    )
