from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.core.settle import merge
from khook.logs import log
from khook.stores._base import DECLINE, KEEP, Change, RecordStore, StoreError, _Keep
from khook.stores._health import StoreHealth
from khook.ticker import Ticker

logger = logging.getLogger("khook.dedup")


@dataclass
class _Entry:
    record: Record  # what this replica believes now
    synced: Record  # what the store held when this replica last read or wrote it

    @property
    def dirty(self) -> bool:
        return self.record != self.synced


class CachedRecords:
    """A replica's memory of incidents it knows to be live, in front of a shared store.

    Only *confirmed* records are kept (the agent accepted the call, so no replica will release
    them); while one is live, a duplicate is decided here and costs no API call. What
    duplicates change (lastSeen, count, occurrences, state) is written back lazily, at most
    once per record every ``sync_every`` seconds, merged into whatever other replicas wrote.
    """

    immediate = True  # try_update: a duplicate of a live incident known here, no API call
    in_process = False  # update may have to ask the API server

    def __init__(self, inner: RecordStore, clock: Clock, sync_every: float = 5.0) -> None:
        self.inner = inner
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._ticker = Ticker("khook-sync", sync_every, self.sync)

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        now = self._clock.now()
        with self._lock:
            entry = self._entries.get(key.id)
            if entry is not None and not entry.record.live(now):
                self._entries.pop(key.id)
                entry = None
            if entry is not None and self._decided_here(entry, change):
                return
        # Not known here, or a change only the store may decide: go to the store, with what
        # this replica counted and has not written back yet (else the store would decide
        # without it, and the write below would drop it).
        snapshot = entry.record if entry is not None else None
        pending = (entry.record, entry.synced) if entry is not None and entry.dirty else None
        seen: list[tuple[Record | None, Record | _Keep | None]] = []

        def watched(current: Record | None) -> Record | _Keep | None:
            folded = False
            if pending is not None and current is not None and current.holder == pending[0].holder:
                current, folded = merge(current, *pending), True
            result = change(current)
            seen[:] = [(current, result)]
            if folded and isinstance(result, _Keep):
                return current  # nothing decided, but the pending counts are written
            return result

        self.inner.update(key, watched, expect_absent=expect_absent and entry is None)
        if not seen:
            return
        current, result = seen[0]
        known = current if isinstance(result, _Keep) else result
        with self._lock:
            if isinstance(known, Record) and known.confirmed and known.live(now):
                fresh = self._entries.get(key.id)
                if (
                    fresh is not None
                    and snapshot is not None
                    and fresh.record != snapshot
                    and fresh.record.holder == known.holder
                ):
                    # Counted here (the event loop) while the store decided: kept, rebased.
                    self._entries[key.id] = _Entry(merge(known, fresh.record, snapshot), known)
                else:
                    self._entries[key.id] = _Entry(known, known)
            else:
                self._entries.pop(key.id, None)

    def try_update(self, key: DedupKey, change: Change) -> bool:
        """``update`` when it is decided here (a confirmed, live record this replica knows,
        and a change that only counts); False, with nothing stored, when the store must
        decide or another thread holds the lock."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            entry = self._entries.get(key.id)
            if entry is None or not entry.record.live(self._clock.now()):
                return False
            return self._decided_here(entry, change)
        finally:
            self._lock.release()

    def _decided_here(self, entry: _Entry, change: Change) -> bool:
        """Under the lock: whether ``change`` is decided on this replica's record (nothing
        to store, or it only counts); False leaves it to the store (DECLINE too)."""
        result = change(entry.record)
        if isinstance(result, _Keep):
            return result is not DECLINE
        if isinstance(result, Record) and _local(entry.record, result):
            entry.record = result
            self._ticker.ensure_started()
            return True
        return False

    def flush(self) -> int:
        return self.sync()

    def sync(self) -> int:
        """Write back what duplicates changed; returns how many records were written."""
        with self._lock:
            now = self._clock.now()
            for key_id in [
                k for k, e in self._entries.items() if not e.dirty and not e.record.live(now)
            ]:
                del self._entries[key_id]
            dirty = [(k, e.record, e.synced) for k, e in self._entries.items() if e.dirty]
        return sum(self._sync_one(key_id, local, base) for key_id, local, base in dirty)

    def _sync_one(self, key_id: str, local: Record, base: Record) -> int:
        stored: list[Record] = []

        def fold(current: Record | None) -> Record | _Keep | None:
            if current is None or current.holder != local.holder:
                return KEEP  # gone or superseded: nothing of ours to add
            merged = merge(current, local, base)
            stored[:] = [merged]
            return merged

        try:
            self.inner.update(DedupKey.from_id(key_id), fold)
        except StoreError as exc:
            log(
                logger, logging.WARNING, "could not sync a dedup record", key=key_id, error=str(exc)
            )
            return 0
        with self._lock:
            entry = self._entries.get(key_id)
            if entry is None:
                pass
            elif not stored:
                del self._entries[key_id]
            elif entry.record == local:
                self._entries[key_id] = _Entry(stored[0], stored[0])
            else:  # more duplicates arrived meanwhile: keep them, rebased on the store
                entry.record = merge(stored[0], entry.record, local)
                entry.synced = stored[0]
        return 1 if stored else 0

    def records(self, hook: str) -> list[Record]:
        return self.inner.records(hook)

    def prune(self, retention: timedelta) -> int:
        return self.inner.prune(retention)

    def health(self) -> StoreHealth:
        return self.inner.health()

    def close(self) -> None:
        self._ticker.close()
        self.sync()
        self.inner.close()


def _local(before: Record, after: Record) -> bool:
    """Whether a change only counts (decided here, written back lazily): the same claim, the
    same state, no follow-up being claimed or confirmed. Anything else is decided by the
    store, so that only one replica opens, follows up or resolves."""
    return (
        after.holder == before.holder
        and after.state is before.state
        and after.followup_holder == before.followup_holder
        and after.reported == before.reported
    )
