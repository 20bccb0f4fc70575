from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.stores._base import Change, StoreError, _Keep

_TABLE = "records"


class _AtomicJSONStorage(Storage):
    """TinyDB's JSONStorage rewrites its file in place; a crash mid-write would lose every
    record. This one writes a temporary file beside it and renames it over the old one."""

    def __init__(self, path: str) -> None:
        self._path = Path(path)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        data = json.loads(text)
        return data if isinstance(data, dict) else None

    def write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(self._path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        pass


class TinyDBRecords:
    """Records in a tinydb JSON file, shared by the threads of this process and by every
    process on the machine that opens the same file: an exclusive ``flock`` on a lock file
    beside it serialises each read-modify-write, and writes are atomic renames."""

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._thread_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc}") from exc

    @contextlib.contextmanager
    def _locked_db(self) -> Iterator[TinyDB]:
        with self._thread_lock:
            try:
                lock_file = self._lock_path.open("a")
            except OSError as exc:
                raise StoreError(f"cannot open lock file {self._lock_path}: {exc}") from exc
            with lock_file:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
                try:
                    db = TinyDB(str(self.path), storage=_AtomicJSONStorage)
                    try:
                        yield db
                    finally:
                        db.close()
                except (OSError, ValueError) as exc:
                    raise StoreError(f"dedup file {self.path}: {exc}") from exc
                finally:
                    fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        record = Query()
        with self._locked_db() as db:
            table = db.table(_TABLE, cache_size=0)
            doc = table.get(record.key == key.id)
            current = Record.from_json(dict(doc)) if isinstance(doc, dict) else None
            result = change(current)
            if isinstance(result, _Keep):
                return
            if result is None:
                table.remove(record.key == key.id)
            else:
                table.upsert(result.to_json(), record.key == key.id)

    def get(self, key: DedupKey) -> Record | None:
        with self._locked_db() as db:
            doc = db.table(_TABLE, cache_size=0).get(Query().key == key.id)
            return Record.from_json(dict(doc)) if isinstance(doc, dict) else None

    def records(self, hook: str) -> list[Record]:
        with self._locked_db() as db:
            docs = db.table(_TABLE, cache_size=0).all()
        found = [Record.from_json(dict(doc)) for doc in docs]
        return [r for r in found if r.key.hook == hook]

    def prune(self, retention: timedelta) -> int:
        now = self._clock.now()
        with self._locked_db() as db:
            table = db.table(_TABLE, cache_size=0)
            gone = [
                doc.doc_id
                for doc in table.all()
                if Record.from_json(dict(doc)).prunable(now, retention)
            ]
            if gone:
                table.remove(doc_ids=gone)
            return len(gone)

    def close(self) -> None:
        pass
