from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Final, Protocol

from khook.core.incident import DedupKey, Record
from khook.stores._health import StoreHealth


class StoreError(RuntimeError):
    """The store could not be read or written; the caller may retry later (503)."""


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
Keep = _Keep
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
