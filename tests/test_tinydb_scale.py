"""The local store with many records: sharded so that a decision touches one small file,
pruned so that the files stay bounded, and still able to list a Hook's records. (How fast a
decision is belongs to ``make bench``; these check what must hold whatever the machine.)"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from khook.core.dedup import DedupKey, Observation, Verdict
from khook.stores import Deduplicator, TinyDBRecords
from tests.support.clock import FakeClock

WINDOW = timedelta(minutes=10)
RETENTION = timedelta(minutes=15)


def key(i: int, hook: str = "shop/h") -> DedupKey:
    return DedupKey(hook, "oom-kill", "shop", f"Deployment/app-{i}")


def fire(dedup: Deduplicator, k: DedupKey, clock: FakeClock, occurrence: str = "a") -> Verdict:
    return dedup.claim(k, Observation(occurrence, None, clock.now(), "Pod/x"), WINDOW).verdict


def stored(store: TinyDBRecords) -> dict[str, dict[str, object]]:
    records: dict[str, dict[str, object]] = {}
    for shard in store.path.glob("shard-*.json"):
        records.update(json.loads(shard.read_text())["records"])
    return records


def test_records_spread_over_small_shards(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    dedup = Deduplicator(store, clock, RETENTION)
    for i in range(1000):
        assert fire(dedup, key(i), clock) is Verdict.FIRE
    shards = list(store.path.glob("shard-*.json"))
    assert len(stored(store)) == 1000
    assert len(shards) > 800, "spread by the key's hash"
    largest = max(s.stat().st_size for s in shards)
    assert largest < 8 * 1024, f"a decision rewrites one small file, not all: {largest} bytes"
    for i in range(1000):
        assert fire(dedup, key(i), clock, "b") is Verdict.DUPLICATE


def test_pruning_keeps_the_store_bounded(tmp_path: Path, clock: FakeClock) -> None:
    """An hour at 30 new incidents a minute, pruned every minute as Deduplicator does: the
    store holds what the last window + retention fired (26 minutes' worth), never more."""
    store = TinyDBRecords(tmp_path / "dedup", clock, shards=64)
    dedup = Deduplicator(store, clock, RETENTION)
    bound = 30 * (26 + 1)
    sizes = []
    for minute in range(60):
        for i in range(30):
            assert fire(dedup, key(minute * 30 + i), clock) is Verdict.FIRE
        store.prune(RETENTION)
        sizes.append(len(stored(store)))
        clock.advance(60)
    assert max(sizes) <= bound, max(sizes)
    assert sizes[-1] >= 30 * 25, "records inside their window + retention are kept"
    total = sum(s.stat().st_size for s in store.path.glob("shard-*.json"))
    assert total < bound * 1024, f"the files stay small: {total} bytes"


def test_live_incidents_are_never_pruned(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock, shards=64)
    dedup = Deduplicator(store, clock, RETENTION)
    for i in range(500):
        fire(dedup, key(i), clock)
    clock.advance(WINDOW - timedelta(seconds=1))
    assert store.prune(RETENTION) == 0
    clock.advance(RETENTION + timedelta(seconds=2))
    assert store.prune(RETENTION) == 500
    assert stored(store) == {}


def test_a_hooks_records_are_found_in_every_shard(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    dedup = Deduplicator(store, clock, RETENTION)
    for i in range(300):
        fire(dedup, key(i, hook=f"team-{i % 3}/h"), clock)
    found = store.records("team-1/h")
    assert sorted(r.key.group for r in found) == sorted(
        f"Deployment/app-{i}" for i in range(1, 300, 3)
    )
    assert store.records("team-1/other") == []


def test_pruning_removes_what_a_crash_mid_write_left(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock, shards=16)
    fire(Deduplicator(store, clock, RETENTION), key(1), clock)
    shard = store.shard_path(store.shard_of(key(1).id))
    leftover = shard.with_name(f".{shard.name}.tmp-abc123")
    leftover.write_text('{"records": {')
    store.prune(RETENTION)
    assert not leftover.exists()
    assert shard.exists()


def test_two_stores_on_one_directory_share_every_shard(tmp_path: Path, clock: FakeClock) -> None:
    one = Deduplicator(TinyDBRecords(tmp_path / "dedup", clock), clock, RETENTION)
    two = Deduplicator(TinyDBRecords(tmp_path / "dedup", clock), clock, RETENTION)
    for i in range(200):
        first, second = (one, two) if i % 2 else (two, one)
        assert fire(first, key(i), clock) is Verdict.FIRE
        assert fire(second, key(i), clock, "b") is Verdict.DUPLICATE
