"""What happened to one CloudEvent: per incident it touched, what khook did about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from khook.core.classify import Detection
from khook.core.dedup import DedupKey, Record
from khook.core.events import ClusterEvent
from khook.core.hooks import EventConfiguration, Hook
from khook.core.quick import quick_init
from khook.core.reasons import Code, Reason


class Status(StrEnum):
    FIRED = "fired"  # an agent session opened for the incident
    FOLLOWUP = "followup"  # a follow-up went into the incident's open session
    HELD = "held"  # counted in an incident below its threshold: no session (yet)
    DUPLICATE = "duplicate"  # counted in an open incident: nothing new to tell
    STALE = "stale"  # a re-report of a signal already old when observed
    IN_FLIGHT = "in-flight"  # another delivery is firing it: come back (counted as duplicate)
    RESOLVED = "resolved"  # an open incident is over, and its session was told (a follow-up)
    FAILED = "failed"


# When one incident saw several signals of one event, the state it is counted in.
_PRECEDENCE = (
    Status.FIRED,
    Status.FOLLOWUP,
    Status.RESOLVED,
    Status.FAILED,
    Status.HELD,
    Status.DUPLICATE,
    Status.IN_FLIGHT,
    Status.STALE,
)
_RANK = {status: rank for rank, status in enumerate(_PRECEDENCE)}


@quick_init
@dataclass(frozen=True)
class FiringResult:
    hook: Hook
    config: EventConfiguration
    detection: Detection | None  # None for what an object's recovery or the quiet did
    key: DedupKey
    status: Status
    record: Record | None = None
    reason: str = ""
    task_id: str = ""
    context_id: str = ""
    retryable: bool = False
    retry_after: float | None = None
    agent_called: bool = False
    render_failed: bool = False  # the Hook's prompt failed to render: the Hook's fault
    overflow: bool = False  # over the Hook's session budget: it joined the overflow session
    joined: str = ""  # the workload this sighting brought into the incident, if new
    failure: str = ""  # FAILED: one of reasons.FAILURE_CLASSES


@quick_init
@dataclass(frozen=True)
class Counts:
    fired: int = 0
    duplicate: int = 0
    failed: int = 0
    held: int = 0
    followup: int = 0
    stale: int = 0

    def header(self) -> str:
        """``X-Khook-Outcome``: the first three fields as they always were, in their order."""
        return (
            f"fired={self.fired} duplicate={self.duplicate} failed={self.failed} "
            f"held={self.held} followup={self.followup} stale={self.stale}"
        )


_NO_COUNTS = Counts()


@quick_init
@dataclass(frozen=True)
class Outcome:
    event_types: tuple[str, ...] = ()
    results: tuple[FiringResult, ...] = ()
    event: ClusterEvent | None = None
    ignored: Reason | None = None  # why nothing was acted on, when nothing was
    error: Reason | None = None  # the event could not be judged, and a retry may fix that

    @property
    def retryable(self) -> bool:
        """A retry can fix something that failed: ask the sender to redeliver."""
        return self.error is not None or any(
            (r.status is Status.FAILED and r.retryable) or r.status is Status.IN_FLIGHT
            for r in self.results
        )

    @property
    def retry_after(self) -> float | None:
        hints = [r.retry_after for r in self.results if r.retry_after is not None]
        return max(hints) if hints else None

    def incidents(self) -> list[FiringResult]:
        """Per incident the event touched (per Hook), the result that decides the state it is
        counted in: the first of ``_PRECEDENCE`` any of its signals came to (the first such
        result). What ``counts()`` tallies, and metrics count by type and failure class."""
        deciding: dict[str, FiringResult] = {}
        for result in self.results:
            incident = f"{result.hook.key}|{result.key.id}"
            held = deciding.get(incident)
            if held is None or _RANK[result.status] < _RANK[held.status]:
                deciding[incident] = result
        return list(deciding.values())

    def counts(self) -> Counts:
        """One state per incident the event touched (per Hook): the first of fired,
        followup, failed, held, duplicate (in-flight counts as duplicate), stale that any of
        its signals came to."""
        if not self.results:
            return _NO_COUNTS  # most answers: nothing acted on
        tally = dict.fromkeys(_PRECEDENCE, 0)
        for result in self.incidents():
            tally[result.status] += 1
        return Counts(
            fired=tally[Status.FIRED],
            duplicate=tally[Status.DUPLICATE] + tally[Status.IN_FLIGHT],
            failed=tally[Status.FAILED],
            held=tally[Status.HELD],
            followup=tally[Status.FOLLOWUP] + tally[Status.RESOLVED],
            stale=tally[Status.STALE],
        )

    def reason(self) -> Reason:
        """Why khook answers what it answers: the error; else the state the incidents came to
        (the first of the precedence, with the incidents in it); else why nothing was acted on."""
        if self.error is not None:
            return self.error
        if not self.results and self.ignored is not None:
            return self.ignored
        retrying = [r for r in self.results if r.status is Status.FAILED and r.retryable]
        if retrying:
            code = Code.STORE_UNAVAILABLE if retrying[0].failure == "store" else None
            if retrying[0].failure == "sandbox":
                code = Code.NOT_READY
            return Reason(code or Code.AGENT_UNAVAILABLE, _listed(retrying))
        flying = [r for r in self.results if r.status is Status.IN_FLIGHT]
        if flying:
            return Reason(Code.IN_FLIGHT, _listed(flying))
        for status in _PRECEDENCE:
            chosen = [r for r in self.results if r.status is status]
            if chosen:
                return Reason(_CODES[status], _listed(chosen))
        if self.ignored is not None:
            return self.ignored
        return Reason(Code.NO_HOOK, "no Hook in force wants this event")


_CODES = {
    Status.FIRED: Code.FIRED,
    Status.FOLLOWUP: Code.FOLLOWUP,
    Status.RESOLVED: Code.FOLLOWUP,
    Status.FAILED: Code.FAILED,
    Status.HELD: Code.HELD,
    Status.DUPLICATE: Code.DUPLICATE,
    Status.IN_FLIGHT: Code.IN_FLIGHT,
    Status.STALE: Code.STALE,
}
_LISTED = 3  # incidents named in a reason; the rest are counted


def _listed(results: list[FiringResult]) -> str:
    """``hook type group: reason`` for the first few incidents, one per incident."""
    seen: dict[str, FiringResult] = {}
    for r in results:
        seen.setdefault(f"{r.hook.key}|{r.key.id}", r)
    parts = [
        f"{r.hook.key} {r.detection.event_type if r.detection else r.key.event_type} "
        f"{r.key.group}" + (f": {r.reason}" if r.reason else "")
        for r in list(seen.values())[:_LISTED]
    ]
    more = len(seen) - _LISTED
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
