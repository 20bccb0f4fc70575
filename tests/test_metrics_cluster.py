"""Metrics of what talks to the API server: the Kubernetes stores' 409s and failures, and the
watches' relists and restarts, against the API double through the official client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial

import pytest
from kubernetes import client

from khook import metrics
from khook.core.dedup import DedupKey, Observation, Verdict
from khook.kubeapi import identify
from khook.listwatch import ListWatch
from khook.stores import (
    CachedRecords,
    ConfigMapRecords,
    Deduplicator,
    LeaseRecords,
    MeteredRecords,
    StoreError,
)
from tests.support.apiserver import APIServer
from tests.support.apiserver_checks import G, V
from tests.support.clock import FakeClock
from tests.support.cluster import STATE_NAMESPACE, apiserver, wait_until
from tests.support.metrics import Scrape, as_labels

KEY = DedupKey("default/metrics-cluster", "oom-kill", "default", "Deployment/web")
WINDOW = timedelta(minutes=10)
AGE = timedelta(minutes=15)


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


def now() -> Scrape:
    return Scrape(metrics.scrape().decode())


def lease(server: APIServer, clock: FakeClock, who: str) -> Deduplicator:
    store = LeaseRecords(identify(server.api_client()), STATE_NAMESPACE, who, clock)
    return Deduplicator(MeteredRecords(CachedRecords(store, clock, sync_every=0.0)), clock, AGE)


def test_a_lease_another_replica_holds_is_one_conflict(server: APIServer, clock: FakeClock) -> None:
    before = now()
    first = lease(server, clock, "khook-0").claim(
        KEY, Observation("a", None, clock.now(), "P"), WINDOW
    )
    second = lease(server, clock, "khook-1").claim(
        KEY, Observation("b", None, clock.now(), "P"), WINDOW
    )
    assert (first.verdict, second.verdict) == (Verdict.FIRE, Verdict.DUPLICATE)
    after = now()
    # The second replica's create is answered 409 AlreadyExists; it reads and sees the first's.
    assert as_labels(after.moved(before, "khook_store_conflicts_total")) == {("lease",): 1}
    assert as_labels(after.moved(before, "khook_store_decision_seconds_count")) == {("lease",): 2}
    assert after.moved(before, "khook_store_errors_total") == {}


def test_configmap_conflicts_and_failures(server: APIServer, clock: FakeClock) -> None:
    store = ConfigMapRecords(identify(server.api_client()), STATE_NAMESPACE, clock, AGE)
    dedup = Deduplicator(MeteredRecords(store), clock, AGE)
    dedup.claim(KEY, Observation("a", None, clock.now(), "P"), WINDOW)  # creates the ConfigMap
    before = now()
    server.fail_next(409, "Conflict", verbs=("update",), resources=("configmaps",), count=2)
    other = DedupKey(KEY.hook, "oom-kill", "default", "Deployment/db")
    assert dedup.claim(other, Observation("b", None, clock.now(), "P"), WINDOW).verdict is (
        Verdict.FIRE
    )
    server.fail_next(503, "ServiceUnavailable", resources=("configmaps",))
    with pytest.raises(StoreError):
        dedup.claim(other, Observation("c", None, clock.now(), "P"), WINDOW)
    after = now()
    assert as_labels(after.moved(before, "khook_store_conflicts_total")) == {("configmap",): 2}
    assert as_labels(after.moved(before, "khook_store_errors_total")) == {("configmap",): 1}
    assert as_labels(after.moved(before, "khook_store_decision_seconds_count")) == {
        ("configmap",): 2
    }


def test_watch_relists_and_restarts(server: APIServer) -> None:
    custom = client.CustomObjectsApi(server.api_client())
    name = "metrics-test-watch"
    lists: list[int] = []
    watcher = ListWatch(
        name,
        partial(custom.list_namespaced_custom_object, G, V, "team-a", "hooks"),
        on_list=lambda items: lists.append(len(items)),
        on_event=lambda kind, obj: None,
        watch_timeout=60,
        max_backoff=0.2,
    )
    before = now()

    def watches() -> int:
        return len([r for r in server.calls(verb="watch") if r.status == 200])

    watcher.start()
    try:
        wait_until(lambda: watches() == 1, what="the first watch")
        assert server.end_watches(410, "Expired", "too old") == 1
        wait_until(lambda: watches() == 2 and len(lists) == 2, what="the list after 410")
        assert server.end_watches(500, "InternalError", "etcd timed out") == 1
        wait_until(lambda: watches() == 3, what="the watch resumed after the error")
    finally:
        watcher.close()
    after = now()
    assert as_labels(after.moved(before, "khook_watch_relists_total")) == {(name,): 1}
    assert as_labels(after.moved(before, "khook_watch_restarts_total")) == {(name,): 1}
