"""The workload a Pod belongs to without an API call, and the bounded memories correlation
reads: pods' workloads, nodes and pull causes, nodes' readiness."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from khook.core.objects import ObjectRef
from khook.core.owners import (
    MAX_NODES,
    MAX_PODS,
    BoundedLRU,
    OwnerMemory,
    cronjob_of_job,
    deployment_of_pod_name,
    deployment_of_replicaset,
    guess_workload,
    workload_of_pod,
)
from khook.core.registry import PullFailure
from khook.files import builtin_correlation

NOW = datetime(2026, 11, 23, 9, 20, 10, tzinfo=UTC)
TABLE = builtin_correlation()


def pod(
    name: str,
    namespace: str = "shop",
    owners: list[dict[str, Any]] | None = None,
    labels: dict[str, str] | None = None,
    node: str = "",
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels or {}}
    if owners is not None:
        meta["ownerReferences"] = owners
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"nodeName": node}}


def owner(kind: str, name: str, controller: bool = True) -> dict[str, Any]:
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {
        "apiVersion": api,
        "kind": kind,
        "name": name,
        "uid": f"uid-{name}",
        "controller": controller,
    }


def node(name: str, status: str, changed: str | None = "2026-11-23T09:15:00Z") -> dict[str, Any]:
    cond: dict[str, Any] = {"type": "Ready", "status": status}
    if changed is not None:
        cond["lastTransitionTime"] = changed
    pressure = {"type": "MemoryPressure", "status": "False"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"conditions": [pressure, cond]},
    }


# ---- from the Pod's ownerReferences ----------------------------------------------------------


def test_replicaset_with_the_template_hash_is_its_deployment() -> None:
    p = pod(
        "web-66b6c48dd5-x7k2p",
        owners=[owner("ReplicaSet", "web-66b6c48dd5")],
        labels={"pod-template-hash": "66b6c48dd5"},
    )
    assert workload_of_pod(p) == ObjectRef("Deployment", "web", "shop", "apps/v1")


def test_replicaset_without_the_label_is_itself() -> None:
    p = pod("cache-x7k2p", owners=[owner("ReplicaSet", "cache")])
    ref = workload_of_pod(p)
    assert ref is not None and ref.display == "ReplicaSet/cache"


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("StatefulSet", "db", "StatefulSet/db"),
        ("DaemonSet", "fluentd", "DaemonSet/fluentd"),
        ("Job", "migrate", "Job/migrate"),
        # pkg/controller/cronjob/utils.go getJobName: <cronjob>-<minutes since the epoch>.
        ("Job", "backup-29401440", "CronJob/backup"),
        ("Job", "backup-2940144", "Job/backup-2940144"),  # 7 digits: not the controller's
        ("Job", "backup-294014400", "Job/backup-294014400"),  # 9 digits
    ],
)
def test_owner_kinds(kind: str, name: str, expected: str) -> None:
    ref = workload_of_pod(pod(f"{name}-x7k2p", owners=[owner(kind, name)]))
    assert ref is not None and ref.display == expected
    assert ref.namespace == "shop"


def test_no_owner_or_a_node_owner_is_no_workload() -> None:
    assert workload_of_pod(pod("bare")) is None
    # A static pod's mirror is owned by its Node: that is not a workload.
    assert (
        workload_of_pod(
            pod(
                "kube-apiserver-cp1",
                owners=[{"apiVersion": "v1", "kind": "Node", "name": "cp1", "controller": True}],
            )
        )
        is None
    )
    assert workload_of_pod({"metadata": "not a mapping"}) is None


def test_the_controller_reference_wins() -> None:
    p = pod("x", owners=[owner("ConfigMap", "cm", controller=False), owner("StatefulSet", "db")])
    ref = workload_of_pod(p)
    assert ref is not None and ref.display == "StatefulSet/db"


# ---- from the name alone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "deployment"),
    [
        ("web-66b6c48dd5-x7k2p", "web"),
        ("checkout-api-7d4b9c8f6d-bcd2f", "checkout-api"),
        ("api.v2-5f7b9c6d8b-zz99q", "api.v2"),
        ("w-456789-22222", "w"),  # a 6-character hash
        ("w-4567894567-bcdfg", "w"),  # a 10-character hash
    ],
)
def test_deployment_pod_names_are_recognised(name: str, deployment: str) -> None:
    assert deployment_of_pod_name(name, "shop") == ObjectRef(
        "Deployment", deployment, "shop", "apps/v1"
    )


@pytest.mark.parametrize(
    "name",
    [
        # Too ambiguous to guess, by design:
        "fluentd-x7k2p",  # a DaemonSet's pod, or a Job's, or a bare pod: <name>-<5 random>
        "node-exporter-x7k2p",
        "backup-29401440-x7k2p",  # a CronJob's Job's pod: the Job's name ends in digits 0-3
        "web-0",  # a StatefulSet's pods: <name>-<ordinal>
        "db-12",
        "web",
        # Not the shape:
        "web-66b6c48dd5-x7k2",  # a 4-character suffix
        "web-66b6c48dd5-x7k2pp",  # 6
        "web-66b6c48dd5-x7a2p",  # a vowel: never generated
        "web-45678-x7k2p",  # a 5-character hash
        "web-45678945678-x7k2p",  # 11
        "web-66b6c48ddx-x7k2p",  # 'x' never occurs in a pod-template-hash
        "web-66b6c48dd1-x7k2p",  # nor '1'
        "Web-66b6c48dd5-x7k2p",  # not a DNS name
        "-66b6c48dd5-x7k2p",
        "web--66b6c48dd5-x7k2p",
        "",
        "x" * 300,
        # 63 characters: the generated prefix may have been cut into the hash.
        "a" * 46 + "-66b6c48dd5-x7k2p",
    ],
)
def test_other_names_are_not_guessed(name: str) -> None:
    assert deployment_of_pod_name(name, "shop") is None


def test_a_pod_name_under_63_characters_is_guessed() -> None:
    name = "a" * 45 + "-66b6c48dd5-x7k2p"
    assert len(name) == 62
    ref = deployment_of_pod_name(name, "shop")
    assert ref is not None and ref.name == "a" * 45


def test_replicaset_and_cronjob_names() -> None:
    assert deployment_of_replicaset("web-66b6c48dd5", "n") == ObjectRef(
        "Deployment", "web", "n", "apps/v1"
    )
    assert deployment_of_replicaset("cache", "n") is None
    assert deployment_of_replicaset("cache-primary", "n") is None
    assert cronjob_of_job("backup-29401440", "n") == ObjectRef("CronJob", "backup", "n", "batch/v1")
    # The documented ambiguity: a Job someone named <x>-<8 digits> reads as CronJob x.
    assert cronjob_of_job("migrate-20240101", "n") == ObjectRef(
        "CronJob", "migrate", "n", "batch/v1"
    )
    assert cronjob_of_job("backup-" + "\uff12\uff19" * 4, "n") is None  # non-ASCII digits
    assert cronjob_of_job("backup", "n") is None


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("Pod", "web-66b6c48dd5-x7k2p", "Deployment/web"),
        ("Pod", "fluentd-x7k2p", None),
        ("ReplicaSet", "web-66b6c48dd5", "Deployment/web"),
        ("ReplicaSet", "cache", None),
        ("Job", "backup-29401440", "CronJob/backup"),
        ("Job", "migrate", "Job/migrate"),
        ("Deployment", "web", "Deployment/web"),
        ("StatefulSet", "db", "StatefulSet/db"),
        ("DaemonSet", "fluentd", "DaemonSet/fluentd"),
        ("CronJob", "backup", "CronJob/backup"),
        ("Node", "worker-1", None),
        ("ConfigMap", "x", None),
        ("Deployment", "", None),
        ("Deployment", "x" * 254, None),
    ],
)
def test_guess_workload(kind: str, name: str, expected: str | None) -> None:
    ref = guess_workload(kind, name, "shop")
    assert (ref.display if ref else None) == expected


# ---- the LRU -------------------------------------------------------------------------------------


def test_lru_keeps_at_most_its_limit_and_forgets_the_least_recently_used() -> None:
    lru: BoundedLRU[str, int] = BoundedLRU(3)
    for i, key in enumerate("abc"):
        lru.put(key, i)
    assert lru.get("a") == 0  # a is now the most recently used
    lru.put("d", 3)
    assert len(lru) == 3
    assert lru.get("b") is None  # b was the least recently used
    assert [lru.get(k) for k in "acd"] == [0, 2, 3]
    lru.put("a", 10)  # an update refreshes, does not grow
    assert len(lru) == 3 and lru.get("a") == 10
    assert lru.pop("a") == 10 and lru.pop("a") is None


def test_lru_refuses_a_limit_below_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BoundedLRU(0)


def test_lru_from_many_threads_stays_bounded() -> None:
    lru: BoundedLRU[int, int] = BoundedLRU(50)

    def writer(base: int) -> None:
        for i in range(2_000):
            lru.put(base + i, i)
            lru.get(base + i // 2)

    threads = [threading.Thread(target=writer, args=(n * 10_000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lru) == 50


# ---- OwnerMemory: pods ---------------------------------------------------------------------


def test_a_pod_that_passed_through_gives_its_workload_and_node() -> None:
    memory = OwnerMemory()
    memory.observe_pod(pod("db-0", owners=[owner("StatefulSet", "db")], node="worker-2"))
    assert memory.workload("shop", "db-0") == ObjectRef(
        "StatefulSet", "db", "shop", "apps/v1", "uid-db"
    )
    assert memory.node_of("shop", "db-0") == "worker-2"
    assert memory.workload("other", "db-0") is None  # namespaces apart
    assert memory.node_of("other", "db-0") == ""


@pytest.mark.parametrize(
    "seen",
    [
        pod("db-0", owners=[owner("StatefulSet", "db")], node="worker-2"),
        pod("web-66b6c48dd5-x7k2p"),
        {"metadata": {"namespace": "shop", "name": "bad/name"}},
        {"metadata": {"name": "no-namespace"}},
    ],
    ids=["owned", "bare", "bad name", "no namespace"],
)
def test_a_pod_given_with_its_reference_is_remembered_as_when_read_whole(
    seen: dict[str, Any],
) -> None:
    # The pipeline hands over the reference decoding made (khook.core.memory); the memory must
    # be the one observe_pod makes reading the Pod itself.
    read, given = OwnerMemory(), OwnerMemory()
    read.observe_pod(seen)
    given.observe_pod(seen, ref=ObjectRef.of(seen))
    namespace, name = seen["metadata"].get("namespace", ""), seen["metadata"]["name"]
    assert given.workload(namespace, name) == read.workload(namespace, name)
    assert given.node_of(namespace, name) == read.node_of(namespace, name)
    assert given.pods_remembered() == read.pods_remembered()


def test_a_pod_not_seen_falls_back_to_the_name_shape() -> None:
    memory = OwnerMemory()
    assert memory.workload("shop", "web-66b6c48dd5-x7k2p") == ObjectRef(
        "Deployment", "web", "shop", "apps/v1"
    )
    assert memory.workload("shop", "fluentd-x7k2p") is None


def test_a_pod_seen_without_an_owner_is_not_guessed() -> None:
    memory = OwnerMemory()
    memory.observe_pod(pod("web-66b6c48dd5-x7k2p"))  # a bare pod that happens to look like one
    assert memory.workload("shop", "web-66b6c48dd5-x7k2p") is None


def test_a_later_pod_update_keeps_the_node_it_no_longer_shows() -> None:
    memory = OwnerMemory()
    memory.observe_pod(pod("db-0", node="worker-2"))
    memory.observe_pod(pod("db-0", node=""))
    assert memory.node_of("shop", "db-0") == "worker-2"
    memory.forget_pod("shop", "db-0")
    assert memory.node_of("shop", "db-0") == ""


def test_pods_remembered_are_bounded_at_10000() -> None:
    assert MAX_PODS == 10_000
    memory = OwnerMemory()
    for i in range(25_000):
        memory.observe_pod(pod(f"p-{i}", owners=[owner("StatefulSet", "db")], node="n"))
    assert memory.pods_remembered() == MAX_PODS
    assert memory.node_of("shop", "p-0") == ""  # the oldest were forgotten
    assert memory.node_of("shop", "p-24999") == "n"


def test_a_smaller_bound_holds_too() -> None:
    memory = OwnerMemory(max_pods=10)
    cause = PullFailure("a:1", "docker.io", "rate-limited", True, "429 Too Many Requests")
    for i in range(100):
        memory.remember_pull("shop", f"p-{i}", cause)
    assert memory.pods_remembered() == 10
    assert memory.pull_cause("shop", "p-0") is None
    assert memory.pull_cause("shop", "p-99") == cause


@pytest.mark.parametrize(
    ("namespace", "name"), [("shop", ""), ("shop", "x" * 254), ("n" * 64, "p")]
)
def test_names_that_are_not_kubernetes_names_are_not_remembered(namespace: str, name: str) -> None:
    memory = OwnerMemory()
    memory.observe_pod(
        {"metadata": {"namespace": namespace, "name": name}, "spec": {"nodeName": "n"}}
    )
    memory.remember_pull(namespace, name, PullFailure("", "", "unknown", False, ""))
    assert memory.pods_remembered() == 0
    assert memory.workload(namespace, name) is None
    assert memory.pull_cause(namespace, name) is None


@pytest.mark.parametrize(("namespace", "name"), [(None, "p"), ("shop", 42), ("shop", None)])
def test_keys_that_are_not_text_are_not_remembered(namespace: Any, name: Any) -> None:
    memory = OwnerMemory()
    memory.remember_pull(namespace, name, PullFailure("", "", "unknown", False, ""))
    assert memory.pods_remembered() == 0
    assert memory.workload(namespace, name) is None
    assert memory.node_of(namespace, name) == ""


def test_causeless_pull_events_inherit_the_pods_cause() -> None:
    memory = OwnerMemory()
    stated = memory.pull_cause_for(
        "shop", "web-1", 'Failed to pull image "nginx:1.27": 429 Too Many Requests', TABLE
    )
    assert stated.pull_class == "rate-limited"
    for message in (
        "Error: ErrImagePull",
        'Back-off pulling image "nginx:1.27"',
        "Error: ImagePullBackOff",
    ):
        assert memory.pull_cause_for("shop", "web-1", message, TABLE) == stated
    # Another pod has no cause to inherit: unknown, terminal (fires per workload).
    other = memory.pull_cause_for("shop", "web-2", 'Back-off pulling image "nginx:1.27"', TABLE)
    assert other == PullFailure("nginx:1.27", "docker.io", "unknown", False, "")
    # A new stated cause replaces the remembered one.
    memory.pull_cause_for(
        "shop", "web-1", 'Failed to pull image "nginx:1.27": manifest unknown', TABLE
    )
    assert memory.pull_cause("shop", "web-1").pull_class == "not-found"  # type: ignore[union-attr]


def test_a_full_memory_starts_no_wait_for_a_pod_it_does_not_hold() -> None:
    """A pod forgotten (or never seen) while the memory is full waits for no cause: its
    spell must not begin again each time it is pushed out, nor push out another pod's."""
    memory = OwnerMemory(max_pods=2)
    t0 = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
    for name in ("web-1", "web-2"):
        memory.observe_pod({"metadata": {"namespace": "shop", "name": name}})
    held = memory.pull_cause_for("shop", "web-1", "Error: ErrImagePull", TABLE, at=t0)
    assert held.unstated_since == t0, "a pod the memory holds waits"
    other = memory.pull_cause_for("shop", "web-3", "Error: ErrImagePull", TABLE, at=t0)
    assert other.unstated_since is None
    assert memory.pods_remembered() == 2


