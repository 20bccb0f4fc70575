"""Dedup decisions (pure) and the stores that keep the records."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.dedup import DedupKey, Observation, Record, Verdict, decide
from khook.stores import Deduplicator, MemoryRecords, TinyDBRecords
from khook.stores._base import RecordStore
from tests.support.clock import FakeClock

KEY = DedupKey("shop/h", "oom-kill", "shop", "Deployment/web")
T0 = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
MAX_AGE = timedelta(minutes=15)


def obs(occurrence: str, at: datetime = T0, occurred: datetime | None = None) -> Observation:
    return Observation(occurrence, occurred, at, "Pod/web-1")


def run(previous: Record | None, observation: Observation, now: datetime = T0):  # type: ignore[no-untyped-def]
    return decide(
        previous, KEY, observation, now=now, window=WINDOW, max_signal_age=MAX_AGE, token="t"
    )


def test_first_observation_fires() -> None:
    d = run(None, obs("a"))
    assert d.verdict is Verdict.FIRE
    assert d.record is not None and d.record.count == 1 and d.record.occurrences == ("a",)


def test_inside_the_window_is_a_duplicate_that_counts() -> None:
    first = run(None, obs("a")).record
    later = T0 + timedelta(minutes=9)
    d = run(first, obs("b", later), later)
    assert d.verdict is Verdict.DUPLICATE
    assert d.record is not None and d.record.count == 2 and d.record.last_seen == later


def test_after_the_window_a_new_occurrence_fires_again() -> None:
    first = run(None, obs("a")).record
    later = T0 + WINDOW
    d = run(first, obs("b", later), later)
    assert d.verdict is Verdict.FIRE
    assert d.record is not None and d.record.occurrences == ("a", "b")


def test_a_known_occurrence_never_fires_again_even_after_the_window() -> None:
    first = run(None, obs("a")).record
    much_later = T0 + timedelta(hours=3)
    d = run(first, obs("a", much_later), much_later)
    assert d.verdict is Verdict.DUPLICATE and d.record is None  # and nothing to write


def test_a_signal_already_old_when_observed_is_stale() -> None:
    d = run(None, obs("a", T0, occurred=T0 - timedelta(minutes=16)))
    assert d.verdict is Verdict.STALE and d.record is None
    assert run(None, obs("a", T0, occurred=T0 - timedelta(minutes=14))).verdict is Verdict.FIRE


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 3600), st.integers(0, 5)), min_size=1, max_size=40))
def test_never_two_firings_inside_one_window(steps: list[tuple[int, int]]) -> None:
    record, fired_at = None, []
    now = T0
    for seconds, occurrence in sorted(steps):
        now = T0 + timedelta(seconds=seconds)
        d = run(record, obs(f"o{occurrence}-{seconds}", now), now)
        if d.record is not None:
            record = d.record
        if d.verdict is Verdict.FIRE:
            fired_at.append(now)
    assert fired_at, "the first observation always fires"
    assert all(b - a >= WINDOW for a, b in itertools.pairwise(fired_at))


def test_record_round_trips_through_json() -> None:
    record = run(None, obs("a")).record
    assert record is not None
    assert Record.from_json(record.to_json()) == record


# ---- stores -------------------------------------------------------------------------------


def stores(tmp_path: Path, clock: FakeClock) -> list[RecordStore]:
    return [MemoryRecords(clock), TinyDBRecords(tmp_path / "d.json", clock)]


@pytest.mark.parametrize("kind", ["memory", "tinydb"])
def test_concurrent_claims_fire_once(kind: str, tmp_path: Path, clock: FakeClock) -> None:
    store = dict(zip(["memory", "tinydb"], stores(tmp_path, clock), strict=True))[kind]
    dedup = Deduplicator(store, clock, MAX_AGE)
    verdicts: list[Verdict] = []
    barrier = threading.Barrier(10)

    def claim() -> None:
        barrier.wait()
        verdicts.append(dedup.claim(KEY, obs("same"), WINDOW).verdict)

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verdicts.count(Verdict.FIRE) == 1
    assert verdicts.count(Verdict.DUPLICATE) == 9


@pytest.mark.parametrize("kind", ["memory", "tinydb"])
def test_release_lets_a_redelivery_fire(kind: str, tmp_path: Path, clock: FakeClock) -> None:
    store = dict(zip(["memory", "tinydb"], stores(tmp_path, clock), strict=True))[kind]
    dedup = Deduplicator(store, clock, MAX_AGE)
    claim = dedup.claim(KEY, obs("a"), WINDOW)
    assert claim.verdict is Verdict.FIRE
    assert dedup.claim(KEY, obs("a"), WINDOW).verdict is Verdict.DUPLICATE
    dedup.release(claim)
    again = dedup.claim(KEY, obs("a"), WINDOW)
    assert again.verdict is Verdict.FIRE
    stored = dedup.confirm(again, "task-1", "ctx-1")
    assert stored is not None and stored.task_id == "task-1" and stored.confirmed


def test_release_does_not_undo_another_firing(tmp_path: Path, clock: FakeClock) -> None:
    dedup = Deduplicator(MemoryRecords(clock), clock, MAX_AGE)
    stale_claim = dedup.claim(KEY, obs("a"), WINDOW)
    clock.advance(WINDOW)
    fresh = dedup.claim(KEY, obs("b"), WINDOW)
    assert fresh.verdict is Verdict.FIRE
    dedup.release(stale_claim)  # too late: the record now belongs to the newer firing
    assert dedup.claim(KEY, obs("c"), WINDOW).verdict is Verdict.DUPLICATE


def test_tinydb_prunes_records_that_shield_nothing(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "d.json", clock)
    Deduplicator(store, clock, MAX_AGE).claim(KEY, obs("a"), WINDOW)
    assert store.prune(MAX_AGE) == 0
    clock.advance(WINDOW + MAX_AGE + timedelta(seconds=1))
    assert store.prune(MAX_AGE) == 1
    assert store.get(KEY) is None


def test_tinydb_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    Deduplicator(TinyDBRecords(tmp_path / "d.json", clock), clock, MAX_AGE).claim(
        KEY, obs("a"), WINDOW
    )
    reopened = Deduplicator(TinyDBRecords(tmp_path / "d.json", clock), clock, MAX_AGE)
    assert reopened.claim(KEY, obs("b"), WINDOW).verdict is Verdict.DUPLICATE


def _claim_many(path: str, keys: int, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    clock = FakeClock()
    dedup = Deduplicator(TinyDBRecords(path, clock), clock, MAX_AGE)
    fired = []
    for i in range(keys):
        key = DedupKey("shop/h", "oom-kill", "shop", f"Pod/p{i}")
        if dedup.claim(key, obs(f"occ-{i}"), WINDOW).verdict is Verdict.FIRE:
            fired.append(i)
    queue.put(fired)


def test_tinydb_shared_by_processes_fires_each_key_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    path = str(tmp_path / "shared.json")
    procs = [ctx.Process(target=_claim_many, args=(path, 30, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    fired = sorted(i for r in results for i in r)
    assert fired == list(range(30)), "every key fired exactly once across the processes"
