"""The incident record: what the dedup store keeps for one root cause, per Hook.

One incident is one key: Hook + type (the event type's family within the Hook, see the
correlation table's precedence) + namespace ("" for causes that span namespaces) + group (the
workload, or a shared cause such as ``Registry/<host>/<class>`` or ``Node/<name>``). Its
window *slides*: it is live until ``cooldown`` after its last sighting.

Every memory a record keeps is bounded (occurrences, affected objects, workloads, the objects
failing now); totals count past the bounds, so a record stays small in a Lease or a ConfigMap
whatever the storm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from khook.core import stored

OCCURRENCE_MEMORY = 64
RESOURCE_MEMORY = 32  # affected objects named in a record (the total counts on)
FAILING_MEMORY = 32  # objects failing now, with their counts
WORKLOAD_MEMORY = 32
DETAIL_LIMIT = 300
# khook's own records under a Hook, beside its incidents (the storm breaker's): the session
# budget of one minute, and the overflow session that takes the incidents beyond it.
BUDGET_TYPE = "khook-sessions"
OVERFLOW_TYPE = "khook-overflow"


@dataclass(frozen=True)
class DedupKey:
    hook: str  # namespace/name of the Hook
    event_type: str  # the family: the highest type of its precedence chain the Hook lists
    namespace: str  # "" for incidents that span namespaces (a registry, a node)
    group: str  # Kind/name of the workload or the resource, or a shared cause
    # Its parts joined with "|", each with "%" and "|" escaped (``%25``, ``%7C``), so two keys
    # never share an id and an id read back gives the key it was made of, whatever a forged
    # event put in a name. Kubernetes names hold neither: their ids are as they always were.
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = (self.hook, self.event_type, self.namespace, self.group)
        object.__setattr__(self, "id", "|".join(map(_escaped, parts)))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.id.encode()).hexdigest()[:20]

    @classmethod
    def from_id(cls, key_id: str) -> DedupKey:
        hook, event_type, namespace, group = map(_unescaped, stored.key_parts(key_id))
        return cls(hook, event_type, namespace, group)


def id_prefix(hook: str) -> str:
    """How the ids of ``hook``'s records begin."""
    return _escaped(hook) + "|"


def _escaped(part: str) -> str:
    if "%" not in part and "|" not in part:
        return part
    return part.replace("%", "%25").replace("|", "%7C")


def _unescaped(part: str) -> str:
    # "%7C" first: an escaped part holds "%" only as the start of "%25" or "%7C".
    return part.replace("%7C", "|").replace("%25", "%") if "%" in part else part


class State(StrEnum):
    HELD = "held"  # below its threshold: no session (yet)
    FIRING = "firing"  # a session is open
    RESOLVED = "resolved"  # its objects are healthy again, or it went quiet


_STATES = frozenset(s.value for s in State)


