from __future__ import annotations

from khook.clock import Clock
from khook.stores._base import RecordStore
from khook.stores._memory import MemoryRecords
from khook.stores._tinydb import TinyDBRecords

DEFAULT_TINYDB_PATH = ".khook/dedup.json"


class StoreSpecError(ValueError):
    pass


def open_store(spec: str, clock: Clock) -> RecordStore:
    """``memory`` or ``tinydb[:PATH]`` (default path .khook/dedup.json)."""
    kind, _, arg = spec.partition(":")
    if kind == "memory" and not arg:
        return MemoryRecords(clock)
    if kind == "tinydb":
        return TinyDBRecords(arg or DEFAULT_TINYDB_PATH, clock)
    raise StoreSpecError(f"unknown dedup store {spec!r}: use memory or tinydb:PATH")
