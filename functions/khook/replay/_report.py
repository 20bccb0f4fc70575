"""What a replay found: one line per session opened, follow-up sent and hold, and totals."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from khook.core.dedup import DedupKey
from khook.core.hooks import Hook
from khook.core.objects import format_time
from khook.core.outcome import FiringResult, Outcome

SESSION, FOLLOWUP, RESOLVED, HOLD = "session", "followup", "resolved", "hold"
SHOWN_OBJECTS = 3  # objects named on a line; the total is always shown
# The Outcome statuses a replay reports (khook.core.outcome.Status values).
_KINDS = {"fired": SESSION, "followup": FOLLOWUP, "resolved": RESOLVED, "held": HOLD}
MESSAGES = (FOLLOWUP, RESOLVED)  # what goes into an open session after its first prompt


@dataclass(frozen=True)
class ReplayLine:
    kind: str  # session | followup | resolved (the resolution follow-up) | hold
    at: datetime
    offset: timedelta  # since the recording's first event
    hook: str  # namespace/name
    key: DedupKey
    cause: str
    objects: tuple[str, ...]  # the incident's affected objects, most recent last
    objects_total: int
    resource: str  # the object of the event that did it

    @property
    def group(self) -> str:
        return self.key.group

    def __str__(self) -> str:
        seconds = int(self.offset.total_seconds())
        offset = f"+{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        shown = ", ".join(self.objects[-SHOWN_OBJECTS:])
        more = self.objects_total - min(len(self.objects), SHOWN_OBJECTS)
        objects = f"{self.objects_total} ({shown}{f', +{more}' if more > 0 else ''})"
        namespace = self.key.namespace or "-"
        return (
            f"{offset} {format_time(self.at)} {self.kind:<8} hook={self.hook} "
            f"incident={self.key.event_type}/{namespace}/{self.key.group} "
            f"cause={self.cause} objects={objects} by={self.resource}"
        )


@dataclass
class ReplayReport:
    name: str
    lines: list[ReplayLine] = field(default_factory=list)
    events: int = 0  # requests played
    rejected: int = 0  # requests khook refused as CloudEvents (a 400 in service)
    failed: int = 0  # Hook configurations whose firing failed
    started: datetime | None = None
    ended: datetime | None = None
    # Held incidents (key id, first sighting) that have not opened a session (yet).
    held_open: set[tuple[str, str]] = field(default_factory=set)
    _held_seen: set[tuple[str, str]] = field(default_factory=set)

    @property
    def sessions(self) -> int:
        return sum(line.kind == SESSION for line in self.lines)

    @property
    def followups(self) -> int:
        """Messages sent into open sessions: follow-ups and resolutions."""
        return sum(line.kind in MESSAGES for line in self.lines)

    @property
    def held(self) -> int:
        """Incidents that were held and never opened a session: the blips that did not page."""
        return len(self.held_open)

    def summary(self) -> str:
        return f"sessions={self.sessions} followups={self.followups} held={self.held}"

    def account(self, outcome: Outcome, at: datetime) -> list[ReplayLine]:
        """The lines one outcome adds (at most one per incident and kind)."""
        added: list[ReplayLine] = []
        done: set[tuple[str, str]] = set()
        for result in outcome.results:
            kind = _KINDS.get(result.status.value)
            if result.status.value == "failed":
                self.failed += 1
            if kind is None or (kind, result.key.id) in done:
                continue
            done.add((kind, result.key.id))
            episode = (result.key.id, _first_seen(result))
            if kind == HOLD:
                if episode in self._held_seen:
                    continue
                self._held_seen.add(episode)
                self.held_open.add(episode)
            elif kind == SESSION:
                self.held_open.discard(episode)
            added.append(self._line(kind, result, outcome, at))
        self.lines.extend(added)
        return added

    def account_swept(self, done: Iterable[tuple[Hook, Any]], at: datetime) -> list[ReplayLine]:
        """Incidents resolved because they went quiet: an open one's session is told (a
        resolution line); a hold that never opened is over."""
        added = []
        for hook, record in done:
            if getattr(record, "opened", True):
                added.append(self._make(RESOLVED, hook.key, record.key, record, "", at=at))
        self.lines.extend(added)
        return added

    def _line(self, kind: str, result: FiringResult, outcome: Outcome, at: datetime) -> ReplayLine:
        resource = outcome.event.involved.display if outcome.event else ""
        return self._make(kind, result.hook.key, result.key, result.record, resource, at=at)

    def _make(
        self, kind: str, hook: str, key: DedupKey, record: Any, resource: str, *, at: datetime
    ) -> ReplayLine:
        resources = tuple(str(r) for r in getattr(record, "resources", ()) or ())
        total = getattr(record, "affected", None)
        cause = getattr(record, "cause_type", "") or getattr(record, "cause", "")
        return ReplayLine(
            kind=kind,
            at=at,
            offset=at - (self.started or at),
            hook=hook,
            key=key,
            cause=str(cause or key.event_type),
            objects=resources,
            objects_total=total if isinstance(total, int) else len(resources),
            resource=resource,
        )


def _first_seen(result: FiringResult) -> str:
    record = result.record
    return record.first_seen.isoformat() if record is not None else ""
