"""A Hook's status, built from its dedup records: pure, so every replica writes the same."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from khook.core.dedup import Record, State
from khook.core.incident import BUDGET_TYPE
from khook.core.objects import format_time

ACTIVE_EVENTS_LIMIT = 50


@dataclass(frozen=True)
class Readiness:
    ready: bool
    # HookConfigured | AgentUnavailable, or why the Hook is not in force (core.hooks.Reason):
    # InvalidConfiguration | AgentNotAllowed | TooManyHooks | PromptRenderFailed
    reason: str
    message: str


def readiness(
    problems: Sequence[str],
    warnings: Sequence[str],
    unavailable_agents: Sequence[str],
    reason: str = "",
) -> Readiness:
    """``reason`` is why the Hook is not in force, when ``problems`` says it is not
    (InvalidConfiguration when not given)."""
    if problems:
        return Readiness(False, reason or "InvalidConfiguration", "; ".join(problems))
    if unavailable_agents:
        return Readiness(
            False,
            "AgentUnavailable",
            f"agent(s) {', '.join(sorted(unavailable_agents))} failing; calls paused briefly",
        )
    message = "Hook is configured"
    if warnings:
        message += "; warning: " + "; ".join(warnings)
    return Readiness(True, "HookConfigured", message)


def ready_condition(
    state: Readiness, generation: int, now: datetime, previous: Iterable[Any] = ()
) -> dict[str, Any]:
    """A metav1.Condition; its lastTransitionTime moves only when its status does."""
    status = "True" if state.ready else "False"
    since = format_time(now)
    for cond in previous:
        same = isinstance(cond, Mapping) and cond.get("type") == "Ready"
        if same and cond.get("status") == status and cond.get("lastTransitionTime"):
            since = str(cond["lastTransitionTime"])
    return {
        "type": "Ready",
        "status": status,
        "reason": state.reason,
        "message": state.message[:32768],
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


AFFECTED_LIMIT = 10  # objects named per incident in the status (the total counts on)


def active_event(record: Record, now: datetime) -> dict[str, Any]:
    resource = record.resources[0] if record.resources else record.key.group
    entry: dict[str, Any] = {
        "eventType": record.cause_type,
        "resourceName": resource.partition("/")[2] or resource,
        "resource": resource,
        "group": record.key.group,
        "namespace": record.key.namespace,
        "firstSeen": format_time(record.first_seen),
        "lastSeen": format_time(record.last_seen),
        "status": record.state_at(now).value,
        "count": record.count,
        "cause": record.detail or record.cause_type,
        "affected": list(record.resources[-AFFECTED_LIMIT:]),
        "affectedTotal": record.affected,
    }
    if record.workloads_total > 1:
        entry["workloads"] = list(record.workloads[-AFFECTED_LIMIT:])
        entry["workloadsTotal"] = record.workloads_total
    if record.task_id:
        entry["taskId"] = record.task_id
    if record.context_id:
        entry["contextId"] = record.context_id
    if record.followups:
        entry["followUps"] = record.followups
    return entry


def active_events(records: Iterable[Record], now: datetime) -> list[dict[str, Any]]:
    """Incidents with a session (the agent accepted it) and incidents held below their
    threshold (the overflow session of the storm breaker among them); firing first, then
    held, then the most recent. The storm breaker's per-minute budgets are not incidents."""
    chosen = [
        r
        for r in records
        if r.key.event_type != BUDGET_TYPE
        and ((r.opened and r.confirmed) or (not r.opened and r.state_at(now) is State.HELD))
    ]
    order = {State.FIRING: 0, State.HELD: 1, State.RESOLVED: 2}
    chosen.sort(key=lambda r: (order[r.state_at(now)], -r.last_seen.timestamp()))
    return [active_event(r, now) for r in chosen[:ACTIVE_EVENTS_LIMIT]]


def status_patch(
    events: list[dict[str, Any]] | None,
    condition: dict[str, Any],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "lastUpdated": format_time(now),
        "observedGeneration": generation,
        "conditions": [condition],
    }
    if events is not None:
        status["activeEvents"] = events
    return {"status": status}
