"""Dedup decisions (pure) and the stores that keep the records."""

from __future__ import annotations

import dataclasses
import itertools
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.dedup import (
    DedupKey,
    Hold,
    Observation,
    Policy,
    Record,
    Verdict,
    decide,
    tally,
)
from khook.core.incident import BUDGET_TYPE, State, evolve
from khook.core.settle import confirm
from khook.stores import (
    CachedRecords,
    Change,
    Deduplicator,
    MemoryRecords,
    MeteredRecords,
    TinyDBRecords,
)
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
        previous,
        KEY,
        observation,
        now=now,
        policy=Policy(window=WINDOW),
        max_signal_age=MAX_AGE,
        token="t",
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


_CHANGES = st.fixed_dictionaries(
    {},
    optional={
        "count": st.integers(0, 10**6),
        "state": st.sampled_from(State),
        "holder": st.text(max_size=5),
        "last_seen": st.datetimes(timezones=st.just(UTC)),
        "resources": st.lists(st.text(max_size=5), max_size=3).map(tuple),
        "failing": st.lists(st.tuples(st.text(max_size=5), st.integers(0, 9)), max_size=3).map(
            tuple
        ),
        "started_at": st.none() | st.datetimes(timezones=st.just(UTC)),
        "task_state": st.text(max_size=5),
    },
)


