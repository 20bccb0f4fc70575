from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from khook.clock import Clock
from khook.stores._base import RecordStore
from khook.stores._cache import CachedRecords
from khook.stores._configmap import ConfigMapRecords
from khook.stores._lease import LeaseRecords
from khook.stores._memory import MemoryRecords
from khook.stores._tinydb import TinyDBRecords

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DEFAULT_TINYDB_PATH = ".khook/dedup"
KINDS = ("memory", "tinydb", "lease", "configmap")


class StoreSpecError(ValueError):
    pass


def open_store(
    spec: str,
    clock: Clock,
    *,
    api: ApiClient | None = None,
    namespace: str = "",
    identity: str = "",
    retention: timedelta = timedelta(minutes=15),
    sync_every: float = 5.0,
) -> RecordStore:
    """``memory``, ``tinydb[:PATH]`` (PATH is the directory of the store's shards; default
    .khook/dedup; an old single-file store found at PATH is moved into it), ``lease`` or
    ``configmap`` (in ``namespace`` through ``api``, behind this replica's cache of live
    incidents)."""
    kind, _, arg = spec.partition(":")
    if kind == "memory" and not arg:
        return MemoryRecords(clock)
    if kind == "tinydb":
        return TinyDBRecords(arg or DEFAULT_TINYDB_PATH, clock)
    if kind in ("lease", "configmap") and not arg:
        if api is None or not namespace:
            raise StoreSpecError(f"the {kind} store needs a Kubernetes connection and namespace")
        inner: RecordStore = (
            LeaseRecords(api, namespace, identity or "khook", clock)
            if kind == "lease"
            else ConfigMapRecords(api, namespace, clock, retention)
        )
        return CachedRecords(inner, clock, sync_every=sync_every)
    raise StoreSpecError(f"unknown dedup store {spec!r}: use one of {', '.join(KINDS)}")
