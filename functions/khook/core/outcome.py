"""What happened to one CloudEvent: per incident it touched, what khook did about it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from khook.core.classify import Detection
from khook.core.dedup import DedupKey, Record
from khook.core.events import ClusterEvent
from khook.core.hooks import EventConfiguration, Hook


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


@dataclass(frozen=True)
class Outcome:
    event_types: tuple[str, ...] = ()
    results: tuple[FiringResult, ...] = ()
    event: ClusterEvent | None = None
    ignored: str = ""  # why nothing was matched, when nothing was
    error: str = ""  # the event could not be judged, and a retry may fix that

    @property
    def retryable(self) -> bool:
        """A retry can fix something that failed: ask the sender to redeliver."""
        return bool(self.error) or any(
            (r.status is Status.FAILED and r.retryable) or r.status is Status.IN_FLIGHT
            for r in self.results
        )

    @property
    def retry_after(self) -> float | None:
        hints = [r.retry_after for r in self.results if r.retry_after is not None]
        return max(hints) if hints else None

    def counts(self) -> Counts:
        """One state per incident the event touched (per Hook): the first of fired,
        followup, failed, held, duplicate (in-flight counts as duplicate), stale that any of
        its signals came to."""
        states: dict[str, set[Status]] = {}
        for result in self.results:
            states.setdefault(f"{result.hook.key}|{result.key.id}", set()).add(result.status)
        tally = dict.fromkeys(_PRECEDENCE, 0)
        for seen in states.values():
            tally[next(s for s in _PRECEDENCE if s in seen)] += 1
        return Counts(
            fired=tally[Status.FIRED],
            duplicate=tally[Status.DUPLICATE] + tally[Status.IN_FLIGHT],
            failed=tally[Status.FAILED],
            held=tally[Status.HELD],
            followup=tally[Status.FOLLOWUP] + tally[Status.RESOLVED],
            stale=tally[Status.STALE],
        )
