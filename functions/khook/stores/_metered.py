"""A dedup store, measured: how long each decision takes and how often the store fails."""

from __future__ import annotations

import time
from datetime import timedelta

from khook import metrics
from khook.core.dedup import DedupKey, Record
from khook.stores._base import Change, ImmediateStore, RecordStore, StoreError
from khook.stores._cache import CachedRecords
from khook.stores._configmap import ConfigMapRecords
from khook.stores._health import StoreHealth
from khook.stores._lease import LeaseRecords
from khook.stores._memory import MemoryRecords
from khook.stores._tinydb import TinyDBRecords

_KINDS: tuple[tuple[type, str], ...] = (
    (MemoryRecords, "memory"),
    (TinyDBRecords, "tinydb"),
    (LeaseRecords, "lease"),
    (ConfigMapRecords, "configmap"),
)


def store_kind(store: RecordStore) -> str:
    """The ``store`` label: memory, tinydb, lease or configmap (a replica's cache in front of
    a Kubernetes store is that store); ``other`` for a store of a test's own."""
    if isinstance(store, CachedRecords):
        return store_kind(store.inner)
    return next((kind for cls, kind in _KINDS if isinstance(store, cls)), "other")


class MeteredRecords:
    """A RecordStore that counts: the duration of every decision (``update``, the atomic
    read-modify-write a claim, a confirmation, a release or a resolution is) and every
    StoreError, by store kind. Cached duplicates are decisions too (fast ones)."""

    def __init__(self, inner: RecordStore, kind: str | None = None) -> None:
        self.inner = inner
        self.kind = kind or store_kind(inner)
        self._immediate = inner if isinstance(inner, ImmediateStore) and inner.immediate else None
        self.immediate = self._immediate is not None
        self.in_process = self._immediate is not None and self._immediate.in_process

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        started = time.perf_counter()
        try:
            self.inner.update(key, change, expect_absent=expect_absent)
        except StoreError:
            metrics.store_error(self.kind)
            raise
        finally:
            metrics.store_decision(self.kind, time.perf_counter() - started)

    def try_update(self, key: DedupKey, change: Change) -> bool:
        if self._immediate is None:
            return False
        started = time.perf_counter()
        try:
            done = self._immediate.try_update(key, change)
        except StoreError:
            metrics.store_error(self.kind)
            raise
        if done:
            metrics.store_decision(self.kind, time.perf_counter() - started)
        return done

    def records(self, hook: str) -> list[Record]:
        try:
            return self.inner.records(hook)
        except StoreError:
            metrics.store_error(self.kind)
            raise

    def prune(self, retention: timedelta) -> int:
        try:
            return self.inner.prune(retention)
        except StoreError:
            metrics.store_error(self.kind)
            raise

    def health(self) -> StoreHealth:
        return self.inner.health()

    def close(self) -> None:
        self.inner.close()
