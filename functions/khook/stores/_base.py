from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from khook.clock import Clock
from khook.core.dedup import (
    Decision,
    DedupKey,
    Observation,
    Record,
    Verdict,
    confirm,
    decide,
    owns,
    resolve,
)
from khook.logs import log
from khook.stores._health import StoreHealth

logger = logging.getLogger("khook.dedup")


class StoreError(RuntimeError):
    """The store could not be read or written; the caller may retry later (503)."""


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
Change = Callable[[Record | None], "Record | _Keep | None"]


class RecordStore(Protocol):
    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        """Atomically: read the record under ``key``, call ``change`` with it, and store what
        it returns (a Record; None deletes; KEEP leaves the store untouched). ``change`` may be
        called more than once by stores that retry on conflicts, so it must be pure.
        ``expect_absent`` hints that the record most likely does not exist yet, so a store
        may try to create it before reading."""

    def records(self, hook: str) -> list[Record]:
        """Every record of one Hook (``namespace/name``), for its status."""

    def prune(self, retention: timedelta) -> int:
        """Delete records that no longer shield anything; returns how many went."""

    def health(self) -> StoreHealth:
        """Whether the store can work now, and the damage it found and repaired lately."""

    def close(self) -> None: ...


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


class Deduplicator:
    """Claim before the agent call, release if it fails, confirm when it succeeds; resolve an
    incident early when its object shows healthy. Pruning runs in the background."""

    PRUNE_EVERY_SECONDS = 60.0
    KNOWN_FIRING_LIMIT = 10_000

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
        self._claim_timeout = claim_timeout
        self._last_prune = clock.monotonic()
        self._pruning = threading.Lock()
        # Keys this replica saw firing, so a healthy object costs no API call for the others.
        self._firing: OrderedDict[str, datetime] = OrderedDict()
        self._firing_lock = threading.Lock()

    def claim(self, key: DedupKey, observation: Observation, window: timedelta) -> Claim:
        token = uuid.uuid4().hex
        outcome: list[Claim] = []

        def change(current: Record | None) -> Record | _Keep | None:
            decision = decide(
                current,
                key,
                observation,
                now=self._clock.now(),
                window=window,
                max_signal_age=self._max_signal_age,
                claim_timeout=self._claim_timeout,
                token=token,
            )
            outcome[:] = [Claim(key, decision, current)]
            return KEEP if decision.record is None else decision.record

        self.store.update(key, change, expect_absent=True)
        self._maybe_prune()
        claim = outcome[0]
        live = claim.record or claim.previous
        if live is not None and live.live(self._clock.now()):
            self._remember_firing(key, live.expires_at)
        return claim

    def release(self, claim: Claim) -> None:
        claimed = claim.record
        if claim.verdict is not Verdict.FIRE or claimed is None:
            return

        def change(current: Record | None) -> Record | _Keep | None:
            return claim.previous if owns(current, claimed) else KEEP

        self.store.update(claim.key, change)
        with self._firing_lock:
            self._firing.pop(claim.key.id, None)

    def confirm(self, claim: Claim, task_id: str, context_id: str) -> Record | None:
        claimed = claim.record
        if claim.verdict is not Verdict.FIRE or claimed is None:
            return None
        stored: list[Record] = []

        def change(current: Record | None) -> Record | _Keep | None:
            if current is not None and not owns(current, claimed):
                return KEEP
            updated = confirm(current, claimed, task_id, context_id)
            stored[:] = [updated]
            return updated

        self.store.update(claim.key, change)
        return stored[0] if stored else None

    def resolve(self, key: DedupKey, resource: str) -> Record | None:
        """Mark a live incident resolved; only for keys this replica saw firing."""
        now = self._clock.now()
        with self._firing_lock:
            until = self._firing.get(key.id)
        if until is None or until <= now:
            return None
        done: list[Record] = []

        def change(current: Record | None) -> Record | _Keep | None:
            updated = resolve(current, resource, self._clock.now())
            done[:] = [updated] if updated else []
            return updated if updated is not None else KEEP

        self.store.update(key, change)
        if done:
            with self._firing_lock:
                self._firing.pop(key.id, None)
        return done[0] if done else None

    def _remember_firing(self, key: DedupKey, until: datetime) -> None:
        with self._firing_lock:
            self._firing[key.id] = until
            self._firing.move_to_end(key.id)
            while len(self._firing) > self.KNOWN_FIRING_LIMIT:
                self._firing.popitem(last=False)

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
