"""The Lease and ConfigMap stores against the API double: claims by create, takeovers and
conflicts by resourceVersion, pruning, and the ConfigMap size bound."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import kubernetes
import pytest

from khook.core.dedup import DedupKey, Observation, Verdict
from khook.kubeapi import identify
from khook.stores import ConfigMapRecords, Deduplicator, LeaseRecords, StoreError, _configmap
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import STATE_NAMESPACE, apiserver, khook_requests, wait_until

KEY = DedupKey("default/pods", "oom-kill", "default", "Deployment/web")
WINDOW = timedelta(minutes=10)
AGE = timedelta(minutes=15)


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


def lease_store(server: APIServer, clock: FakeClock, who: str = "khook-0") -> LeaseRecords:
    return LeaseRecords(identify(server.api_client()), STATE_NAMESPACE, who, clock)


def cm_store(server: APIServer, clock: FakeClock) -> ConfigMapRecords:
    return ConfigMapRecords(identify(server.api_client()), STATE_NAMESPACE, clock, AGE)


def obs(occurrence: str, clock: FakeClock) -> Observation:
    return Observation(occurrence, None, clock.now(), "Pod/web-1")


def race(make_store, clock: FakeClock, replicas: int = 8) -> list[Verdict]:  # type: ignore[no-untyped-def]
    """Each thread is a replica with its own store client, all claiming one incident."""
    barrier = threading.Barrier(replicas)
    verdicts: list[Verdict] = []
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        dedup = Deduplicator(make_store(i), clock, AGE)
        barrier.wait()
        try:
            verdicts.append(dedup.claim(KEY, obs(f"o-{i}", clock), WINDOW).verdict)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(verdicts) == replicas
    return verdicts


def test_lease_claim_is_create_and_409_means_someone_holds_it(
    server: APIServer, clock: FakeClock
) -> None:
    verdicts = race(lambda i: lease_store(server, clock, f"khook-{i}"), clock)
    assert verdicts.count(Verdict.FIRE) == 1
    creates = [r for r in khook_requests(server) if r.verb == "create"]
    assert sum(r.status == 201 for r in creates) == 1
    assert {r.status for r in creates} <= {201, 409}


def test_an_expired_lease_is_taken_over_by_exactly_one_replica(
    server: APIServer, clock: FakeClock
) -> None:
    Deduplicator(lease_store(server, clock), clock, AGE).claim(KEY, obs("first", clock), WINDOW)
    clock.advance(WINDOW)
    server.clear_requests()
    verdicts = race(lambda i: lease_store(server, clock, f"khook-{i}"), clock)
    assert verdicts.count(Verdict.FIRE) == 1
    updates = [r for r in khook_requests(server) if r.verb == "update"]
    assert sum(r.status == 200 for r in updates) >= 1
    assert {r.status for r in updates} <= {200, 409}, "stale takeovers lose with 409 Conflict"
    lease = kubernetes.client.CoordinationV1Api(server.api_client()).read_namespaced_lease(
        LeaseRecords.name(KEY), STATE_NAMESPACE
    )
    assert lease.spec.lease_transitions == 1


def test_release_deletes_only_our_lease(server: APIServer, clock: FakeClock) -> None:
    dedup = Deduplicator(lease_store(server, clock), clock, AGE)
    claim = dedup.claim(KEY, obs("a", clock), WINDOW)
    dedup.release(claim)
    leases = kubernetes.client.CoordinationV1Api(server.api_client())
    assert leases.list_namespaced_lease(STATE_NAMESPACE).items == []


def test_expired_leases_are_pruned(server: APIServer, clock: FakeClock) -> None:
    store = lease_store(server, clock)
    dedup = Deduplicator(store, clock, AGE)
    dedup.claim(KEY, obs("a", clock), WINDOW)
    other = DedupKey("default/pods", "oom-kill", "default", "Deployment/db")
    clock.advance(WINDOW)
    dedup.claim(other, obs("b", clock), WINDOW)
    assert store.prune(AGE) == 0
    clock.advance(AGE + timedelta(seconds=1))
    assert store.prune(AGE) == 1
    names = [
        x.metadata.name
        for x in kubernetes.client.CoordinationV1Api(server.api_client())
        .list_namespaced_lease(STATE_NAMESPACE)
        .items
    ]
    assert names == [LeaseRecords.name(other)]
    assert [r.key for r in store.records("default/pods")] == [other]


def test_configmap_records_many_incidents_under_contention(
    server: APIServer, clock: FakeClock
) -> None:
    barrier = threading.Barrier(6)
    fired: list[str] = []

    def replica(i: int) -> None:
        dedup = Deduplicator(cm_store(server, clock), clock, AGE)
        barrier.wait()
        for n in range(5):
            key = DedupKey("default/pods", "oom-kill", "default", f"Pod/p-{n}")
            if dedup.claim(key, obs(f"o-{n}", clock), WINDOW).verdict is Verdict.FIRE:
                fired.append(key.group)

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(fired) == [f"Pod/p-{n}" for n in range(5)]
    conflicts = [r for r in khook_requests(server) if r.status == 409]
    assert conflicts, "replicas did collide, and retried with the fresh resourceVersion"
    assert len(cm_store(server, clock).records("default/pods")) == 5


def test_configmap_prunes_and_stays_within_its_bound(
    server: APIServer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = cm_store(server, clock)
    dedup = Deduplicator(store, clock, AGE)
    for n in range(3):
        dedup.claim(
            DedupKey("default/pods", "oom-kill", "default", f"Pod/p-{n}"),
            obs(f"o-{n}", clock),
            WINDOW,
        )
    clock.advance(WINDOW + AGE + timedelta(seconds=1))
    dedup.claim(KEY, obs("new", clock), WINDOW)  # writing prunes what shields nothing
    assert [r.key for r in store.records("default/pods")] == [KEY]
    # A bound so small that only live records would not fit: a clear error, not a 422.
    monkeypatch.setattr(_configmap, "MAX_DATA_BYTES", 100)
    with pytest.raises(StoreError, match="exceed"):
        dedup.claim(
            DedupKey("default/pods", "oom-kill", "default", "Pod/x"), obs("x", clock), WINDOW
        )


def test_expired_leases_are_deleted_in_the_background(server: APIServer, clock: FakeClock) -> None:
    store = lease_store(server, clock)
    dedup = Deduplicator(store, clock, AGE)
    dedup.claim(KEY, obs("a", clock), WINDOW)
    clock.advance(WINDOW + AGE + timedelta(seconds=Deduplicator.PRUNE_EVERY_SECONDS))
    other = DedupKey("default/pods", "oom-kill", "default", "Deployment/db")
    dedup.claim(other, obs("b", clock), WINDOW)  # the first claim a minute on starts a prune
    wait_until(
        lambda: [r.key for r in store.records("default/pods")] == [other],
        what="the background prune",
    )
