"""What one sighting of an incident comes to, as a FiringResult: the results a claim gives
without calling the agent (a duplicate, a hold, a stale or in-flight sighting), and the
helpers every result of a session is made with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from khook.core.correlate import Explained, Incident
from khook.core.dedup import Verdict
from khook.core.hooks import Hook
from khook.core.outcome import FiringResult, Status
from khook.stores import Claim, StoreError


def quiet_result(hook: Hook, item: Incident, claim: Claim) -> FiringResult | None:
    """The result of a claim that calls for nothing; None when it opens or follows up a
    session (the agent is called)."""
    result = sighting_result(hook, item, joined=joined_workload(claim))
    verdict, record = claim.verdict, claim.record or claim.previous
    reason = claim.decision.reason
    if verdict is Verdict.IN_FLIGHT:
        # Usually done within a second; a holder that died is taken over after the claim
        # timeout, so a sender that keeps retrying gets its incident fired either way.
        return result(Status.IN_FLIGHT, reason=reason, retryable=True, retry_after=1.0)
    if verdict is Verdict.STALE:
        return result(Status.STALE, reason=reason)
    if verdict is Verdict.HELD:
        return result(Status.HELD, record=record, reason=reason)
    if verdict is Verdict.FOLLOWUP and claim.record is not None:
        return None
    if verdict is not Verdict.FIRE or claim.record is None:
        return result(Status.DUPLICATE, record=record, reason=reason)
    return None


def held_result(hook: Hook, item: Explained) -> FiringResult:
    return FiringResult(
        hook, item.config, item.detection, item.key, Status.HELD, reason=item.reason
    )


def store_failed(hook: Hook, item: Incident, exc: StoreError) -> FiringResult:
    return sighting_result(hook, item)(
        Status.FAILED, reason=f"dedup store: {exc}", retryable=True, failure="store"
    )


def sighting_result(hook: Hook, item: Incident, joined: str = "") -> Callable[..., FiringResult]:
    """A FiringResult for this sighting of this incident, from a status and its details."""

    def result(status: Status, **details: Any) -> FiringResult:
        details.setdefault("joined", joined)
        return FiringResult(hook, item.config, item.detection, item.key, status, **details)

    return result


def joined_workload(claim: Claim) -> str:
    """The workload this claim's sighting brought into an incident that had begun before."""
    before, after = claim.previous, claim.record
    if before is None or after is None or not after.workloads:
        return ""
    if after.workloads_total <= before.workloads_total:
        return ""
    return after.workloads[-1] if before.workloads_total else ""