@dataclass(frozen=True)
class Record:
    key: DedupKey
    first_seen: datetime
    last_seen: datetime
    fired_at: datetime  # when the session opened (or, while held, the first sighting)
    window: timedelta  # the cooldown: quiet this long after the last sighting, it is over
    count: int  # sightings counted in it
    holder: str  # the claim token of the firing this record belongs to
    state: State = State.FIRING
    confirmed: bool = False  # the agent accepted the session's first message
    occurrences: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()  # affected objects, most recent last
    task_id: str = ""
    context_id: str = ""
    # The incident beyond one signal (see khook.core.dedup for how each is kept).
    opened: bool = True  # a session was opened (False while held, and for a healed hold)
    cause: str = ""  # the highest event type seen in it ("" = the key's)
    detail: str = ""  # what the cause says, e.g. "registry.io 429 Too Many Requests"
    objects: int = 0  # distinct affected objects, past RESOURCE_MEMORY too
    failing: tuple[tuple[str, int], ...] = ()  # objects failing now, with their failure count
    workloads: tuple[str, ...] = ()  # workloads affected (shared causes), most recent last
    workloads_total: int = 0
    started_at: datetime | None = None  # when its oldest failing object began failing
    followups: int = 0  # follow-ups sent into the session
    followed_at: datetime | None = None  # the last one
    reported: str = ""  # what the session has been told (see dedup.snapshot)
    followup_holder: str = ""  # the claim token of a follow-up being sent
    task_state: str = ""  # the agent's task, as its last answer said

    @property
    def expires_at(self) -> datetime:
        return self.last_seen + self.window

    @property
    def cause_type(self) -> str:
        return self.cause or self.key.event_type

    @property
    def affected(self) -> int:
        return max(self.objects, len(self.resources))

    def live(self, now: datetime) -> bool:
        return now < self.expires_at

    def state_at(self, now: datetime) -> State:
        return self.state if self.live(now) else State.RESOLVED

    def prunable(self, now: datetime, retention: timedelta) -> bool:
        """Kept past its window so its occurrences still shield against stale re-reports."""
        return now > self.expires_at + retention

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
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
            "incident": self.incident_json(),
        }
        return doc

    def incident_json(self) -> dict[str, Any]:
        """The fields beyond one signal: one JSON object (a Lease keeps it in one annotation)."""
        return {
            "opened": self.opened,
            "cause": self.cause,
            "detail": self.detail,
            "objects": self.objects,
            "failing": [[name, n] for name, n in self.failing],
            "workloads": list(self.workloads),
            "workloadsTotal": self.workloads_total,
            "startedAt": self.started_at.isoformat() if self.started_at else "",
            "followups": self.followups,
            "followedAt": self.followed_at.isoformat() if self.followed_at else "",
            "reported": self.reported,
            "followupHolder": self.followup_holder,
            "taskState": self.task_state,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Record:
        """The record ``to_json`` wrote. Stored bytes may have been damaged or edited: anything
        malformed (a missing field, a wrong type, inf/nan, a time outside years 1970-8999, a
        window over 10 years, a key that is not ``hook|eventType|namespace|group``) raises
        ValueError, and nothing else. A record written before incidents had more than one
        signal reads as an opened incident."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"a record is a JSON object, not {type(raw).__name__}")
        incident = stored.field(raw, "incident", dict, {})
        return cls(
            key=DedupKey.from_id(stored.field(raw, "key", str)),
            first_seen=stored.time(raw, "firstSeen"),
            last_seen=stored.time(raw, "lastSeen"),
            fired_at=stored.time(raw, "firedAt"),
            window=stored.window(raw),
            count=stored.count(raw),
            holder=stored.field(raw, "holder", str),
            state=State(stored.choice(raw, "state", _STATES, State.FIRING.value)),
            confirmed=stored.field(raw, "confirmed", bool, False),
            occurrences=stored.strings(raw, "occurrences", OCCURRENCE_MEMORY),
            resources=stored.strings(raw, "resources", RESOURCE_MEMORY),
            task_id=stored.field(raw, "taskId", str, ""),
            context_id=stored.field(raw, "contextId", str, ""),
            opened=stored.field(incident, "opened", bool, True),
            cause=stored.field(incident, "cause", str, ""),
            detail=stored.field(incident, "detail", str, "")[:DETAIL_LIMIT],
            objects=stored.count(incident, "objects", 0),
            failing=stored.counted(incident, "failing", FAILING_MEMORY),
            workloads=stored.strings(incident, "workloads", WORKLOAD_MEMORY),
            workloads_total=stored.count(incident, "workloadsTotal", 0),
            started_at=stored.optional_time(incident, "startedAt"),
            followups=stored.count(incident, "followups", 0),
            followed_at=stored.optional_time(incident, "followedAt"),
            reported=stored.field(incident, "reported", str, ""),
            followup_holder=stored.field(incident, "followupHolder", str, ""),
            task_state=stored.field(incident, "taskState", str, ""),
        )


_RECORD_FIELDS = frozenset(f.name for f in fields(Record))


def evolve(record: Record, **changes: Any) -> Record:
    """``dataclasses.replace(record, **changes)`` for a Record, in a tenth of its time: a
    Record has no ``__post_init__`` and no init-only fields, so a copy of its fields with
    ``changes`` is all replace() would make, but replace() builds it through the frozen
    ``__init__`` (26 ``object.__setattr__`` calls). A new incident takes four of them. A name
    that is no field is a TypeError, as replace() says. The copy keeps its fields in a
    dictionary of its own, about 64 bytes more than a Record its ``__init__`` made (with
    tracemalloc; khook.core.quick's ``__init__`` would cost 584 more): kept for its speed,
    as most stored records are copies."""
    unknown = changes.keys() - _RECORD_FIELDS
    if unknown:
        raise TypeError(f"Record has no field {', '.join(sorted(unknown))}")
    copy = object.__new__(Record)
    vars(copy).update(vars(record), **changes)
    return copy


def open_sessions(records: list[Record], now: datetime) -> int:
    """The incidents among ``records`` whose session is open now (the budget's counters are
    not incidents; past its window an incident is over, swept or not yet)."""
    return sum(
        1 for r in records if r.key.event_type != BUDGET_TYPE and r.state_at(now) is State.FIRING
    )


def remember(items: tuple[str, ...], item: str, limit: int) -> tuple[str, ...]:
    """``items`` with ``item`` added last, keeping the most recent ``limit``."""
    if item in items:
        return items
    return (*items, item)[-limit:]
