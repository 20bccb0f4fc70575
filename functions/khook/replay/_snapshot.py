"""``kubectl get events,pods -A -o json`` snapshots, played as the adapter would have sent them.

A snapshot holds each object once, in its last state: an Event with its final ``count``, a Pod
with its newest status. Each item becomes one Resource-mode CloudEvent: an Event is an ``add``
when it happened once and an ``update`` when the recorder counted it again; a Pod or Node is an
``update``. Items are played in time order: an Event at its last sighting (``lastTimestamp``,
``series.lastObservedTime`` or ``eventTime``), a Pod or Node at the newest time its status
names (a condition's transition, a container's start or finish).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from khook.core.objects import get_list, get_path, parse_time
from khook.replay._wire import adapter_headers, go_json

LIST_KINDS = frozenset({"List", "EventList", "PodList", "NodeList"})
MAX_ITEMS = 200_000  # items of one snapshot
_ID_NAMESPACE = uuid.UUID("1d7c7b52-5a36-4b8e-9d0e-6b686f6f6b72")


class SnapshotError(ValueError):
    pass


def is_snapshot(doc: Any) -> bool:
    return isinstance(doc, Mapping) and doc.get("kind") in LIST_KINDS and "items" in doc


def snapshot_items(doc: Mapping[str, Any]) -> list[tuple[datetime | None, int, dict[str, Any]]]:
    """(time, order, object) of every item, typed lists' items given their apiVersion/kind."""
    found: list[tuple[datetime | None, int, dict[str, Any]]] = []
    for obj in _items(doc, depth=0):
        if len(found) >= MAX_ITEMS:
            raise SnapshotError(f"a snapshot holds at most {MAX_ITEMS} items")
        found.append((item_time(obj), len(found), obj))
    return found


def _items(doc: Mapping[str, Any], depth: int) -> Iterator[dict[str, Any]]:
    items = doc.get("items")
    if not isinstance(items, list):
        raise SnapshotError(f"{doc.get('kind')}: items is not a list")
    kind, api_version = str(doc.get("kind", "")), str(doc.get("apiVersion", "v1"))
    for item in items:
        if not isinstance(item, Mapping):
            raise SnapshotError(f"{kind}: an item is not an object")
        if is_snapshot(item) and depth < 2:
            yield from _items(item, depth + 1)
            continue
        obj = dict(item)
        if kind != "List":  # kubectl leaves apiVersion/kind out of a typed list's items
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", kind.removesuffix("List"))
        yield obj


def item_time(obj: Mapping[str, Any]) -> datetime | None:
    if obj.get("kind") == "Event":
        times = [
            get_path(obj, "series", "lastObservedTime"),
            obj.get("lastTimestamp"),
            obj.get("deprecatedLastTimestamp"),
            obj.get("eventTime"),
            obj.get("firstTimestamp"),
        ]
    else:
        status = obj.get("status")
        times = [get_path(obj, "status", "startTime")]
        times += [c.get("lastTransitionTime") for c in _maps(get_list(status, "conditions"))]
        for field in ("initContainerStatuses", "containerStatuses"):
            for cs in _maps(get_list(status, field)):
                for state in ("state", "lastState"):
                    for phase, stamp in (
                        ("running", "startedAt"),
                        ("terminated", "finishedAt"),
                        ("terminated", "startedAt"),
                    ):
                        times.append(get_path(cs, state, phase, stamp))
    parsed = [t for t in (parse_time(v) for v in times) if t is not None]
    if parsed:
        return max(parsed)
    return parse_time(get_path(obj, "metadata", "creationTimestamp"))


def _maps(values: list[Any]) -> Iterator[Mapping[str, Any]]:
    return (v for v in values if isinstance(v, Mapping))


def action_of(obj: Mapping[str, Any]) -> str:
    if obj.get("kind") != "Event":
        return "update"
    count = get_path(obj, "series", "count") or obj.get("count") or obj.get("deprecatedCount")
    return "update" if isinstance(count, int) and count > 1 else "add"


def item_request(obj: Mapping[str, Any], at: datetime, order: int) -> tuple[dict[str, str], bytes]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    identity = f"{meta.get('uid') or meta.get('name')}@{meta.get('resourceVersion')}#{order}"
    headers = adapter_headers(
        obj,
        action=action_of(obj),
        event_id=str(uuid.uuid5(_ID_NAMESPACE, identity)),
        sent_at=at,
    )
    return headers, go_json(obj)
