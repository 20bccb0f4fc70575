"""What the cluster stores share, tested on in-memory stores: the replica cache of live
incidents, lazy syncing, merging, early resolution, and the agent circuit breaker."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from khook.agent import AgentError, AgentRequest, AgentResult, CircuitBreaker
from khook.core.dedup import DedupKey, Observation, Record, State, Verdict, resolve
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.health import is_healthy
from khook.core.hooks import AgentRef
from khook.core.settle import merge
from khook.stores import CachedRecords, Deduplicator, MemoryRecords
from khook.stores._base import Change
from tests.support.clock import FakeClock
from tests.support.events import oom_status, pod, sample_object

KEY = DedupKey("shop/h", "oom-kill", "shop", "Deployment/web")
WINDOW = timedelta(minutes=10)
AGE = timedelta(minutes=15)


class CountingStore(MemoryRecords):
    """An in-memory store that counts the round trips a remote store would make."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.calls = 0

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        self.calls += 1
        super().update(key, change, expect_absent=expect_absent)


def obs(occurrence: str, clock: FakeClock, resource: str = "Pod/web-1") -> Observation:
    return Observation(occurrence, None, clock.now(), resource)


def fire(dedup: Deduplicator, clock: FakeClock, occurrence: str = "a") -> None:
    claim = dedup.claim(KEY, obs(occurrence, clock), WINDOW)
    assert claim.verdict is Verdict.FIRE
    dedup.confirm(claim, "task-1", "ctx-1")


def test_a_known_live_duplicate_costs_no_store_call(clock: FakeClock) -> None:
    inner = CountingStore(clock)
    dedup = Deduplicator(CachedRecords(inner, clock, sync_every=0), clock, AGE)
    fire(dedup, clock)
    before = inner.calls
    for i in range(20):
        assert dedup.claim(KEY, obs(f"dup-{i}", clock), WINDOW).verdict is Verdict.DUPLICATE
    assert inner.calls == before


def test_duplicates_are_synced_lazily_in_one_write(clock: FakeClock) -> None:
    inner = CountingStore(clock)
    cache = CachedRecords(inner, clock, sync_every=0)
    dedup = Deduplicator(cache, clock, AGE)
    fire(dedup, clock)
    for i in range(5):
        clock.advance(1)
        dedup.claim(KEY, obs(f"dup-{i}", clock), WINDOW)
    before = inner.calls
    assert cache.sync() == 1
    assert inner.calls == before + 1
    stored = inner.get(KEY)
    assert stored is not None and stored.count == 6
    assert "dup-4" in stored.occurrences
    assert cache.sync() == 0, "nothing new: nothing written"


def test_an_unconfirmed_claim_is_never_decided_locally(clock: FakeClock) -> None:
    """Another replica's call may still fail and release: only the store knows."""
    inner = CountingStore(clock)
    dedup = Deduplicator(CachedRecords(inner, clock, sync_every=0), clock, AGE)
    claim = dedup.claim(KEY, obs("a", clock), WINDOW)
    before = inner.calls
    assert dedup.claim(KEY, obs("b", clock), WINDOW).verdict is Verdict.DUPLICATE
    assert inner.calls == before + 1
    dedup.release(claim)
    assert dedup.claim(KEY, obs("a", clock), WINDOW).verdict is Verdict.FIRE


def test_two_replicas_merge_their_counts(clock: FakeClock) -> None:
    shared = MemoryRecords(clock)
    first = CachedRecords(shared, clock, sync_every=0)
    second = CachedRecords(shared, clock, sync_every=0)
    fire(Deduplicator(first, clock, AGE), clock)
    for replica, name in ((first, "x"), (second, "y")):
        dedup = Deduplicator(replica, clock, AGE)
        for i in range(3):
            dedup.claim(KEY, obs(f"{name}-{i}", clock), WINDOW)
    first.sync()
    second.sync()
    stored = shared.get(KEY)
    assert stored is not None and stored.count == 7  # 1 firing + 3 + 3


def test_the_cache_forgets_an_incident_when_its_window_ends(clock: FakeClock) -> None:
    inner = CountingStore(clock)
    dedup = Deduplicator(CachedRecords(inner, clock, sync_every=0), clock, AGE)
    fire(dedup, clock)
    clock.advance(WINDOW)
    assert dedup.claim(KEY, obs("new", clock), WINDOW).verdict is Verdict.FIRE


