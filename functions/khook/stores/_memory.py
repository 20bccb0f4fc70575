from __future__ import annotations

import threading
from datetime import timedelta

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.stores._base import DECLINE, Change, _Keep
from khook.stores._health import StoreHealth


class MemoryRecords:
    """Records in this process only: for tests and single-replica experiments. Lost on exit and
    not shared between replicas or gunicorn workers."""

    immediate = True  # try_update answers without I/O
    in_process = True  # and so does update: the lock is held for one record, or a copy

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        with self._lock:
            self._apply(key, change)

    def try_update(self, key: DedupKey, change: Change) -> bool:
        # Never waits: another thread's claim, or a prune's copy, sends the caller to a
        # worker thread instead.
        if not self._lock.acquire(blocking=False):
            return False
        try:
            return self._apply(key, change)
        finally:
            self._lock.release()

    def _apply(self, key: DedupKey, change: Change) -> bool:
        """Under the lock: store what ``change`` makes of the record; False for DECLINE."""
        result = change(self._records.get(key.id))
        if isinstance(result, _Keep):
            return result is not DECLINE
        if result is None:
            self._records.pop(key.id, None)
        else:
            self._records[key.id] = result
        return True

    def get(self, key: DedupKey) -> Record | None:
        with self._lock:
            return self._records.get(key.id)

    def records(self, hook: str) -> list[Record]:
        with self._lock:  # a copy under the lock, the search outside it: held only briefly
            held = list(self._records.values())
        return [r for r in held if r.key.hook == hook]

    def prune(self, retention: timedelta) -> int:
        now = self._clock.now()
        with self._lock:
            held = list(self._records.items())
        old = [(k, r) for k, r in held if r.prunable(now, retention)]
        gone = 0
        with self._lock:
            for k, r in old:
                if self._records.get(k) is r:  # unchanged since the copy: still prunable
                    del self._records[k]
                    gone += 1
        return gone

    def health(self) -> StoreHealth:
        return StoreHealth()  # nothing here can be damaged from outside

    def close(self) -> None:
        pass