def test_a_pod_failing_to_pull_without_a_cause_is_remembered_since_its_first_such_signal() -> None:
    memory = OwnerMemory()
    t0 = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
    first = memory.pull_cause_for("shop", "web-1", "Error: ErrImagePull", TABLE, at=t0)
    later = memory.pull_cause_for(
        "shop", "web-1", "Error: ImagePullBackOff", TABLE, at=t0 + timedelta(minutes=3)
    )
    assert first.unstated_since == later.unstated_since == t0
    assert (later.pull_class, later.transient) == ("unknown", False)
    named = memory.pull_cause_for(
        "shop", "web-1", 'Failed to pull image "a:1": 429 Too Many Requests', TABLE, at=t0
    )
    assert named.unstated_since is None and named.pull_class == "rate-limited"
    after = memory.pull_cause_for("shop", "web-1", "Error: ErrImagePull", TABLE, at=t0)
    assert after == named, "once named, the cause is inherited, not waited for"
    nameless = memory.pull_cause_for("shop", "", "Error: ErrImagePull", TABLE, at=t0)
    assert nameless.unstated_since is None, "a pod khook cannot remember waits for nothing"


def test_pull_cause_and_pod_facts_share_one_entry() -> None:
    memory = OwnerMemory()
    memory.observe_pod(pod("db-0", owners=[owner("StatefulSet", "db")], node="worker-2"))
    memory.pull_cause_for(
        "shop", "db-0", 'Failed to pull image "a:1": 503 Service Unavailable', TABLE
    )
    assert memory.pods_remembered() == 1
    assert memory.node_of("shop", "db-0") == "worker-2"
    ref = memory.workload("shop", "db-0")
    assert ref is not None and ref.display == "StatefulSet/db"


