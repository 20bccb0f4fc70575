"""What happens to a record after its decision: the agent's answer settles a claim, a
follow-up's claim is kept or freed, a quiet incident expires, and what one replica saw is
folded into what the store holds. Pure functions; the stores only keep records."""

from __future__ import annotations

from datetime import datetime

from khook.core.dedup import snapshot
from khook.core.incident import (
    FAILING_MEMORY,
    OCCURRENCE_MEMORY,
    RESOURCE_MEMORY,
    WORKLOAD_MEMORY,
    Record,
    State,
    evolve,
    remember,
)

__all__ = ["confirm", "expire", "followed_up", "merge", "owns", "unfollowed"]


def owns(current: Record | None, claimed: Record) -> bool:
    """Whether the stored record still belongs to this claim (no other firing replaced it)."""
    return current is not None and current.holder == claimed.holder


def confirm(
    current: Record | None, claimed: Record, task_id: str, context_id: str, task_state: str = ""
) -> Record:
    """The session opened: the agent accepted the incident's first message."""
    base = current if current is not None and owns(current, claimed) else claimed
    return evolve(
        base,
        confirmed=True,
        task_id=task_id,
        context_id=context_id,
        task_state=task_state,
        reported=snapshot(base),
    )


def followed_up(
    current: Record, token: str, task_id: str, context_id: str, task_state: str
) -> Record | None:
    """A follow-up was accepted: the session now knows the record as it is. None when the
    follow-up's claim is no longer this one."""
    if current.followup_holder != token:
        return None
    return evolve(
        current,
        followup_holder="",
        reported=snapshot(current),
        task_id=task_id or current.task_id,
        context_id=context_id or current.context_id,
        task_state=task_state or current.task_state,
    )


def unfollowed(current: Record, token: str, before: datetime | None) -> Record | None:
    """A follow-up failed: free its claim and its rate limit, so a later sighting tries again."""
    if current.followup_holder != token:
        return None
    return evolve(
        current, followup_holder="", followups=max(0, current.followups - 1), followed_at=before
    )


def expire(current: Record | None, now: datetime) -> Record | None:
    """The incident marked resolved because it went quiet for its window; None when that is
    not due (still live, already resolved, never accepted). Whoever stores this transition
    announces it, so it is announced once across replicas."""
    if current is None or current.state is State.RESOLVED or current.live(now):
        return None
    if current.opened and not current.confirmed:
        return None  # a claim that never became a session: nothing to announce
    return evolve(current, state=State.RESOLVED)


def merge(stored: Record, local: Record, base: Record) -> Record:
    """Fold what this replica saw since ``base`` (the version it last synced) into ``stored``
    (what the store holds now, which other replicas may have advanced too)."""
    state = local.state if local.state is not base.state else stored.state
    occurrences = stored.occurrences
    for item in local.occurrences:
        occurrences = remember(occurrences, item, OCCURRENCE_MEMORY)
    resources = stored.resources
    for item in local.resources:
        resources = remember(resources, item, RESOURCE_MEMORY)
    workloads = stored.workloads
    for item in local.workloads:
        workloads = remember(workloads, item, WORKLOAD_MEMORY)
    failing = dict(stored.failing)
    for name, n in local.failing:
        failing[name] = max(failing.get(name, 0), n)
    for name, _ in base.failing:  # objects that recovered here since the last sync
        if name not in dict(local.failing):
            failing.pop(name, None)
    return evolve(
        stored,
        count=stored.count + max(0, local.count - base.count),
        last_seen=max(stored.last_seen, local.last_seen),
        state=state,
        occurrences=occurrences,
        resources=resources,
        objects=stored.objects + max(0, local.objects - base.objects),
        failing=tuple(failing.items())[-FAILING_MEMORY:],
        workloads=workloads,
        workloads_total=stored.workloads_total
        + max(0, local.workloads_total - base.workloads_total),
    )