@given(_CHANGES, _CHANGES)
def test_evolve_makes_what_replace_makes(first: dict[str, object], then: dict[str, object]) -> None:
    """evolve() (Record's replace without its frozen __init__) against dataclasses.replace,
    twice over: equal records, the original untouched, a record that is still frozen."""
    record = Record(KEY, T0, T0, T0, WINDOW, 1, "t", occurrences=("a",))
    made = evolve(evolve(record, **first), **then)
    assert made == dataclasses.replace(dataclasses.replace(record, **first), **then)  # type: ignore[arg-type]
    assert record == Record(KEY, T0, T0, T0, WINDOW, 1, "t", occurrences=("a",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.count = 2  # type: ignore[misc]


def test_evolve_refuses_a_name_that_is_no_field() -> None:
    record = Record(KEY, T0, T0, T0, WINDOW, 1, "t")
    with pytest.raises(TypeError, match="coutn"):
        evolve(record, coutn=2)


@settings(max_examples=200)
@given(st.lists(st.integers(0, 600), min_size=1, max_size=40))
def test_a_counter_counts_what_a_settled_claim_of_new_occurrences_would(
    seconds: list[int],
) -> None:
    """tally() (the storm breaker's count) against what the count was before it: decide() on
    a new occurrence each time, the record settled at once. Same count, same window."""
    window = timedelta(minutes=2)
    counted: Record | None = None
    claimed: Record | None = None
    for i, second in enumerate(sorted(seconds)):
        now = T0 + timedelta(seconds=second)
        counted = tally(counted, KEY, now=now, window=window)
        d = decide(
            claimed,
            KEY,
            Observation(f"o{i}", None, now, "Minute/1", holdable=False),
            now=now,
            policy=Policy(window=window, followups=False),
            max_signal_age=MAX_AGE,
            token=f"t{i}",
        )
        if d.verdict is Verdict.FIRE and d.record is not None:
            claimed = confirm(None, d.record, "", "")
        elif d.record is not None:
            claimed = d.record
        assert claimed is not None
        assert (counted.count, counted.expires_at) == (claimed.count, claimed.expires_at)
        assert counted.confirmed and counted.live(now)


def test_the_storm_breakers_counter_is_never_taken_for_a_live_incident(clock: FakeClock) -> None:
    """Counted, or listed from the store by the sweep (learn), a Hook's session counter is no
    incident a healthy object could end: it never makes a healthy object look further."""
    dedup = Deduplicator(MemoryRecords(clock), clock, MAX_AGE)
    counter = DedupKey("shop/h", BUDGET_TYPE, "", "Minute/1")
    record = dedup.count(counter, timedelta(minutes=2))
    assert record.count == 1 and record.live(clock.now())
    dedup.learn([record])
    assert not dedup.may_know_live_any() and not dedup.knows_live(counter)
    incident = run(None, obs("a", clock.now()), clock.now()).record
    assert incident is not None
    dedup.learn([incident])
    assert dedup.may_know_live_any(), "an incident listed from the store is known live"


def test_record_round_trips_through_json() -> None:
    record = run(None, obs("a")).record
    assert record is not None
    assert Record.from_json(record.to_json()) == record


def _valid_json() -> dict:  # type: ignore[type-arg]
    record = run(None, obs("a")).record
    assert record is not None
    return record.to_json()


MALFORMED: dict[str, object] = {
    "not an object": [1, 2],
    "null": None,
    "a string": "record",
    "missing key": {k: v for k, v in _valid_json().items() if k != "key"},
    "missing firedAt": {k: v for k, v in _valid_json().items() if k != "firedAt"},
    "missing count": {k: v for k, v in _valid_json().items() if k != "count"},
    "key not a string": {**_valid_json(), "key": 7},
    "key with too few parts": {**_valid_json(), "key": "shop/h|oom-kill"},
    "key without a hook namespace": {**_valid_json(), "key": "h|oom-kill|shop|Deployment/web"},
    "key without a group": {**_valid_json(), "key": "shop/h|oom-kill|shop|"},
    "window inf": {**_valid_json(), "windowSeconds": float("inf")},
    "window nan": {**_valid_json(), "windowSeconds": float("nan")},
    "window 1e999 as parsed": {**_valid_json(), "windowSeconds": 1e308 * 10},
    "window negative": {**_valid_json(), "windowSeconds": -1},
    "window too long": {**_valid_json(), "windowSeconds": 10**12},
    "window a string": {**_valid_json(), "windowSeconds": "600"},
    "window true": {**_valid_json(), "windowSeconds": True},
    "count a float": {**_valid_json(), "count": 1.5},
    "count inf": {**_valid_json(), "count": float("inf")},
    "count negative": {**_valid_json(), "count": -1},
    "count past 64 bits": {**_valid_json(), "count": 2**64},
    "count false": {**_valid_json(), "count": False},
    "time garbage": {**_valid_json(), "firedAt": "soon"},
    "time a number": {**_valid_json(), "lastSeen": 1700000000},
    "time overflowing by its offset": {**_valid_json(), "firstSeen": "0001-01-01T00:00:00+01:00"},
    "time in year 9999": {**_valid_json(), "firedAt": "9999-12-31T00:00:00Z"},
    "time before 1970": {**_valid_json(), "firedAt": "1969-12-31T00:00:00Z"},
    "state unknown": {**_valid_json(), "state": "exploded"},
    "state a list": {**_valid_json(), "state": ["firing"]},
    "confirmed a string": {**_valid_json(), "confirmed": "true"},
    "holder a number": {**_valid_json(), "holder": 1},
    "occurrences a string": {**_valid_json(), "occurrences": "abc"},
    "occurrences with a number": {**_valid_json(), "occurrences": ["a", 1]},
    "resources an object": {**_valid_json(), "resources": {"a": 1}},
    "taskId null": {**_valid_json(), "taskId": None},
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_record_raises_value_error_only(raw: object) -> None:
    with pytest.raises(ValueError, match="record"):
        Record.from_json(raw)


def test_a_record_with_too_many_occurrences_keeps_the_latest() -> None:
    raw = {**_valid_json(), "occurrences": [f"o{i}" for i in range(500)]}
    assert Record.from_json(raw).occurrences[-1] == "o499"
    assert len(Record.from_json(raw).occurrences) == 64


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(_valid_json())), _JSON)
def test_any_damage_to_a_field_is_a_value_error_or_a_usable_record(
    field: str, value: object
) -> None:
    raw = {**_valid_json(), field: value}
    try:
        record = Record.from_json(raw)
    except ValueError:
        return
    # Whatever was accepted can be used: no overflow, no type error later.
    record.live(T0)
    record.prunable(T0, MAX_AGE)
    record.state_at(T0 + timedelta(days=3650))
    assert Record.from_json(record.to_json()) == record


@settings(max_examples=200)
@given(_JSON)
def test_any_json_value_is_a_value_error_or_a_record(value: object) -> None:
    """Anything else escaping (KeyError, TypeError, OverflowError) fails this test."""
    try:
        record = Record.from_json(value)
    except ValueError:
        return
    assert isinstance(record, Record)


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


def test_claim_now_decides_only_what_calls_for_nothing(clock: FakeClock) -> None:
    store = MemoryRecords(clock)
    dedup = Deduplicator(MeteredRecords(store), clock, MAX_AGE)
    assert dedup.answers_now
    policy = Policy(window=WINDOW)
    # A first sighting would open a session: nothing is stored, the caller claims it later.
    assert dedup.claim_now(KEY, obs("a"), policy) is None
    assert store.get(KEY) is None
    first = dedup.claim(KEY, obs("a"), policy)
    assert first.verdict is Verdict.FIRE
    # Repeats, while its agent call runs and after, are duplicates, counted as claim() does.
    during = dedup.claim_now(KEY, obs("a2"), policy)
    assert during is not None and during.verdict is Verdict.DUPLICATE
    dedup.confirm(first, "task-1", "ctx-1")
    again = dedup.claim_now(KEY, obs("b", T0 + timedelta(minutes=1)), policy)
    assert again is not None and again.verdict is Verdict.DUPLICATE
    stored = store.get(KEY)
    assert stored is not None and stored.count == 3 and stored.task_id == "task-1"
    assert dedup.knows_live(KEY)


def test_claim_now_holds_a_first_sighting_that_a_hold_keeps_back(clock: FakeClock) -> None:
    store = MemoryRecords(clock)
    dedup = Deduplicator(store, clock, MAX_AGE)
    held = Policy(window=WINDOW, hold=Hold(min_count=3, hold_for=timedelta(minutes=5)))

    def restart(n: int) -> Observation:  # the pod's own restart count is n
        return Observation(f"r{n}", None, T0, "Pod/web-1", count=n)

    for n in (1, 2):
        claim = dedup.claim_now(KEY, restart(n), held)
        assert claim is not None and claim.verdict is Verdict.HELD
    # The third restart crosses the threshold: it would open the session, so it is left for
    # claim(), with nothing stored.
    assert dedup.claim_now(KEY, restart(3), held) is None
    stored = store.get(KEY)
    assert stored is not None and stored.count == 2 and not stored.opened
    assert dedup.claim(KEY, restart(3), held).verdict is Verdict.FIRE


def test_claim_now_never_waits_for_the_store(tmp_path: Path, clock: FakeClock) -> None:
    # A store on disk or in the cluster always waits: claim() on a thread instead.
    on_disk = Deduplicator(
        MeteredRecords(TinyDBRecords(tmp_path / "d.json", clock)), clock, MAX_AGE
    )
    assert not on_disk.answers_now
    on_disk.claim(KEY, obs("a"), WINDOW)
    assert on_disk.claim_now(KEY, obs("b"), Policy(window=WINDOW)) is None
    # A memory store busy on another thread (a prune, a claim) is not waited for either.
    store = MemoryRecords(clock)
    dedup = Deduplicator(store, clock, MAX_AGE)
    dedup.claim(KEY, obs("a"), WINDOW)
    inside, leave = threading.Event(), threading.Event()

    def slow(current: Record | None) -> Record | None:
        inside.set()
        leave.wait(30)
        return current

    holder = threading.Thread(target=lambda: store.update(KEY, slow))
    holder.start()
    assert inside.wait(30)
    try:
        assert dedup.claim_now(KEY, obs("b"), Policy(window=WINDOW)) is None
    finally:
        leave.set()
        holder.join()
    stored = store.get(KEY)
    assert stored is not None and stored.count == 1  # nothing was counted while busy
    assert dedup.claim_now(KEY, obs("b"), Policy(window=WINDOW)) is not None


def test_keys_whose_parts_hold_the_separator_never_share_an_id(clock: FakeClock) -> None:
    # ("n|Pod/x", "Pod/y") and ("n", "Pod/x|Pod/y") joined to one id when the parts were not
    # escaped: a forged namespace could merge incidents of two namespaces.
    a = DedupKey("shop/h", "oom-kill", "n|Pod/x", "Pod/y")
    b = DedupKey("shop/h", "oom-kill", "n", "Pod/x|Pod/y")
    assert a.id != b.id and a.digest != b.digest
    odd = DedupKey("shop/h", "oom-kill", "%7C|%25%", "Pod/%|x")
    for key in (a, b, odd, KEY):
        assert DedupKey.from_id(key.id) == key  # a record read back has its own key
    # Kubernetes names hold neither "|" nor "%": the ids of stored records do not change.
    assert KEY.id == "shop/h|oom-kill|shop|Deployment/web"
    dedup = Deduplicator(MemoryRecords(clock), clock, MAX_AGE)
    dedup.KNOWN_LIVE_LIMIT = 10
    until = T0 + WINDOW
    for n in range(100):
        dedup._remember(DedupKey("shop/h", "oom-kill", f"n{n}|Pod/x", "Pod/y"), until)
        dedup._remember(DedupKey("shop/h", "oom-kill", f"n{n}", "Pod/x|Pod/y"), until)
    assert len(dedup._live) == 10
    assert sum(dedup._live_groups.values()) == 10
    assert dedup.may_know_live([("n99", "Pod/x|Pod/y")])
    assert dedup.may_know_live([("n99|Pod/x", "Pod/y")])


def _cached(clock: FakeClock, inner: RecordStore) -> tuple[Deduplicator, CachedRecords]:
    cache = CachedRecords(inner, clock, sync_every=0.0)  # written back only when flushed
    return Deduplicator(cache, clock, MAX_AGE, claim_timeout=timedelta(minutes=2)), cache


def test_a_replicas_cache_brings_its_pending_counts_to_what_the_store_decides(
    clock: FakeClock,
) -> None:
    inner = MemoryRecords(clock)
    dedup, cache = _cached(clock, inner)
    policy = Policy(window=WINDOW, followup_every=timedelta(hours=1))
    dedup.confirm(dedup.claim(KEY, obs("a"), policy), "t1", "c1")
    verdicts = []
    for n in range(30):  # counted in the cache (on the loop), not yet written back
        clock.advance(0.1)
        sighting = obs(f"d{n}", clock.now())
        claim = dedup.claim_now(KEY, sighting, policy) or dedup.claim(KEY, sighting, policy)
        verdicts.append(claim.verdict)
        if claim.verdict is Verdict.FOLLOWUP:
            dedup.confirm(claim, "t1", "c1")
    # The 10-signals milestone is told once: decided by the store with the cache's counts.
    assert verdicts.count(Verdict.FOLLOWUP) == 1
    cache.flush()
    stored = inner.get(KEY)
    assert stored is not None and stored.count == 31


class _SlowStore(MemoryRecords):
    """A store whose next write waits at a gate (an API round trip under way)."""

    gate: tuple[threading.Event, threading.Event] | None = None

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        if self.gate is not None:
            inside, go = self.gate
            self.gate = None
            inside.set()
            go.wait(30)
        super().update(key, change, expect_absent=expect_absent)


def test_what_the_loop_counts_while_the_store_decides_is_kept(clock: FakeClock) -> None:
    inner = _SlowStore(clock)
    dedup, cache = _cached(clock, inner)
    dedup.confirm(dedup.claim(KEY, obs("a"), WINDOW * 1), "t1", "c1")
    policy = Policy(window=WINDOW)
    inside, go = threading.Event(), threading.Event()
    inner.gate = (inside, go)
    joined = Observation("w2", None, T0, "Pod/api-1", workload="default/api")
    worker = threading.Thread(target=lambda: dedup.claim(KEY, joined, policy))  # a follow-up
    worker.start()
    assert inside.wait(30)
    during = dedup.claim_now(KEY, obs("b"), policy)  # the event loop, meanwhile
    assert during is not None and during.verdict is Verdict.DUPLICATE
    go.set()
    worker.join()
    cache.flush()
    stored = inner.get(KEY)
    assert stored is not None and "b" in stored.occurrences and stored.count == 3


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


@pytest.mark.parametrize("namespace", ["shop", "a|b"])
def test_the_live_groups_index_agrees_with_what_is_known_live(
    namespace: str, clock: FakeClock
) -> None:
    """A healthy object skips its Hooks' keys when no live incident has one of its groups
    (may_know_live). The index holds each key's own namespace and group: a namespace with the
    "|" a key's id is joined with once made it say no while knows_live said yes."""
    dedup = Deduplicator(MemoryRecords(clock), clock, MAX_AGE)
    dedup.KNOWN_LIVE_LIMIT = 2
    keys = [DedupKey("shop/h", "oom-kill", namespace, f"Pod/web-{i}|x") for i in range(3)]
    for i, key in enumerate(keys):
        dedup.claim(key, obs(f"occ-{i}"), WINDOW)
    for key in keys:
        # The first was forgotten when the third came (the limit is 2): nothing is known of it.
        known = dedup.knows_live(key)
        assert known == (key is not keys[0])
        assert dedup.may_know_live([(key.namespace, key.group)]) == known
    assert not dedup.may_know_live([(namespace, "Pod/web-9|x")])
