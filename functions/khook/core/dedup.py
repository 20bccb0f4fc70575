"""Deduplication decisions: pure functions over a record; the stores only keep records.

One incident is one key: Hook + event type + namespace + group (the owner, or the resource).
The first observation of a key *fires*; later ones inside the window (the configuration's
cooldown, counted from the firing) are duplicates. Each observation names its *occurrence*:
an occurrence already recorded is never a new incident, whatever the window says, and a
signal that was already older than ``max_signal_age`` when it was observed is stale.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

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
    def from_json(cls, raw: Any) -> Record:
        """The record ``to_json`` wrote. Stored bytes may have been damaged or edited: anything
        malformed (a missing field, a wrong type, inf/nan, a time outside years 1970-8999, a
        window over 10 years, a key that is not ``hook|eventType|namespace|group``) raises
        ValueError, and nothing else."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a record is a JSON object, not {type(raw).__name__}")
        return cls(
            key=_stored_key(_field(raw, "key", str)),
            first_seen=_stored_time(raw, "firstSeen"),
            last_seen=_stored_time(raw, "lastSeen"),
            fired_at=_stored_time(raw, "firedAt"),
            window=_stored_window(raw),
            count=_stored_count(raw),
            holder=_field(raw, "holder", str),
            state=_stored_state(raw),
            confirmed=_field(raw, "confirmed", bool, False),
            occurrences=_stored_strings(raw, "occurrences", OCCURRENCE_MEMORY),
            resources=_stored_strings(raw, "resources", RESOURCE_MEMORY),
            task_id=_field(raw, "taskId", str, ""),
            context_id=_field(raw, "contextId", str, ""),
        )


# What a stored record may hold: outside these it is damage, not data (and datetime arithmetic
# on it could overflow).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_STORED_WINDOW = timedelta(days=3650)
MAX_STORED_COUNT = 2**63 - 1
_T = TypeVar("_T")
_REQUIRED: Any = object()


def _field(raw: Mapping[str, Any], name: str, kind: type[_T], default: _T = _REQUIRED) -> _T:
    if name not in raw:
        if default is _REQUIRED:
            raise ValueError(f"record field {name} is missing")
        return default
    value = raw[name]
    # bool is an int to Python, never to a record.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"record field {name} is not a {kind.__name__}: {_short(value)}")
    return value


def _stored_key(text: str) -> DedupKey:
    parts = text.split("|", 3)
    if len(parts) != 4 or "/" not in parts[0] or not parts[1] or not parts[3]:
        raise ValueError(f"record key is not hook|eventType|namespace|group: {_short(text)}")
    return DedupKey(*parts)


def _stored_time(raw: Mapping[str, Any], name: str) -> datetime:
    text = _field(raw, name, str)
    try:
        value = parse_time(text)
    except (ValueError, OverflowError):  # an offset that pushes it past year 1 or 9999
        value = None
    if value is None or not _EARLIEST <= value < _LATEST:
        raise ValueError(f"record field {name} is not a time in range: {_short(text)}")
    return value


def _stored_window(raw: Mapping[str, Any]) -> timedelta:
    seconds = raw.get("windowSeconds")
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_STORED_WINDOW.total_seconds()
    ):
        raise ValueError(f"record field windowSeconds is not a window: {_short(seconds)}")
    return timedelta(seconds=seconds)


def _stored_count(raw: Mapping[str, Any]) -> int:
    count = _field(raw, "count", int)
    if not 0 <= count <= MAX_STORED_COUNT:
        raise ValueError(f"record field count is out of range: {_short(count)}")
    return count


def _stored_state(raw: Mapping[str, Any]) -> State:
    value = _field(raw, "state", str, State.FIRING.value)
    if value not in {s.value for s in State}:
        raise ValueError(f"record field state is not a state: {_short(value)}")
    return State(value)


def _stored_strings(raw: Mapping[str, Any], name: str, limit: int) -> tuple[str, ...]:
    items = _field(raw, name, list, [])
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"record field {name} is not a list of strings")
    return tuple(items[-limit:])  # what a record would remember anyway


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    IN_FLIGHT = "in-flight"  # another delivery holds the claim and is calling the agent


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    record: Record | None  # what the store must now hold; None: leave it untouched
    reason: str


def stale(
    occurred_at: datetime | None, observed_at: datetime, max_signal_age: timedelta
) -> str | None:
    """How old a signal already was when it was observed, if that is over ``max_signal_age``:
    then it is not news, whatever any record says. None when it is not stale."""
    if occurred_at is None or observed_at - occurred_at <= max_signal_age:
        return None
    return f"{_age(observed_at - occurred_at)} old when observed"


def decide(
    previous: Record | None,
    key: DedupKey,
    observation: Observation,
    *,
    now: datetime,
    window: timedelta,
    max_signal_age: timedelta,
    token: str,
    claim_timeout: timedelta | None = None,
) -> Decision:
    """``claim_timeout``: how long a claim may stay unconfirmed (the longest a firing can take:
    render and agent deadlines, plus a margin). Inside it, another delivery of the incident is
    IN_FLIGHT: it must come back later rather than be taken for a duplicate, since the firing
    may still fail (and be released) or its replica die. Past it, the claim's holder is gone
    (killed between claim and call): the incident is taken over and fires."""
    obs = observation
    age = stale(obs.occurred_at, obs.observed_at, max_signal_age)
    if age is not None:
        return Decision(Verdict.STALE, None, f"signal was {age}")
    unconfirmed = previous is not None and previous.live(now) and not previous.confirmed
    if unconfirmed and claim_timeout is not None:
        assert previous is not None
        if now - previous.fired_at < claim_timeout:
            return Decision(Verdict.IN_FLIGHT, None, "another delivery is calling the agent")
        taken = _fresh(previous, key, obs, now=now, window=window, token=token)
        # The same incident as the lost claim: its first sighting (and so the agent message's
        # id) stays, so an agent that did receive the lost call can tell it is a repeat.
        taken = replace(taken, first_seen=previous.first_seen, count=previous.count + 1)
        return Decision(Verdict.FIRE, taken, "took over a claim whose holder went away")
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
    fresh = _fresh(previous, key, obs, now=now, window=window, token=token)
    return Decision(Verdict.FIRE, fresh, "first in its window")


def _fresh(
    previous: Record | None,
    key: DedupKey,
    obs: Observation,
    *,
    now: datetime,
    window: timedelta,
    token: str,
) -> Record:
    carried = previous.occurrences if previous is not None else ()
    return Record(
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


def expire(current: Record | None, now: datetime) -> Record | None:
    """The incident marked resolved because its window passed without it being resolved
    otherwise; None when that is not due (still live, already resolved, never accepted).
    Whoever stores this transition announces it, so it is announced once across replicas."""
    if current is None or current.state is State.RESOLVED or not current.confirmed:
        return None
    if current.live(now):
        return None
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
