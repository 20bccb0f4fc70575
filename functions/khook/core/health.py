"""Health: does an object show that its incident is over (Pod Ready, Node Ready)?"""

from __future__ import annotations

from collections.abc import Mapping

from khook.core.events import ClusterEvent
from khook.core.objects import get_list, get_str


def _condition(obj: Mapping[str, object], kind: str) -> str:
    for cond in get_list(obj, "status", "conditions"):
        if isinstance(cond, Mapping) and cond.get("type") == kind:
            return get_str(cond, "status")
    return ""


def is_healthy(event: ClusterEvent) -> bool:
    obj = event.object
    if event.subject.kind == "Node":
        return _condition(obj, "Ready") == "True"
    if event.subject.kind == "Pod":
        statuses = get_list(obj, "status", "containerStatuses")
        return (
            get_str(obj, "status", "phase") == "Running"
            and _condition(obj, "Ready") == "True"
            and all(isinstance(s, Mapping) and s.get("ready") is True for s in statuses)
        )
    return False
