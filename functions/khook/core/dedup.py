"""Incident decisions: pure functions over a record; the stores only keep records.

A sighting (one signal of one object) either opens an incident's agent session (*fire*), is
counted in an incident that has not crossed its threshold yet (*held*: blips that heal on their
own never page), is counted in an open incident (*duplicate*), or carries a material change the
open session is told about (*followup*). The window slides: an incident stays open while it is
sighted, and resolves ``cooldown`` after its last sighting or when its objects are healthy
again. Each sighting names its *occurrence*: an occurrence already recorded changes nothing,
and a signal that was already older than ``max_signal_age`` when it was observed is stale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from khook.core.durations import show_duration
from khook.core.incident import (
    DETAIL_LIMIT,
    FAILING_MEMORY,
    OCCURRENCE_MEMORY,
    RESOURCE_MEMORY,
    WORKLOAD_MEMORY,
    DedupKey,
    Record,
    State,
    evolve,
    remember,
)
from khook.core.quick import quick_init

__all__ = [
    "Decision",
    "DedupKey",
    "Hold",
    "Observation",
    "Policy",
    "Record",
    "Sighting",
    "State",
    "Verdict",
    "decide",
    "material",
    "resolve",
    "snapshot",
    "stale",
    "tally",
]

COUNT_MILESTONES = (10, 100)  # counts whose crossing the open session is told of


@dataclass(frozen=True)
class Hold:
    """When a held incident opens: one object failed ``min_count`` times, or ``min_count``
    objects fail at once, or it has lasted ``hold_for``."""

    min_count: int
    hold_for: timedelta


@quick_init
@dataclass(frozen=True)
class Policy:
    """How one incident is decided: from its Hook configuration and the correlation table."""

    window: timedelta  # the cooldown
    hold: Hold | None = None  # None: it opens at its first sighting
    followups: bool = True
    followup_every: timedelta = timedelta(minutes=5)
    claim_timeout: timedelta | None = None
    ranks: tuple[str, ...] = ()  # its family, the cause first (see the precedence table)

    def rank(self, event_type: str) -> int:
        return self.ranks.index(event_type) if event_type in self.ranks else len(self.ranks)


@quick_init
@dataclass(frozen=True)
class Sighting:
    """One signal of one object, as the incident counts it."""

    occurrence: str
    occurred_at: datetime | None
    observed_at: datetime
    resource: str  # Kind/name of the object that showed the signal
    event_type: str = ""
    count: int | None = 1  # the object's own failure count (Event count, restartCount)
    started_at: datetime | None = None  # when the object began failing, if it says
    workload: str = ""  # the workload the object belongs to
    detail: str = ""  # what this signal says of the cause
    holdable: bool = True  # False: it opens the incident at once (e.g. a terminal pull)


Observation = Sighting  # its name before incidents counted more than one signal


class Verdict(StrEnum):
    FIRE = "fire"
    FOLLOWUP = "followup"
    HELD = "held"
    DUPLICATE = "duplicate"
    STALE = "stale"
    IN_FLIGHT = "in-flight"  # another delivery holds the claim and is calling the agent
    RESOLVED = "resolved"  # an open incident is over (its session is told)
    HEALED = "healed"  # a held incident is over before it opened: no session ever


@quick_init
@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    record: Record | None  # what the store must now hold; None: leave it untouched
    reason: str
    changes: tuple[str, ...] = field(default=())  # what a follow-up tells the session


def stale(
    occurred_at: datetime | None, observed_at: datetime, max_signal_age: timedelta
) -> str | None:
    """How old a signal already was when it was observed, if that is over ``max_signal_age``:
    then it is not news, whatever any record says. None when it is not stale."""
    if occurred_at is None or observed_at - occurred_at <= max_signal_age:
        return None
    return (
        f"the signal was {show_duration(observed_at - occurred_at)} old when observed, older than "
        f"the {show_duration(max_signal_age)} a signal may be (KHOOK_MAX_SIGNAL_AGE): not news"
    )


def decide(
    previous: Record | None,
    key: DedupKey,
    sighting: Sighting,
    *,
    now: datetime,
    policy: Policy,
    max_signal_age: timedelta,
    token: str,
) -> Decision:
    """``policy.claim_timeout``: how long a claim may stay unconfirmed (the longest a firing
    can take: render and agent deadlines, plus a margin). Inside it, another delivery of the
    incident is IN_FLIGHT: it must come back later rather than be taken for a duplicate, since
    the firing may still fail (and be released) or its replica die. Past it, the claim's
    holder is gone (killed between claim and call): the incident is taken over and fires."""
    s = sighting
    age = stale(s.occurred_at, s.observed_at, max_signal_age)
    if age is not None:
        return Decision(Verdict.STALE, None, f"signal was {age}")
    live = previous is not None and _live(previous, now)
    unconfirmed = live and previous is not None and previous.opened and not previous.confirmed
    if unconfirmed and previous is not None and policy.claim_timeout is not None:
        if now - previous.fired_at < policy.claim_timeout:
            return Decision(Verdict.IN_FLIGHT, None, "another delivery is calling the agent")
        taken = _opened(_counted(previous, s, now, policy), now, token)
        # The same incident as the lost claim: its first sighting (and so the agent message's
        # id) stays, so an agent that did receive the lost call can tell it is a repeat.
        return Decision(Verdict.FIRE, taken, "took over a claim whose holder went away")
    if previous is not None and s.occurrence in previous.occurrences:
        verdict = Verdict.HELD if live and previous.state is State.HELD else Verdict.DUPLICATE
        return Decision(verdict, None, "occurrence already recorded")
    if not live or previous is None:
        fresh = _counted(_fresh(previous, key, s, now, policy.window), s, now, policy)
        if _due(fresh, s, policy, now):
            return Decision(Verdict.FIRE, _opened(fresh, now, token), "a new incident")
        return Decision(Verdict.HELD, fresh, _held_reason(fresh, policy))
    counted = _counted(previous, s, now, policy)
    if not previous.opened:
        if _due(counted, s, policy, now):
            return Decision(Verdict.FIRE, _opened(counted, now, token), "crossed its threshold")
        return Decision(Verdict.HELD, counted, _held_reason(counted, policy))
    changes = list(material(previous.reported, counted))
    if previous.state is State.RESOLVED:
        counted = evolve(counted, state=State.FIRING)  # it recurred inside its window
        changes.insert(0, "it recurred after it had recovered")
    if changes and _may_follow_up(previous, policy, now):
        sending = evolve(
            counted,
            followups=counted.followups + 1,
            followed_at=now,
            followup_holder=token,
        )
        return Decision(Verdict.FOLLOWUP, sending, "; ".join(changes), tuple(changes))
    return Decision(Verdict.DUPLICATE, counted, "counted in the open incident")


def tally(previous: Record | None, key: DedupKey, *, now: datetime, window: timedelta) -> Record:
    """A counter's record with one more in it (the storm breaker's sessions per Hook and
    minute): a record that is always settled, whose every count is new (never a duplicate,
    stale, held or in flight) and that only ever tells its count and its window. So it is
    what :func:`decide` would store for it, count and window alike, without the incident's
    bookkeeping (occurrences, objects, the session's snapshot), which a counter never reads
    and which cost every session it counted several copies of the record."""
    if previous is None or not _live(previous, now):
        return _begun(key, now, window, count=1, confirmed=True)
    return evolve(
        previous, last_seen=max(now, previous.last_seen), window=window, count=previous.count + 1
    )


def _live(record: Record, now: datetime) -> bool:
    # A hold that healed is over: the next failure starts a new one, from its own start.
    healed = record.state is State.RESOLVED and not record.opened
    return record.live(now) and not healed


def _may_follow_up(previous: Record, policy: Policy, now: datetime) -> bool:
    if not policy.followups or not previous.confirmed or not previous.context_id:
        return False
    if previous.followup_holder and previous.followed_at is not None:
        timeout = policy.claim_timeout or policy.followup_every
        if now - previous.followed_at < timeout:
            return False  # one follow-up at a time
    return previous.followed_at is None or now - previous.followed_at >= policy.followup_every


def _due(record: Record, s: Sighting, policy: Policy, now: datetime) -> bool:
    """Whether a held incident has crossed its threshold."""
    hold = policy.hold
    if hold is None or not s.holdable:
        return True
    if s.count is None and s.started_at is None:
        return True  # no evidence either way: fail open, as the Go khook would
    if any(n >= hold.min_count for _, n in record.failing):
        return True
    if len(record.failing) >= hold.min_count:
        return True
    start = min(record.first_seen, record.started_at or record.first_seen)
    return now - start >= hold.hold_for


def _held_reason(record: Record, policy: Policy) -> str:
    hold = policy.hold
    assert hold is not None
    most = max((n for _, n in record.failing), default=0)
    return (
        f"held: {len(record.failing)} object(s) failing, at most {most} time(s); opens at "
        f"{hold.min_count}, or after {show_duration(hold.hold_for)}"
    )


def _fresh(
    previous: Record | None, key: DedupKey, s: Sighting, now: datetime, window: timedelta
) -> Record:
    carried = previous.occurrences if previous is not None else ()
    return _begun(
        key,
        now,
        window,
        count=0,
        state=State.HELD,
        occurrences=carried,
        opened=False,
        cause=s.event_type,
        detail=s.detail[:DETAIL_LIMIT],
    )


def _begun(key: DedupKey, now: datetime, window: timedelta, **fields: Any) -> Record:
    """A record that begins ``now``, held by no claim yet (a claim's token comes with the
    session, see _opened)."""
    return Record(
        key=key, first_seen=now, last_seen=now, fired_at=now, window=window, holder="", **fields
    )


def _opened(record: Record, now: datetime, token: str) -> Record:
    return evolve(
        record,
        opened=True,
        state=State.FIRING,
        fired_at=now,
        holder=token,
        confirmed=False,
        reported=snapshot(record),
    )


def _counted(previous: Record, s: Sighting, now: datetime, policy: Policy) -> Record:
    """The record with one more sighting in it."""
    new_object = s.resource not in previous.resources
    failing = dict(previous.failing)
    failing[s.resource] = (
        max(failing.get(s.resource, 0), s.count)
        if s.count is not None
        else failing.get(s.resource, 0) + 1
    )
    cause, detail = previous.cause or s.event_type, previous.detail
    if s.event_type and policy.rank(s.event_type) < policy.rank(cause):
        cause, detail = s.event_type, s.detail or detail  # the cause escalates
    elif s.detail and not detail:
        detail = s.detail
    workloads, total = previous.workloads, previous.workloads_total
    if s.workload and s.workload not in workloads:
        workloads, total = remember(workloads, s.workload, WORKLOAD_MEMORY), total + 1
    started = [t for t in (previous.started_at, s.started_at) if t is not None]
    return evolve(
        previous,
        last_seen=max(now, previous.last_seen),
        window=policy.window,
        count=previous.count + 1,
        occurrences=remember(previous.occurrences, s.occurrence, OCCURRENCE_MEMORY),
        resources=remember(previous.resources, s.resource, RESOURCE_MEMORY),
        objects=max(previous.objects, len(previous.resources)) + (1 if new_object else 0),
        failing=tuple(failing.items())[-FAILING_MEMORY:],
        workloads=workloads,
        workloads_total=total,
        started_at=min(started) if started else None,
        cause=cause,
        detail=detail[:DETAIL_LIMIT],
    )


def snapshot(record: Record) -> str:
    """What the session has been told, to see what changed since: the cause, how many
    workloads, and which count milestone."""
    reached = sum(record.count >= m for m in COUNT_MILESTONES)
    return f"{record.cause_type}|{record.workloads_total}|{reached}"


def material(reported: str, record: Record) -> tuple[str, ...]:
    """The changes the session has not been told of: the cause escalated, a workload joined,
    the count crossed a milestone."""
    if not reported:
        return ()
    cause, _, rest = reported.partition("|")
    workloads, _, reached = rest.partition("|")
    changes = []
    if cause != record.cause_type:
        changes.append(f"the cause is now {record.cause_type} (was {cause})")
    if workloads.isdigit() and record.workloads_total > int(workloads):
        latest = record.workloads[-1] if record.workloads else ""
        changes.append(f"{record.workloads_total} workloads affected, latest {latest}")
    if reached.isdigit() and sum(record.count >= m for m in COUNT_MILESTONES) > int(reached):
        changes.append(f"{record.count} signals so far")
    return tuple(changes)


def resolve(current: Record | None, resource: str, now: datetime) -> Decision | None:
    """``resource`` shows healthy again: it leaves the incident. When no object is left
    failing, the incident is over: RESOLVED if its session opened, HEALED if it never did.
    None when this changes nothing."""
    if current is None or not _live(current, now) or current.state is State.RESOLVED:
        return None
    failing = dict(current.failing)
    if resource in failing:
        del failing[resource]
    elif failing or set(current.resources) - {resource}:
        return None  # not one of its failing objects; or, in an old record, not its only one
    left = tuple(failing.items())
    if left:
        updated = evolve(current, failing=left)
        return Decision(Verdict.DUPLICATE, updated, f"{resource} recovered; {len(left)} failing")
    if current.opened:
        done = evolve(current, failing=(), state=State.RESOLVED)
        return Decision(Verdict.RESOLVED, done, f"{resource} is healthy again")
    healed = evolve(current, failing=(), state=State.RESOLVED)
    return Decision(Verdict.HEALED, healed, "every object recovered before the threshold")
