"""The local store: records in tinydb JSON files, sharded by a hash of the key.

``tinydb:PATH`` names a directory. Each record lives in one of ``SHARDS`` small files
(``shard-XXX.json``, XXX from the SHA-256 of the key), so a decision reads and rewrites one
small file, not every record there is. Each shard has its own ``flock`` lock file
(``shard-XXX.json.lock``), so threads and processes that share the directory serialise per
shard, and writes are atomic renames. Damage is repaired, never fatal: see ``Shard`` and
``TinyDBRecords._damaged``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import stat
import tempfile
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.core.incident import id_prefix
from khook.logs import log
from khook.stores._base import Change, StoreError, _Keep
from khook.stores._files import (
    Damaged,
    flocked,
    move_aside,
    parse_json,
    read_bounded,
    temp_files,
    write_atomic,
)
from khook.stores._health import Problems, StoreHealth
from khook.stores._shard import Shard, table_of

logger = logging.getLogger("khook.dedup")

SHARDS = 4096  # ~27 records a shard at 110,000 records: see tests/bench/stores.py
MAX_SHARD_BYTES = 16 * 1024 * 1024  # larger is damage: a shard holds 1/4096 of the records
MAX_OLD_FILE_BYTES = 256 * 1024 * 1024  # a single-file store from before sharding
KEEP_CORRUPT = 20  # damaged files kept for inspection, per store directory


class TinyDBRecords:
    """Records in a directory of tinydb JSON shards, shared by the threads of this process and
    by every process on the machine that opens the same directory."""

    def __init__(self, path: str | Path, clock: Clock, *, shards: int = SHARDS) -> None:
        self.path = Path(path)
        self._clock = clock
        self._shards = shards
        self._width = len(f"{shards - 1:x}")
        self._locks = [threading.Lock() for _ in range(shards)]
        self._directory_lock = threading.RLock()
        self._problems = Problems(clock)
        self._ensure_directory(quietly=True)

    # ---- the RecordStore interface ----------------------------------------------------

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        with self._shard(self.shard_of(key.id)) as shard:
            result = change(shard.get(key.id))
            if isinstance(result, _Keep):
                return
            if result is None:
                shard.remove([key.id] if key.id in shard.raw else [])
            else:
                shard.put(result)

    def get(self, key: DedupKey) -> Record | None:
        with self._shard(self.shard_of(key.id)) as shard:
            return shard.get(key.id)

    def records(self, hook: str) -> list[Record]:
        prefix = id_prefix(hook)
        found: list[Record] = []
        for index in self._existing_shards():
            with self._shard(index) as shard:
                mine = [k for k in shard.raw if k.startswith(prefix)]
                found += [r for k in mine if (r := shard.get(k)) is not None]
        return found

    def prune(self, retention: timedelta) -> int:
        """Drop records that shield nothing (and damaged ones), shard by shard, each under its
        own lock, so a decision never waits for more than one shard's pruning."""
        now = self._clock.now()
        gone = 0
        leftovers = temp_files(self.path)
        for index in self._existing_shards():
            with self._shard(index) as shard:
                gone += shard.prune(now, retention)
                # Left by a crash mid-write; no writer can be using them while we hold the lock.
                for leftover in leftovers.get(shard.path.name, []):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
        return gone

    def health(self) -> StoreHealth:
        try:
            self._ensure_directory()
            with tempfile.TemporaryFile(dir=self.path) as probe:
                probe.write(b"k")
                probe.flush()
        except (StoreError, OSError) as exc:
            return self._problems.health(ready=False, reason=f"cannot use {self.path}: {exc}")
        return self._problems.health()

    def close(self) -> None:
        pass

    def add_missing(self, records: Iterable[Record]) -> int:
        """Store each record whose key holds none yet (a migration, a benchmark's fill), one
        write per shard; returns how many were added."""
        by_shard: defaultdict[int, list[Record]] = defaultdict(list)
        for record in records:
            by_shard[self.shard_of(record.key.id)].append(record)
        added = 0
        for index, batch in sorted(by_shard.items()):
            with self._shard(index) as shard:
                added += shard.add_missing(batch)
        return added

    # ---- shards ---------------------------------------------------------------------

    def shard_of(self, key_id: str) -> int:
        digest = hashlib.sha256(key_id.encode("utf-8", "surrogatepass")).digest()
        return int.from_bytes(digest[:4], "big") % self._shards

    def shard_path(self, index: int) -> Path:
        return self.path / f"shard-{index:0{self._width}x}.json"

    def _existing_shards(self) -> list[int]:
        try:
            names = {entry.name for entry in self.path.iterdir()}
        except OSError:
            return []
        return [i for i in range(self._shards) if self.shard_path(i).name in names]

    @contextlib.contextmanager
    def _shard(self, index: int, *, thread_lock: bool = True) -> Iterator[Shard]:
        path = self.shard_path(index)
        lock = path.with_name(path.name + ".lock")
        with (
            self._locks[index] if thread_lock else contextlib.nullcontext(),
            flocked(lock, self._ensure_directory, lambda why: self._damaged(lock, why)),
        ):
            table, lenient = self._load(path)
            shard = Shard(index, path, table, self.shard_of, self._dropped)
            if lenient:
                shard.canonicalise()  # an odd number somewhere: check every record, once
            yield shard
            if shard.storage.dirty:
                self._save(path, shard.payload())

    def _load(self, path: Path) -> tuple[dict[str, Any], bool]:
        """The shard's table, and whether it was read leniently (see ``parse_json``); a
        damaged file is moved aside and the shard starts afresh."""
        try:
            data = read_bounded(path, MAX_SHARD_BYTES)
            if data is None:
                return {}, False
            value, lenient = parse_json(data)
            return table_of(value), lenient
        except Damaged as exc:
            self._damaged(path, str(exc))
            return {}, False

    def _save(self, path: Path, payload: bytes) -> None:
        for attempt in range(2):
            try:
                write_atomic(path, payload)
                return
            except FileNotFoundError:  # the directory went while we held the lock
                if attempt:
                    raise StoreError(
                        f"cannot write {path}: its directory keeps vanishing"
                    ) from None
                self._ensure_directory()
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc}") from exc

    # ---- damage -----------------------------------------------------------------------

    def _damaged(self, path: Path, reason: str) -> None:
        # Inside the store's directory every shard's damage counts towards one bound; beside
        # it (PATH itself, PATH.lock) only files of that name, never a stranger's.
        family = "shard-" if path.parent == self.path else path.name
        moved = move_aside(path, self._clock.now(), KEEP_CORRUPT, family=family)
        self._problems.add(f"{path.name} {reason}: moved aside to {moved.name}, started afresh")
        log(
            logger,
            logging.ERROR,
            "dedup store file damaged: moved aside, started afresh",
            file=str(path),
            movedTo=str(moved),
            reason=reason,
        )

    def _dropped(self, path: Path, key_id: str, reason: str) -> None:
        shown = key_id if len(key_id) <= 120 else key_id[:117] + "..."
        self._problems.add(f"{path.name}: dropped a damaged record {shown!r}: {reason}")
        log(
            logger,
            logging.ERROR,
            "dedup record damaged: dropped",
            file=str(path),
            key=shown,
            reason=reason,
        )

    def _ensure_directory(self, *, quietly: bool = False) -> None:
        with self._directory_lock:
            try:
                info = self.path.stat()
            except FileNotFoundError:
                _make_directory(self.path)
                if not quietly:
                    self._problems.add(f"{self.path} was missing: created afresh")
                    log(
                        logger,
                        logging.ERROR,
                        "dedup store directory was missing: created afresh",
                        path=str(self.path),
                    )
                return
            except OSError as exc:
                raise StoreError(f"cannot use {self.path}: {exc}") from exc
            if not stat.S_ISDIR(info.st_mode):
                self._adopt_file()

    def _adopt_file(self) -> None:
        """A file where the directory belongs: the single-file store of khook before sharding
        (its records move into the shards and the file is kept as ``PATH.migrated-<time>``),
        or damage (moved aside as ``PATH.corrupt-<time>``). Done under the lock the old store
        used, ``PATH.lock``, so two processes starting together migrate once."""
        lock = self.path.with_name(self.path.name + ".lock")
        records: list[Record] = []
        with flocked(
            lock,
            lambda: _make_directory(self.path.parent),
            lambda why: self._damaged(lock, why),
        ):
            if self.path.is_dir():
                return  # another process got here first
            try:
                data = read_bounded(self.path, MAX_OLD_FILE_BYTES)
                if data is not None:
                    records = _old_records(parse_json(data)[0])
                    move_aside(self.path, self._clock.now(), 1, "migrated")
            except Damaged as exc:
                self._damaged(self.path, str(exc))
            _make_directory(self.path)
            # Shard locks only (no thread locks: this thread may hold one while it got here).
            added = 0
            by_shard: defaultdict[int, list[Record]] = defaultdict(list)
            for record in records:
                by_shard[self.shard_of(record.key.id)].append(record)
            for index, batch in sorted(by_shard.items()):
                with self._shard(index, thread_lock=False) as shard:
                    added += shard.add_missing(batch)
        if records:
            log(
                logger,
                logging.WARNING,
                "moved the single-file dedup store into a directory of shards",
                path=str(self.path),
                records=added,
            )


def _make_directory(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc}") from exc


def _old_records(value: Any) -> list[Record]:
    found = []
    for raw in table_of(value).values():
        with contextlib.suppress(ValueError):
            found.append(Record.from_json(raw))
    return found
