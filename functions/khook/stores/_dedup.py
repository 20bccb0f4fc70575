"""The Deduplicator: the core's incident decisions, made atomically in a store.

Claim before the agent call, release if it fails, confirm when it succeeds; the same for a
follow-up; resolve an incident when its object shows healthy, expire it when it went quiet.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import NamedTuple

from khook.clock import Clock
from khook.core.dedup import (
    Decision,
    DedupKey,
    Policy,
    Record,
    Sighting,
    Verdict,
    decide,
    resolve,
    tally,
)
from khook.core.incident import BUDGET_TYPE
from khook.core.quick import quick_init
from khook.core.settle import confirm, expire, followed_up, owns, unfollowed
from khook.logs import log
from khook.stores._base import DECLINE, KEEP, Change, ImmediateStore, Keep, RecordStore, StoreError
from khook.stores._health import StoreHealth
from khook.tokens import new_token

logger = logging.getLogger("khook.dedup")


@quick_init
@dataclass(frozen=True)
class Claim:
    key: DedupKey
    decision: Decision
    previous: Record | None

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict

    @property
    def record(self) -> Record | None:
        return self.decision.record


class _Live(NamedTuple):
    """An incident known to be live: until when, and its (namespace, group)."""

    until: datetime
    group: tuple[str, str]


class Deduplicator:
    """Incident decisions through a store. Pruning runs in the background."""

    PRUNE_EVERY_SECONDS = 60.0
    KNOWN_LIVE_LIMIT = 10_000

    def __init__(
        self,
        store: RecordStore,
        clock: Clock,
        max_signal_age: timedelta,
        claim_timeout: timedelta | None = None,
    ) -> None:
        self.store = store
        self._clock = clock
        self._max_signal_age = max_signal_age
        self.claim_timeout = claim_timeout
        self._immediate = store if isinstance(store, ImmediateStore) and store.immediate else None
        self._last_prune = clock.monotonic()
        self._pruning = threading.Lock()
        # Incidents known to be live (held or open), so a healthy object costs a store call
        # only for the incidents it may be in: fed by this replica's decisions and by
        # ``refresh``, which lists what every replica stored.
        self._live: OrderedDict[str, _Live] = OrderedDict()
        # How many of them have each (namespace, group), whatever their Hook and family: most
        # healthy objects are in no live group, which this says without building a key.
        self._live_groups: dict[tuple[str, str], int] = {}
        self._live_lock = threading.Lock()

    def claim(
        self,
        key: DedupKey,
        sighting: Sighting,
        policy: Policy | timedelta,
        *,
        settled: bool = False,
    ) -> Claim:
        """Decide a sighting in the store. A bare window is an incident with that cooldown
        that opens at its first sighting and is told nothing after (no hold, no follow-up).
        ``settled``: a new record is stored confirmed (nothing is called for it)."""
        outcome: list[Claim] = []
        self.store.update(
            key, self._decider(key, sighting, policy, outcome, settled=settled), expect_absent=True
        )
        return self._claimed(key, outcome[0])

    def claim_now(
        self, key: DedupKey, sighting: Sighting, policy: Policy, *, opens: bool = False
    ) -> Claim | None:
        """:meth:`claim` on a thread that must not wait (the event loop), for a sighting that
        calls for nothing: a duplicate, a hold, a stale or in-flight sighting; with ``opens``
        (only where :attr:`opens_now`), one that opens or follows up a session too. None, with
        nothing stored, when the store cannot answer at once (it is not in memory, or busy)
        or when the sighting would open or follow up a session and ``opens`` is False:
        :meth:`claim` it then, on a thread, as if it had come a moment later."""
        store = self._immediate
        if store is None:
            return None
        outcome: list[Claim] = []
        decider = self._decider(key, sighting, policy, outcome, quiet=not opens)
        if not store.try_update(key, decider):
            return None
        return self._claimed(key, outcome[0])

    @property
    def answers_now(self) -> bool:
        """Whether :meth:`claim_now` can ever answer (the store is in this process)."""
        return self._immediate is not None

    @property
    def opens_now(self) -> bool:
        """Whether a claim made on the event loop may open a session there: every write of
        the store (the claim's confirmation or release, the budget's count) is made in this
        process without I/O (the memory store)."""
        return self._immediate is not None and self._immediate.in_process

    def _decider(
        self,
        key: DedupKey,
        sighting: Sighting,
        policy: Policy | timedelta,
        outcome: list[Claim],
        *,
        settled: bool = False,
        quiet: bool = False,
    ) -> Change:
        """The store's change for one sighting; the claim it made lands in ``outcome``.
        ``quiet``: store nothing, and make no claim, when the verdict calls for the agent."""
        # Only a firing or a follow-up holds a token, and a quiet decision makes neither.
        token = "" if quiet else new_token()
        if isinstance(policy, timedelta):
            policy = Policy(window=policy, followups=False)
        if policy.claim_timeout is None and self.claim_timeout is not None:
            policy = _with_timeout(policy, self.claim_timeout)

        def change(current: Record | None) -> Record | Keep | None:
            if quiet and current is None and policy.hold is None:
                return DECLINE  # a new incident opens at once (or is stale): not for the loop
            decision = decide(
                current,
                key,
                sighting,
                now=self._clock.now(),
                policy=policy,
                max_signal_age=self._max_signal_age,
                token=token,
            )
            if quiet and decision.verdict in (Verdict.FIRE, Verdict.FOLLOWUP):
                outcome.clear()
                return DECLINE
            if settled and decision.verdict is Verdict.FIRE and decision.record is not None:
                decision = replace(decision, record=confirm(None, decision.record, "", ""))
            outcome[:] = [Claim(key, decision, current)]
            return KEEP if decision.record is None else decision.record

        return change

    def _claimed(self, key: DedupKey, claim: Claim) -> Claim:
        self._maybe_prune()
        known = claim.record or claim.previous
        if known is not None and known.live(self._clock.now()):
            self._remember(key, known.expires_at)
        return claim

    def release(self, claim: Claim) -> None:
        """The agent call of this claim failed: undo what the claim stored."""
        claimed = claim.record
        if claimed is None:
            return
        if claim.verdict is Verdict.FIRE:

            def undo(current: Record | None) -> Record | Keep | None:
                return claim.previous if owns(current, claimed) else KEEP

        elif claim.verdict is Verdict.FOLLOWUP:
            before = claim.previous.followed_at if claim.previous else None

            def undo(current: Record | None) -> Record | Keep | None:
                if current is None:
                    return KEEP
                return unfollowed(current, claimed.followup_holder, before) or KEEP

        else:
            return
        self.store.update(claim.key, undo)

    def count(self, key: DedupKey, window: timedelta) -> Record:
        """A counter, not a session: one more under ``key`` (kept ``window`` after its last
        count), stored settled in one write, never "in flight". The record as it now
        stands."""
        stored: list[Record] = []

        def change(current: Record | None) -> Record:
            stored[:] = [tally(current, key, now=self._clock.now(), window=window)]
            return stored[0]

        self.store.update(key, change, expect_absent=True)
        self._maybe_prune()
        return stored[0]

    def confirm(
        self, claim: Claim, task_id: str, context_id: str, task_state: str = ""
    ) -> Record | None:
        """The agent accepted the claim's message (a session's first, or a follow-up)."""
        claimed = claim.record
        if claimed is None or claim.verdict not in (Verdict.FIRE, Verdict.FOLLOWUP):
            return None
        stored: list[Record] = []

        def change(current: Record | None) -> Record | Keep | None:
            if claim.verdict is Verdict.FOLLOWUP:
                if current is None:
                    return KEEP
                updated = followed_up(
                    current, claimed.followup_holder, task_id, context_id, task_state
                )
                if updated is None:
                    return KEEP
            else:
                if current is not None and not owns(current, claimed):
                    return KEEP
                updated = confirm(current, claimed, task_id, context_id, task_state)
            stored[:] = [updated]
            return updated

        self.store.update(claim.key, change)
        return stored[0] if stored else None

    def knows_live(self, key: DedupKey) -> bool:
        """Whether this process knows ``key``'s incident to be live (memory only): what
        :meth:`resolve` checks before it reads the store."""
        with self._live_lock:
            known = self._live.get(key.id)
        return known is not None and known.until > self._clock.now()

    def may_know_live_any(self) -> bool:
        """False when this process knows no live incident at all."""
        return bool(self._live_groups)

    def may_know_live(self, groups: Iterable[tuple[str, str]]) -> bool:
        """Whether this process may know a live incident, of any Hook and family, whose
        namespace and group are one of ``groups``; False means :meth:`knows_live` is False for
        every key with them. Memory only, no lock (one dict lookup each)."""
        live = self._live_groups
        return any(group in live for group in groups)

    def resolve(self, key: DedupKey, resource: str) -> Decision | None:
        """``resource`` is healthy again: it leaves the incident under ``key``, if it is one
        this process knows to be live."""
        if not self.knows_live(key):
            return None
        done: list[Decision] = []

        def change(current: Record | None) -> Record | Keep | None:
            decision = resolve(current, resource, self._clock.now())
            done[:] = [decision] if decision else []
            return decision.record if decision and decision.record else KEEP

        self.store.update(key, change)
        if done and done[0].verdict in (Verdict.RESOLVED, Verdict.HEALED):
            self._forget(key)
        return done[0] if done else None

    def expire(self, key: DedupKey) -> Record | None:
        """Mark an incident that went quiet resolved; the record when this call did it (the
        caller announces it), None when it was not due or another replica did."""
        done: list[Record] = []

        def change(current: Record | None) -> Record | Keep | None:
            updated = expire(current, self._clock.now())
            done[:] = [updated] if updated is not None else []
            return updated if updated is not None else KEEP

        self.store.update(key, change)
        if done:
            self._forget(key)
        return done[0] if done else None

    def learn(self, records: list[Record]) -> None:
        """Records listed from the store (every replica's): the live ones are known here."""
        now = self._clock.now()
        for record in records:
            if record.key.event_type == BUDGET_TYPE:
                continue  # the storm breaker's counter: no object ends it (see count)
            if record.live(now) and record.state_at(now).value != "resolved":
                self._remember(record.key, record.expires_at)

    def _remember(self, key: DedupKey, until: datetime) -> None:
        group = (key.namespace, key.group)
        with self._live_lock:
            if key.id not in self._live:  # one id, one key: its group is counted once
                self._count_group(group, 1)
            self._live[key.id] = _Live(until, group)
            self._live.move_to_end(key.id)
            while len(self._live) > self.KNOWN_LIVE_LIMIT:
                self._count_group(self._live.popitem(last=False)[1].group, -1)

    def _forget(self, key: DedupKey) -> None:
        with self._live_lock:
            known = self._live.pop(key.id, None)
            if known is not None:
                self._count_group(known.group, -1)

    def _count_group(self, group: tuple[str, str], change: int) -> None:
        """Under the lock."""
        count = self._live_groups.get(group, 0) + change
        if count > 0:
            self._live_groups[group] = count
        else:
            self._live_groups.pop(group, None)

    def _maybe_prune(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_prune < self.PRUNE_EVERY_SECONDS:
            return
        self._last_prune = now
        if self._pruning.acquire(blocking=False):
            threading.Thread(target=self._prune, name="khook-prune", daemon=True).start()

    def _prune(self) -> None:
        try:
            gone = self.store.prune(self._max_signal_age)
            if gone:
                log(logger, logging.INFO, "pruned dedup records", count=gone)
        except StoreError as exc:
            log(logger, logging.WARNING, "could not prune dedup records", error=str(exc))
        finally:
            self._pruning.release()

    def health(self) -> StoreHealth:
        return self.store.health()

    def close(self) -> None:
        self.store.close()


def _with_timeout(policy: Policy, timeout: timedelta) -> Policy:
    return replace(policy, claim_timeout=timeout)