# ---- OwnerMemory: nodes --------------------------------------------------------------------


def test_a_node_not_ready_since_its_condition_changed() -> None:
    memory = OwnerMemory()
    memory.observe_node(node("worker-1", "Unknown"), NOW)  # nodelifecycle: NodeStatusUnknown
    assert memory.not_ready_since("worker-1") == datetime(2026, 11, 23, 9, 15, tzinfo=UTC)
    assert memory.node_not_ready("worker-1")
    memory.observe_node(node("worker-1", "True"), NOW)
    assert not memory.node_not_ready("worker-1")


def test_a_node_without_a_transition_time_is_not_ready_since_now() -> None:
    memory = OwnerMemory()
    memory.observe_node(node("worker-1", "False", changed=None), NOW)
    assert memory.not_ready_since("worker-1") == NOW


def test_a_node_without_a_ready_condition_changes_nothing() -> None:
    memory = OwnerMemory()
    memory.node_event("NodeNotReady", "worker-1", NOW)
    memory.observe_node({"metadata": {"name": "worker-1"}, "status": {"conditions": "junk"}}, NOW)
    memory.observe_node({"metadata": {"name": "worker-1"}}, NOW)
    assert memory.node_not_ready("worker-1")


def test_node_events_mark_and_clear_and_keep_the_earliest_time() -> None:
    memory = OwnerMemory()
    memory.node_event("NodeNotReady", "worker-1", NOW)
    memory.node_event("NodeNotReady", "worker-1", NOW + timedelta(minutes=5))
    memory.node_event("NodeNotReady", "worker-1", NOW - timedelta(minutes=1))
    assert memory.not_ready_since("worker-1") == NOW - timedelta(minutes=1)
    memory.node_event("Rebooted", "worker-1", NOW)  # other reasons change nothing
    assert memory.node_not_ready("worker-1")
    memory.node_event("NodeReady", "worker-1", NOW)
    assert memory.not_ready_since("worker-1") is None


def test_a_naive_time_is_taken_as_utc() -> None:
    memory = OwnerMemory()
    memory.node_event("NodeNotReady", "worker-1", NOW)
    memory.node_event("NodeNotReady", "worker-1", datetime(2026, 11, 23, 9, 0))
    assert memory.not_ready_since("worker-1") == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_nodes_remembered_are_bounded() -> None:
    assert MAX_NODES == 5_000
    memory = OwnerMemory(max_nodes=20)
    for i in range(1_000):
        memory.node_event("NodeNotReady", f"n-{i}", NOW)
    assert not memory.node_not_ready("n-0")
    assert memory.node_not_ready("n-999")
    assert sum(memory.node_not_ready(f"n-{i}") for i in range(1_000)) == 20
    memory.forget_node("n-999")
    assert not memory.node_not_ready("n-999")


@pytest.mark.parametrize("name", ["", "x" * 254, None, 7])
def test_hostile_node_names_are_ignored(name: Any) -> None:
    memory = OwnerMemory()
    memory.node_event("NodeNotReady", name, NOW)
    memory.observe_node(
        {
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]},
        },
        NOW,
    )
    assert memory.not_ready_since(name) is None
