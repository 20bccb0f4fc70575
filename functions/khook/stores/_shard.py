"""One shard of the local store, for the length of one locked transaction: a tinydb table
read from its file once and written back once, whose records are checked as they are read."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import orjson
from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Document, Table

from khook.core.dedup import Record
from khook.core.stored import MAX_STORED_WINDOW
from khook.stores._base import StoreError
from khook.stores._files import Damaged

TABLE = "records"


class _KeyedTable(Table):
    # A record's document id is its key: a lookup, not a scan. (tinydb types ids as int, but
    # only ever str()s them and compares them.)
    document_id_class = str  # type: ignore[assignment]


class _ShardDB(TinyDB):
    table_class = _KeyedTable


class ShardStorage(Storage):
    """One shard's data for the length of one locked transaction: read from its file once,
    written back once at the end if anything changed."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dirty = False

    def read(self) -> dict[str, Any]:
        return self.data

    def write(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dirty = True

    def close(self) -> None:
        pass


class Shard:
    """One shard, locked. Records are checked when they are read: a damaged one is dropped
    (logged) and counts as absent."""

    def __init__(
        self,
        index: int,
        path: Path,
        table: dict[str, Any],
        shard_of: Callable[[str], int],
        dropped: Callable[[Path, str, str], None],
    ) -> None:
        self._shard_of = shard_of
        self._dropped = dropped
        self.index = index
        self.path = path
        self._db = _ShardDB({TABLE: table}, storage=ShardStorage)
        self._table: Any = self._db.table(TABLE, cache_size=0)  # str ids: see _KeyedTable

    @property
    def storage(self) -> ShardStorage:
        return cast(ShardStorage, self._db.storage)

    @property
    def raw(self) -> dict[str, Any]:
        table: dict[str, Any] = self.storage.data.setdefault(TABLE, {})
        return table

    def get(self, key_id: str) -> Record | None:
        if key_id not in self.raw:
            return None
        record = self._valid(key_id, self.raw[key_id])
        if record is None:
            self._table.remove(doc_ids=[key_id])
        return record

    def put(self, record: Record) -> None:
        doc = record.to_json()

        def replace(stored: dict[str, Any]) -> None:
            stored.clear()
            stored.update(doc)

        if record.key.id in self.raw:
            self._table.update(replace, doc_ids=[record.key.id])
        else:
            self._table.insert(document(record))

    def add_missing(self, records: list[Record]) -> int:
        missing = [r for r in records if self.get(r.key.id) is None]
        self._table.insert_multiple(document(r) for r in missing)
        return len(missing)

    def remove(self, key_ids: list[str]) -> None:
        if key_ids:
            self._table.remove(doc_ids=key_ids)

    def valid_records(self) -> Iterator[tuple[str, Record]]:
        """Every sound record; the damaged ones are dropped on the way."""
        bad = []
        for key_id, raw in list(self.raw.items()):
            record = self._valid(key_id, raw)
            if record is None:
                bad.append(key_id)
            else:
                yield key_id, record
        self.remove(bad)

    def prune(self, now: datetime, retention: timedelta) -> int:
        """Drop the records that shield nothing and the damaged ones; returns how many of
        the first kind went."""
        old, bad = [], []
        for key_id, raw in list(self.raw.items()):
            filed_right = self._shard_of(key_id) == self.index
            due = _due(key_id, raw, now, retention) if filed_right else None
            if due is None:  # not as to_json writes it: check it in full
                record = self._valid(key_id, raw)
                if record is None:
                    bad.append(key_id)
                    continue
                due = record.prunable(now, retention)
            if due:
                old.append(key_id)
        self.remove(old + bad)
        return len(old)

    def canonicalise(self) -> None:
        """Keep only sound records, rewritten as ``to_json`` writes them (no stray fields)."""
        kept = [document(r) for _, r in list(self.valid_records())]
        self._table.truncate()
        self._table.insert_multiple(kept)

    def payload(self) -> bytes:
        try:
            return orjson.dumps(self.storage.data)
        except orjson.JSONEncodeError:  # out-of-range numbers or deep junk in damaged records
            self.canonicalise()
        try:
            return orjson.dumps(self.storage.data)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate in a name: escape it
            try:
                return json.dumps(self.storage.data, separators=(",", ":")).encode()
            except (ValueError, TypeError, RecursionError) as exc:
                raise StoreError(f"cannot encode {self.path}: {exc}") from exc

    def _valid(self, key_id: str, raw: Any) -> Record | None:
        try:
            record = Record.from_json(raw)
            if record.key.id != key_id:
                raise ValueError("it is filed under another key")
            if self._shard_of(key_id) != self.index:
                raise ValueError("it is filed in the wrong shard")
        except ValueError as exc:
            self._dropped(self.path, key_id, str(exc))
            return None
        return record


def _due(key_id: str, raw: Any, now: datetime, retention: timedelta) -> bool | None:
    """``Record.prunable`` for a record as ``to_json`` wrote it, read straight from the JSON:
    a full check of 100,000 records would hold the GIL for seconds every minute and show in
    the decisions' p99. None when it is not in that form."""
    try:
        if raw["key"] != key_id:
            return None
        last = datetime.fromisoformat(raw["lastSeen"])
        window = raw["windowSeconds"]
        if (
            last.tzinfo is None
            or type(window) not in (int, float)
            or not 0 <= window <= MAX_STORED_WINDOW.total_seconds()
        ):
            return None
        return bool(now > last + timedelta(seconds=window) + retention)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def document(record: Record) -> Document:
    return Document(record.to_json(), doc_id=record.key.id)  # type: ignore[arg-type]


def table_of(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Damaged("is not a JSON object")
    table = value.get(TABLE, {})
    if not isinstance(table, dict):
        raise Damaged(f'has a "{TABLE}" that is not a JSON object')
    return table
