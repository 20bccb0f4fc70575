"""Dedup record stores: where the record of what has fired lives.

A store does one thing: an atomic read-modify-write of the record under one key
(``update``). The decisions are the core's (:mod:`khook.core.dedup`); :class:`Deduplicator`
joins the two into claim, release and confirm. Every store reports its ``health()``: whether
it can work, and the damage it found and repaired lately.
"""

from khook.stores._base import KEEP, Change, ImmediateStore, Keep, RecordStore, StoreError
from khook.stores._cache import CachedRecords
from khook.stores._configmap import ConfigMapRecords
from khook.stores._dedup import Claim, Deduplicator
from khook.stores._health import StoreHealth
from khook.stores._lease import LeaseRecords
from khook.stores._memory import MemoryRecords
from khook.stores._metered import MeteredRecords, store_kind
from khook.stores._open import open_store
from khook.stores._tinydb import TinyDBRecords

__all__ = [
    "KEEP",
    "CachedRecords",
    "Change",
    "Claim",
    "ConfigMapRecords",
    "Deduplicator",
    "ImmediateStore",
    "Keep",
    "LeaseRecords",
    "MemoryRecords",
    "MeteredRecords",
    "RecordStore",
    "StoreError",
    "StoreHealth",
    "TinyDBRecords",
    "open_store",
    "store_kind",
]
