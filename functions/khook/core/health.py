"""Health: does an object show that its incident is over (Pod Ready, Node Ready)?

A container that crashed is Running, and often Ready, for a moment after each restart: a crash
loop without a readiness probe would look healthy between crashes. So a Pod counts as healthy
only once every container that has restarted has been running for ``STABLE_AFTER``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from khook.core.events import ClusterEvent
from khook.core.objects import MAPPING, get_int, get_list, get_str, parse_time

STABLE_AFTER = timedelta(minutes=2)
_CONDITION_LIMIT = 32
_CONTAINER_LIMIT = 64


def _condition(obj: Mapping[str, object], kind: str) -> str:
    for cond in get_list(obj, "status", "conditions")[:_CONDITION_LIMIT]:
        if isinstance(cond, MAPPING) and cond.get("type") == kind:
            return get_str(cond, "status")
    return ""


def is_healthy(event: ClusterEvent) -> bool:
    obj = event.object
    if event.subject.kind == "Node":
        return _condition(obj, "Ready") == "True"
    if event.subject.kind == "Pod":
        statuses = get_list(obj, "status", "containerStatuses")[:_CONTAINER_LIMIT]
        return (
            get_str(obj, "status", "phase") == "Running"
            and _condition(obj, "Ready") == "True"
            and all(_settled(s, event) for s in statuses)
        )
    return False


def _settled(status: object, event: ClusterEvent) -> bool:
    """Ready, and, if it ever restarted, running since STABLE_AFTER at least."""
    if not isinstance(status, MAPPING) or status.get("ready") is not True:
        return False
    if not get_int(status, "restartCount"):
        return True
    started = parse_time(get_str(status, "state", "running", "startedAt"))
    return started is not None and event.observed_at - started >= STABLE_AFTER
