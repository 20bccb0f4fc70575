from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
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
)


class StoreError(RuntimeError):
    """The store could not be read or written; the caller may retry later (503)."""


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
Change = Callable[[Record | None], "Record | _Keep | None"]


class RecordStore(Protocol):
    def update(self, key: DedupKey, change: Change) -> None:
        """Atomically: read the record under ``key``, call ``change`` with it, and store what
        it returns (a Record; None deletes; KEEP leaves the store untouched). ``change`` may be
        called more than once by stores that retry on conflicts, so it must be pure."""

    def prune(self, retention: timedelta) -> int:
        """Delete records that no longer shield anything; returns how many went."""

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
    """Claim before the agent call, release if it fails, confirm when it succeeds."""

    PRUNE_EVERY_SECONDS = 60.0

    def __init__(self, store: RecordStore, clock: Clock, max_signal_age: timedelta) -> None:
        self.store = store
        self._clock = clock
        self._max_signal_age = max_signal_age
        self._last_prune = clock.monotonic()

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
                token=token,
            )
            outcome[:] = [Claim(key, decision, current)]
            return KEEP if decision.record is None else decision.record

        self.store.update(key, change)
        self._maybe_prune()
        return outcome[0]

    def release(self, claim: Claim) -> None:
        claimed = claim.record
        if claim.verdict is not Verdict.FIRE or claimed is None:
            return

        def change(current: Record | None) -> Record | _Keep | None:
            return claim.previous if owns(current, claimed) else KEEP

        self.store.update(claim.key, change)

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

    def _maybe_prune(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_prune >= self.PRUNE_EVERY_SECONDS:
            self._last_prune = now
            self.store.prune(self._max_signal_age)
