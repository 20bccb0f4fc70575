"""What happened to one CloudEvent: per Hook configuration, fired, duplicate or failed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from khook.core.classify import Detection
from khook.core.dedup import DedupKey, Record
from khook.core.events import ClusterEvent
from khook.core.hooks import EventConfiguration, Hook


class Status(StrEnum):
    FIRED = "fired"
    DUPLICATE = "duplicate"
    STALE = "stale"  # a re-report of an old signal; counted with the duplicates
    IN_FLIGHT = "in-flight"  # another delivery is firing it: come back (counted as duplicate)
    FAILED = "failed"


@dataclass(frozen=True)
class FiringResult:
    hook: Hook
    config: EventConfiguration
    detection: Detection
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


@dataclass(frozen=True)
class Counts:
    fired: int = 0
    duplicate: int = 0
    failed: int = 0

    def header(self) -> str:
        return f"fired={self.fired} duplicate={self.duplicate} failed={self.failed}"


@dataclass(frozen=True)
class Outcome:
    event_types: tuple[str, ...] = ()
    results: tuple[FiringResult, ...] = ()
    event: ClusterEvent | None = None
    ignored: str = ""  # why nothing was matched, when nothing was
    resolved: tuple[tuple[Hook, Record], ...] = ()  # incidents this event showed to be over
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
        """One state per Hook configuration: fired if any of its signals fired, else failed if
        any failed, else duplicate."""
        states: dict[tuple[str, str], set[Status]] = {}
        for result in self.results:
            states.setdefault((result.hook.key, result.config.event_type), set()).add(result.status)
        return Counts(
            fired=sum(Status.FIRED in s for s in states.values()),
            failed=sum(Status.FIRED not in s and Status.FAILED in s for s in states.values()),
            duplicate=sum(not s & {Status.FIRED, Status.FAILED} for s in states.values()),
        )
