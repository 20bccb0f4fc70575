from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Final, Protocol, runtime_checkable

from khook.core.incident import DedupKey, Record
from khook.stores._health import StoreHealth


class StoreError(RuntimeError):
    """The store could not be read or written; the caller may retry later (503)."""


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()
Keep = _Keep


class _Decline(_Keep):
    def __repr__(self) -> str:
        return "DECLINE"


# What a change given to ``try_update`` returns to store nothing and have try_update answer
# False, as if it had to wait: the caller will decide on a thread instead.
DECLINE: Final = _Decline()
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


@runtime_checkable
class ImmediateStore(Protocol):
    """A store that can also decide on a thread that must never wait (the event loop)."""

    immediate: bool  # False: a wrapper of a store that waits; try_update always says False
    # True: every write is made in this process, without I/O, under a lock held for one record
    # (or a copy of them all), so a claim's confirmation or release may follow it on the loop.
    in_process: bool

    def try_update(self, key: DedupKey, change: Change) -> bool:
        """``update``, if it needs no waiting (no I/O, no lock another thread holds); False,
        with nothing stored, when it would have to wait, and when ``change`` returned DECLINE
        (``change`` is pure: it may have been called or not)."""
