"""Deduplication decisions: pure functions over a record; the stores only keep records.

One incident is one key: Hook + event type + namespace + group (the owner, or the resource).
The first observation of a key *fires*; later ones inside the window (the configuration's
cooldown, counted from the firing) are duplicates. Each observation names its *occurrence*:
an occurrence already recorded is never a new incident, whatever the window says, and a
signal that was already older than ``max_signal_age`` when it was observed is stale.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from khook.core.objects import parse_time

OCCURRENCE_MEMORY = 64
RESOURCE_MEMORY = 16


@dataclass(frozen=True)
class DedupKey:
    hook: str  # namespace/name of the Hook
    event_type: str
    namespace: str
    group: str  # Kind/name of the owner or the resource

    @property
    def id(self) -> str:
        return f"{self.hook}|{self.event_type}|{self.namespace}|{self.group}"

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.id.encode()).hexdigest()[:20]

    @classmethod
    def from_id(cls, key_id: str) -> DedupKey:
        hook, event_type, namespace, group = key_id.split("|", 3)
        return cls(hook, event_type, namespace, group)


class State(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Record:
    key: DedupKey
    first_seen: datetime
    last_seen: datetime
    fired_at: datetime
    window: timedelta
    count: int
    holder: str  # the claim token of the firing this record belongs to
    state: State = State.FIRING
    confirmed: bool = False  # the agent accepted the call
    occurrences: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    task_id: str = ""
    context_id: str = ""

    @property
    def expires_at(self) -> datetime:
        return self.fired_at + self.window

    def live(self, now: datetime) -> bool:
        return now < self.expires_at

    def state_at(self, now: datetime) -> State:
        return self.state if self.live(now) else State.RESOLVED

    def prunable(self, now: datetime, retention: timedelta) -> bool:
        """Kept past its window so its occurrences still shield against stale re-reports."""
        return now > max(self.expires_at, self.last_seen) + retention

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key.id,
            "firstSeen": self.first_seen.isoformat(),
            "lastSeen": self.last_seen.isoformat(),
            "firedAt": self.fired_at.isoformat(),
            "windowSeconds": self.window.total_seconds(),
            "count": self.count,
            "holder": self.holder,
            "state": self.state.value,
            "confirmed": self.confirmed,
            "occurrences": list(self.occurrences),
            "resources": list(self.resources),
            "taskId": self.task_id,
            "contextId": self.context_id,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Record:
        def when(name: str) -> datetime:
            value = parse_time(raw[name])
            if value is None:
                raise ValueError(f"record field {name} is not a time: {raw[name]!r}")
            return value

        return cls(
            key=DedupKey.from_id(raw["key"]),
            first_seen=when("firstSeen"),
            last_seen=when("lastSeen"),
            fired_at=when("firedAt"),
            window=timedelta(seconds=float(raw["windowSeconds"])),
            count=int(raw["count"]),
            holder=str(raw["holder"]),
            state=State(raw.get("state", "firing")),
            confirmed=bool(raw.get("confirmed", False)),
            occurrences=tuple(raw.get("occurrences", ())),
            resources=tuple(raw.get("resources", ())),
            task_id=str(raw.get("taskId", "")),
            context_id=str(raw.get("contextId", "")),
        )


@dataclass(frozen=True)
class Observation:
    occurrence: str
    occurred_at: datetime | None
    observed_at: datetime
    resource: str  # Kind/name of the object that showed the signal


class Verdict(StrEnum):
    FIRE = "fire"
    DUPLICATE = "duplicate"
    STALE = "stale"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    record: Record | None  # what the store must now hold; None: leave it untouched
    reason: str


def decide(
    previous: Record | None,
    key: DedupKey,
    observation: Observation,
    *,
    now: datetime,
    window: timedelta,
    max_signal_age: timedelta,
    token: str,
) -> Decision:
    obs = observation
    if obs.occurred_at is not None and obs.observed_at - obs.occurred_at > max_signal_age:
        age = obs.observed_at - obs.occurred_at
        return Decision(Verdict.STALE, None, f"signal was {_age(age)} old when observed")
    if previous is not None and obs.occurrence in previous.occurrences:
        return Decision(Verdict.DUPLICATE, None, "occurrence already recorded")
    if previous is not None and previous.live(now):
        updated = replace(
            previous,
            state=State.FIRING,  # a recurrence re-opens an incident resolved early
            last_seen=max(now, previous.last_seen),
            count=previous.count + 1,
            occurrences=_remember(previous.occurrences, obs.occurrence, OCCURRENCE_MEMORY),
            resources=_remember(previous.resources, obs.resource, RESOURCE_MEMORY),
        )
        return Decision(Verdict.DUPLICATE, updated, "inside the window of the last firing")
    carried = previous.occurrences if previous is not None else ()
    fresh = Record(
        key=key,
        first_seen=now,
        last_seen=now,
        fired_at=now,
        window=window,
        count=1,
        holder=token,
        occurrences=_remember(carried, obs.occurrence, OCCURRENCE_MEMORY),
        resources=(obs.resource,),
    )
    return Decision(Verdict.FIRE, fresh, "first in its window")


def owns(current: Record | None, claimed: Record) -> bool:
    """Whether the stored record still belongs to this claim (no other firing replaced it)."""
    return current is not None and current.holder == claimed.holder


def confirm(current: Record | None, claimed: Record, task_id: str, context_id: str) -> Record:
    base = current if current is not None and owns(current, claimed) else claimed
    return replace(base, confirmed=True, task_id=task_id, context_id=context_id)


def resolve(current: Record | None, resource: str, now: datetime) -> Record | None:
    """The incident marked resolved early, when it is live, firing, and was seen only on
    ``resource``, which now shows healthy; None when this does not resolve it."""
    if current is None or not current.live(now) or current.state is State.RESOLVED:
        return None
    if set(current.resources) - {resource}:
        return None  # other pods of the owner were part of it; one healthy pod is not enough
    return replace(current, state=State.RESOLVED)


def merge(stored: Record, local: Record, base: Record) -> Record:
    """Fold what this replica saw since ``base`` (the version it last synced) into ``stored``
    (what the store holds now, which other replicas may have advanced too)."""
    state = local.state if local.state is not base.state else stored.state
    occurrences = stored.occurrences
    for item in local.occurrences:
        occurrences = _remember(occurrences, item, OCCURRENCE_MEMORY)
    resources = stored.resources
    for item in local.resources:
        resources = _remember(resources, item, RESOURCE_MEMORY)
    return replace(
        stored,
        count=stored.count + max(0, local.count - base.count),
        last_seen=max(stored.last_seen, local.last_seen),
        state=state,
        occurrences=occurrences,
        resources=resources,
    )


def _remember(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    if item in items:
        return items
    return (*items, item)[-limit:]


def _age(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes}m" if minutes else f"{int(delta.total_seconds())}s"