def test_a_healthy_resource_resolves_only_its_own_incident(clock: FakeClock) -> None:
    now = clock.now()
    record = Record(
        KEY,
        now,
        now,
        now,
        WINDOW,
        1,
        "t",
        confirmed=True,
        resources=("Pod/a",),
        failing=(("Pod/a", 1),),
    )
    done = resolve(record, "Pod/a", now)
    assert done is not None and done.verdict is Verdict.RESOLVED
    assert resolve(record, "Pod/b", now) is None
    two = replace(record, resources=("Pod/a", "Pod/b"), failing=(("Pod/a", 1), ("Pod/b", 2)))
    one_left = resolve(two, "Pod/a", now)
    assert one_left is not None and one_left.verdict is Verdict.DUPLICATE, "not over"
    assert one_left.record is not None and one_left.record.failing == (("Pod/b", 2),)
    assert resolve(record, "Pod/a", now + WINDOW) is None, "over already"


def test_resolution_is_early_and_a_recurrence_reopens(clock: FakeClock) -> None:
    dedup = Deduplicator(MemoryRecords(clock), clock, AGE)
    fire(dedup, clock)
    resolved = dedup.resolve(KEY, "Pod/web-1")
    assert resolved is not None and resolved.record is not None
    assert resolved.record.state is State.RESOLVED
    assert dedup.resolve(KEY, "Pod/web-1") is None, "only once"
    again = dedup.claim(KEY, obs("b", clock), WINDOW)
    assert again.verdict is Verdict.DUPLICATE, "the window still holds"
    assert again.record is not None and again.record.state is State.FIRING


def test_resolve_costs_nothing_for_incidents_this_replica_never_saw(clock: FakeClock) -> None:
    inner = CountingStore(clock)
    dedup = Deduplicator(inner, clock, AGE)
    assert dedup.resolve(KEY, "Pod/web-1") is None
    assert inner.calls == 0


def test_merge_folds_local_changes_into_the_stored_record(clock: FakeClock) -> None:
    now = clock.now()
    base = Record(KEY, now, now, now, WINDOW, 2, "t", occurrences=("a",))
    stored = replace(base, count=5, occurrences=("a", "s"))
    local = replace(base, count=4, occurrences=("a", "l"), last_seen=now + timedelta(seconds=9))
    merged = merge(stored, local, base)
    assert merged.count == 7
    assert merged.occurrences == ("a", "s", "l")
    assert merged.last_seen == local.last_seen


def health(obj: dict) -> bool:  # type: ignore[type-arg]
    event = decode_object(obj, action=Action.UPDATE, observed_at=datetime.now(UTC))
    assert isinstance(event, ClusterEvent)
    return is_healthy(event)


def test_health() -> None:
    ready = pod(
        conditions=[{"type": "Ready", "status": "True"}],
        container_statuses=[{"name": "app", "ready": True, "restartCount": 0}],
    )
    assert health(ready)
    assert not health(pod(container_statuses=[oom_status()]))
    node = sample_object("node-not-ready-node-status")
    assert not health(node)
    for cond in node["status"]["conditions"]:
        cond["status"] = "True" if cond["type"] == "Ready" else "False"
    assert health(node)


def test_a_container_ready_just_after_a_crash_is_not_healthy_yet() -> None:
    # Before: a crash loop without a readiness probe looked healthy between crashes, so its
    # incident resolved and came back at every restart.
    def restarted(seconds_ago: int) -> dict:  # type: ignore[type-arg]
        started = datetime.now(UTC) - timedelta(seconds=seconds_ago)
        running = {"startedAt": started.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return pod(
            conditions=[{"type": "Ready", "status": "True"}],
            container_statuses=[
                {"name": "app", "ready": True, "restartCount": 4, "state": {"running": running}}
            ],
        )

    assert not health(restarted(5))
    assert health(restarted(600))


class Flaky:
    def __init__(self) -> None:
        self.fail = True
        self.calls = 0

    def send(self, request: AgentRequest) -> AgentResult:
        self.calls += 1
        if self.fail:
            raise AgentError("down", retryable=True)
        return AgentResult("t", "c", "submitted", "task")

    def close(self) -> None:
        pass


def test_circuit_breaker_opens_pauses_and_closes(clock: FakeClock) -> None:
    changes: list[bool] = []
    inner = Flaky()
    breaker = CircuitBreaker(inner, clock, threshold=3, open_for=30.0)
    breaker.on_change = lambda: changes.append(bool(breaker.unavailable()))
    request = AgentRequest(AgentRef("kagent", "a"), "p", "m")
    for _ in range(3):
        with pytest.raises(AgentError):
            breaker.send(request)
    assert breaker.unavailable() == {"kagent/a"} and changes == [True]
    with pytest.raises(AgentError) as err:
        breaker.send(request)
    assert inner.calls == 3, "paused: the agent was not called"
    assert err.value.retryable and err.value.retry_after == pytest.approx(30.0)
    clock.advance(30)
    inner.fail = False
    breaker.send(request)
    assert breaker.unavailable() == set() and changes == [True, False]
