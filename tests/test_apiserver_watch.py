"""The API server double's lists, selectors and watches, and its behaviour under concurrency,
exercised only through the official ``kubernetes`` client (see test_apiserver.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.support.apiserver import DEFAULT_RESOURCES, APIServer
from tests.support.apiserver_checks import (
    READ,
    G,
    V,
    cm,
    failure,
    hook,
    pod,
    raw_events,
    refused,
    rv,
    seen,
    watching,
)


@pytest.fixture
def server() -> Iterator[APIServer]:
    with APIServer() as running:
        yield running


@pytest.fixture
def core(server: APIServer) -> client.CoreV1Api:
    return client.CoreV1Api(server.api_client())


@pytest.fixture
def leases(server: APIServer) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(server.api_client())


@pytest.fixture
def custom(server: APIServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(server.api_client())


@pytest.fixture
def labelled(core: client.CoreV1Api) -> client.CoreV1Api:
    labels = {"a": {"app": "web", "tier": "front"}, "b": {"app": "web", "tier": "back"}}
    for name, these in (labels | {"c": {"app": "db"}, "d": {}}).items():
        core.create_namespaced_config_map("default", cm(name, these))
    return core


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("", "abcd"),
        ("app=web", "ab"),
        ("app==web", "ab"),
        ("app!=web", "cd"),
        ("tier in (front,back)", "ab"),
        ("tier notin (front)", "bcd"),
        ("tier", "ab"),
        ("!tier", "cd"),
        ("app=web,tier!=back", "a"),
        ("app in (web, db),!tier", "c"),
    ],
)
def test_label_selectors(labelled: client.CoreV1Api, selector: str, names: str) -> None:
    found = labelled.list_namespaced_config_map("default", label_selector=selector).items
    assert "".join(item.metadata.name for item in found) == names


def test_field_selectors_and_list_shape(core: client.CoreV1Api) -> None:
    for namespace in ("team-b", "team-a"):
        for name in ("y", "x"):
            core.create_namespaced_pod(namespace, pod(name))
    raw = json.loads(core.list_pod_for_all_namespaces(_preload_content=False).data)
    assert (raw["apiVersion"], raw["kind"]) == ("v1", "PodList")
    items = [(i["metadata"]["namespace"], i["metadata"]["name"], i["kind"]) for i in raw["items"]]
    assert items == [(ns, n, "Pod") for ns in ("team-a", "team-b") for n in ("x", "y")]
    in_b = core.list_pod_for_all_namespaces(field_selector="metadata.namespace=team-b")
    assert [p.metadata.name for p in in_b.items] == ["x", "y"]
    not_x = core.list_namespaced_pod("team-a", field_selector="metadata.name!=x")
    assert [p.metadata.name for p in not_x.items] == ["y"]
    unscheduled = core.list_namespaced_pod("team-a", field_selector="spec.nodeName==")
    assert len(unscheduled.items) == 2
    unsupported = refused(core.list_namespaced_pod, "team-a", field_selector="spec.foo=bar")
    assert unsupported["message"] == "field label not supported: spec.foo"
    assert refused(core.list_namespaced_pod, "team-a", label_selector="a in (b")["code"] == 400


def test_deletecollection_with_label_selector(
    labelled: client.CoreV1Api, server: APIServer
) -> None:
    labelled.delete_collection_namespaced_config_map("default", label_selector="app=web")
    left = labelled.list_namespaced_config_map("default").items
    assert [c.metadata.name for c in left] == ["c", "d"]
    assert [c.status for c in server.calls(verb="deletecollection")] == [200]


# -- watch --------------------------------------------------------------------------------------


def test_watch_streams_added_modified_deleted(core: client.CoreV1Api) -> None:
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", cm("a"))
    core.create_namespaced_config_map("elsewhere", cm("other"))
    stream = watching(core.list_namespaced_config_map, "default")
    assert seen(next(stream)) == ("ADDED", "a")  # no resourceVersion: current objects first
    core.create_namespaced_config_map("default", cm("b"))
    assert seen(next(stream)) == ("ADDED", "b")
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    modified = next(stream)
    assert seen(modified) == ("MODIFIED", "a") and modified["object"].data == {"k": "v"}
    deleted = core.delete_namespaced_config_map("b", "default")
    event = next(stream)
    stream.close()
    assert seen(event) == ("DELETED", "b") and rv(event["raw_object"]) == rv(deleted)
    since = listed.metadata.resource_version
    replay = watching(core.list_namespaced_config_map, "default", resource_version=since)
    history = [seen(next(replay)) for _ in range(4)]
    replay.close()
    assert history == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]


def test_watch_filters_by_selector_and_reports_leaving(custom: client.CustomObjectsApi) -> None:
    def labelled_hook(name: str, on: str) -> dict[str, Any]:
        return hook(name, metadata={"name": name, "labels": {"on": on}})

    create = custom.create_namespaced_custom_object
    create(G, V, "default", "hooks", labelled_hook("h", "yes"))
    stream = watching(custom.list_cluster_custom_object, G, V, "hooks", label_selector="on=yes")
    assert seen(next(stream)) == ("ADDED", "h")
    create(G, V, "other", "hooks", labelled_hook("ignored", "no"))
    off = {"metadata": {"labels": {"on": "no"}}}
    custom.patch_namespaced_custom_object(G, V, "default", "hooks", "h", off)
    assert seen(next(stream)) == ("DELETED", "h")  # it left the selection
    create(G, V, "other", "hooks", labelled_hook("g", "yes"))
    assert seen(next(stream)) == ("ADDED", "g")  # all namespaces
    stream.close()


def test_event_field_selectors_in_list_and_watch(core: client.CoreV1Api) -> None:
    def event(name: str, kind: str, severity: str) -> dict[str, Any]:
        involved = {"kind": kind, "name": "web-1", "namespace": "default"}
        source = {"component": "kubelet"}
        extra = {"reason": "BackOff", "type": severity, "source": source}
        return {"metadata": {"name": name}, "involvedObject": involved, **extra}

    core.create_namespaced_event("default", event("e1", "Pod", "Warning"))
    selector = "involvedObject.kind=Pod,type=Warning"
    stream = watching(core.list_namespaced_event, "default", field_selector=selector)
    assert seen(next(stream)) == ("ADDED", "e1")
    core.create_namespaced_event("default", event("e2", "Node", "Warning"))
    core.create_namespaced_event("default", event("e3", "Pod", "Normal"))
    core.create_namespaced_event("default", event("e4", "Pod", "Warning"))
    assert seen(next(stream)) == ("ADDED", "e4")
    stream.close()
    from_kubelet = core.list_namespaced_event("default", field_selector="source=kubelet")
    assert len(from_kubelet.items) == 4


def test_watch_bookmarks_when_idle() -> None:
    with APIServer(bookmark_interval=0.05) as server:
        core = client.CoreV1Api(server.api_client())
        created = core.create_namespaced_config_map("default", cm("a"))
        list_call = core.list_namespaced_config_map
        stream = watching(list_call, "default", allow_watch_bookmarks=True)
        assert seen(next(stream)) == ("ADDED", "a")
        mark = next(stream)
        stream.close()
        assert mark["type"] == "BOOKMARK"
        assert mark["raw_object"] == {
            "kind": "ConfigMap",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": created.metadata.resource_version},
        }
        unasked = watching(list_call, "default", timeout_seconds=1)
        assert [seen(event) for event in unasked] == [("ADDED", "a")]


def test_watch_after_compact_is_410(server: APIServer, core: client.CoreV1Api) -> None:
    old = core.create_namespaced_config_map("default", cm("a")).metadata.resource_version
    latest = core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    server.compact()
    message = f"too old resource version: {old} ({rv(latest)})"
    with pytest.raises(ApiException) as gone:
        list(watching(core.list_namespaced_config_map, "default", resource_version=old))
    assert (gone.value.status, gone.value.reason) == (410, f"Expired: {message}")
    response = core.list_namespaced_config_map(
        "default", watch=True, resource_version=old, _preload_content=False, _request_timeout=READ
    )
    assert response.status == 200  # the error travels inside the stream
    error = {"type": "ERROR", "object": failure(410, "Expired", message)}
    assert raw_events(response) == [error]
    # Without timeout_seconds the helper retries once from the same version, then gives up.
    server.clear_requests()
    kwargs = {"resource_version": old, "_request_timeout": READ}
    with pytest.raises(ApiException) as again:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default", **kwargs))
    assert again.value.status == 410 and len(server.calls(verb="watch")) == 2
    current = str(rv(latest))  # a watch from now on still works after compaction
    assert (
        list(
            watching(
                core.list_namespaced_config_map,
                "default",
                resource_version=current,
                timeout_seconds=1,
            )
        )
        == []
    )


def test_watch_history_is_bounded() -> None:
    with APIServer(history=2) as server:
        core = client.CoreV1Api(server.api_client())
        first, second, third = (
            rv(core.create_namespaced_config_map("default", cm(n))) for n in "abc"
        )
        kept = watching(core.list_namespaced_config_map, "default", resource_version=str(first))
        assert [rv(next(kept)["raw_object"]) for _ in range(2)] == [second, third]
        kept.close()
        response = core.list_namespaced_config_map(
            "default", watch=True, resource_version=str(first - 1), _preload_content=False
        )
        error = raw_events(response)[0]["object"]
        assert error["message"] == f"too old resource version: {first - 1} ({first})"
        # `watch=1` is a watch too (sent on the client's own pool: the typed API sends "true").
        path = f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={first - 1}"
        answer = server.api_client().rest_client.pool_manager.request("GET", server.url + path)
        assert json.loads(answer.data)["object"]["code"] == 410
        assert [r.query for r in server.calls(verb="watch")][-1] == path.split("?")[1]


def test_watch_timeout_ends_stream(core: client.CoreV1Api) -> None:
    started = time.monotonic()
    assert list(watching(core.list_namespaced_pod, "default", timeout_seconds=1)) == []
    assert 0.9 <= time.monotonic() - started < READ


def test_stopping_ends_open_streams_promptly() -> None:
    server = APIServer().__enter__()
    core = client.CoreV1Api(server.api_client())
    core.create_namespaced_config_map("default", cm("a"))
    stream = watching(core.list_namespaced_config_map, "default", timeout_seconds=60)
    assert seen(next(stream)) == ("ADDED", "a")
    started = time.monotonic()
    server.__exit__(None, None, None)
    assert time.monotonic() - started < 1.0
    assert list(stream) == []  # the stream ended cleanly
    assert not [t for t in threading.enumerate() if t.name.startswith("apiserver")]


# -- concurrency, kubeconfig, request log -------------------------------------------------------


def test_concurrent_creates_of_one_name(server: APIServer) -> None:
    barrier = threading.Barrier(10)

    def attempt(_: int) -> str:
        api = client.CoordinationV1Api(server.api_client())
        barrier.wait(timeout=READ)
        try:
            api.create_namespaced_lease("default", {"metadata": {"name": "leader"}})
        except ApiException as error:
            return str(json.loads(error.body)["reason"])
        return "Created"

    with ThreadPoolExecutor(10) as pool:
        outcomes = sorted(pool.map(attempt, range(10)))
    assert outcomes == ["AlreadyExists"] * 9 + ["Created"]


def test_clients_in_other_processes(server: APIServer, core: client.CoreV1Api) -> None:
    script = textwrap.dedent("""
        import sys, kubernetes.client as k
        cfg = k.Configuration(); cfg.host = sys.argv[1]
        api = k.CoreV1Api(k.ApiClient(cfg))
        for i in range(20):
            body = {"metadata": {"name": f"p{sys.argv[2]}-{i}"}}
            api.create_namespaced_config_map("default", body)
    """)
    argv = [sys.executable, "-c", script, server.url]
    workers = [subprocess.Popen([*argv, str(n)]) for n in range(3)]
    for i in range(20):
        core.create_namespaced_config_map("default", cm(f"main-{i}"))
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0, 0]
    items = core.list_namespaced_config_map("default").items
    assert len(items) == 80 and len({item.metadata.resource_version for item in items}) == 80


def test_kubeconfig_loads_into_official_client(server: APIServer, tmp_path: Path) -> None:
    path = server.write_kubeconfig(tmp_path / "kubeconfig", namespace="team-a")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    assert configuration.host == server.url
    _, active = config.list_kube_config_contexts(config_file=str(path))
    assert active["context"]["namespace"] == "team-a"
    api = client.CoreV1Api(client.ApiClient(configuration))
    api.create_namespaced_config_map("team-a", cm("x"))
    assert [c.metadata.name for c in api.list_namespaced_config_map("team-a").items] == ["x"]


def test_request_log(
    server: APIServer, core: client.CoreV1Api, leases: client.CoordinationV1Api
) -> None:
    core.create_namespaced_pod("default", pod("p"))
    server.clear_requests()
    core.read_namespaced_pod("p", "default")
    core.list_pod_for_all_namespaces()
    core.list_namespaced_pod("default", watch=True, _preload_content=False).release_conn()
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Running"}})
    lease = leases.create_namespaced_lease("kube-system", {"metadata": {"name": "l"}})
    leases.replace_namespaced_lease("l", "kube-system", lease.to_dict(serialize=True))
    refused(core.read_node, "missing")
    core.delete_namespaced_pod("p", "default")
    core.delete_collection_namespaced_config_map("default")
    logged = [
        (r.verb, r.resource, r.subresource, r.namespace, r.name, r.status) for r in server.requests
    ]
    assert logged == [
        ("get", "pods", "", "default", "p", 200),
        ("list", "pods", "", "", "", 200),
        ("watch", "pods", "", "default", "", 200),
        ("patch", "pods", "status", "default", "p", 200),
        ("create", "leases", "", "kube-system", "", 201),
        ("update", "leases", "", "kube-system", "l", 200),
        ("get", "nodes", "", "", "missing", 404),
        ("delete", "pods", "", "default", "p", 200),
        ("deletecollection", "configmaps", "", "default", "", 200),
    ]
    [update] = server.calls(verb="update", resource="leases")
    assert (update.method, update.group, update.version) == ("PUT", "coordination.k8s.io", "v1")
    assert update.path == "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/l"
    assert update.user_agent.startswith("OpenAPI-Generator/")
    with pytest.raises(TypeError):
        server.calls(verbs="get")


def test_default_resources() -> None:
    served = {(rt.group, rt.version, rt.plural): rt for rt in DEFAULT_RESOURCES}
    assert served[(G, V, "hooks")].custom and served[(G, V, "hooks")].status_subresource
    assert not served[("", "v1", "nodes")].namespaced
    assert {
        ("", "v1", "events"),
        ("", "v1", "configmaps"),
        ("coordination.k8s.io", "v1", "leases"),
    } <= set(served)
