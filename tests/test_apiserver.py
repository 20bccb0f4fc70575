"""The API server double, exercised only through the official ``kubernetes`` client.

Each test pins one semantic of the real kube-apiserver that code under test relies on.
Streams are always read with a client-side ``_request_timeout``, so a missing event fails
the test instead of hanging it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.apiserver import APIServer, ResourceType
from tests.support.apiserver_checks import (
    G,
    V,
    cm,
    failure,
    hook,
    pod,
    refused,
    rv,
    seen,
    watching,
)

MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
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


# -- objects and metadata ---------------------------------------------------------------------


def test_pod_round_trip(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_pod("default", pod("web", status={"phase": "Running"}))
    meta = created.metadata
    assert (meta.namespace, meta.generation, created.status) == ("default", 1, None)
    assert len(meta.uid) == 36 and rv(created) > 100
    assert abs((datetime.now(UTC) - meta.creation_timestamp).total_seconds()) < 5
    assert (created.api_version, created.kind) == ("v1", "Pod")
    assert core.read_namespaced_pod("web", "default") == created
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["web"]
    # A dict patch through CoreV1Api is a strategic merge patch; labels are not spec.
    patched = core.patch_namespaced_pod("web", "default", {"metadata": {"labels": {"a": "b"}}})
    assert patched.metadata.labels == {"a": "b"} and patched.metadata.generation == 1
    body = patched.to_dict(serialize=True)
    body["spec"]["containers"][0]["image"] = "nginx:2"
    replaced = core.replace_namespaced_pod("web", "default", body)
    assert replaced.metadata.generation == 2 and replaced.metadata.uid == meta.uid
    assert replaced.metadata.creation_timestamp == meta.creation_timestamp
    deleted = core.delete_namespaced_pod("web", "default")  # answers with the object
    assert deleted.metadata.name == "web" and rv(deleted) == rv(replaced) + 1
    assert refused(core.read_namespaced_pod, "web", "default")["code"] == 404


def test_configmap_round_trip(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", cm("settings", mode="a"))
    merge = "application/merge-patch+json"
    patch = {"data": {"extra": "1"}}
    merged = core.patch_namespaced_config_map("settings", "default", patch, _content_type=merge)
    assert merged.data == {"mode": "a", "extra": "1"} and merged.metadata.generation == 2
    body = merged.to_dict(serialize=True) | {"data": {"mode": "b"}}
    replaced = core.replace_namespaced_config_map("settings", "default", body)
    assert replaced.data == {"mode": "b"} and rv(created) < rv(merged) < rv(replaced)
    # Delete answers with the object; typed V1Status, the client hands it over as a dict.
    assert core.delete_namespaced_config_map("settings", "default")["data"] == {"mode": "b"}
    assert core.list_namespaced_config_map("default").items == []


def test_lease_round_trip_and_stale_update(leases: client.CoordinationV1Api) -> None:
    lease = {"metadata": {"name": "khook"}, "spec": {"holderIdentity": "a"}}
    mine = leases.create_namespaced_lease("default", lease).to_dict(serialize=True)
    mine["spec"]["holderIdentity"] = "b"
    renewed = leases.replace_namespaced_lease("khook", "default", mine)
    assert renewed.spec.holder_identity == "b"
    # `mine` still carries the resourceVersion of the create.
    assert refused(leases.replace_namespaced_lease, "khook", "default", mine) == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on leases.coordination.k8s.io "khook": {MODIFIED}',
        {"name": "khook", "group": "coordination.k8s.io", "kind": "leases"},
    )
    unconditional = renewed.to_dict(serialize=True)
    del unconditional["metadata"]["resourceVersion"]  # empty resourceVersion: no precondition
    unconditional["spec"]["holderIdentity"] = "c"
    assert rv(leases.replace_namespaced_lease("khook", "default", unconditional)) > rv(renewed)


def test_hook_round_trip(custom: client.CustomObjectsApi) -> None:
    created = custom.create_namespaced_custom_object(G, V, "default", "hooks", hook("h"))
    assert created["metadata"]["namespace"] == "default" and created["kind"] == "Hook"
    assert custom.get_namespaced_custom_object(G, V, "default", "hooks", "h") == created
    listed = custom.list_namespaced_custom_object(G, V, "default", "hooks")
    assert (listed["kind"], listed["apiVersion"]) == ("HookList", f"{G}/{V}")
    assert listed["items"] == [created] and rv(listed) == rv(created)
    body = created | {"spec": {"eventConfigurations": []}}
    replaced = custom.replace_namespaced_custom_object(G, V, "default", "hooks", "h", body)
    assert replaced["metadata"]["generation"] == 2
    deleted = custom.delete_namespaced_custom_object(G, V, "default", "hooks", "h")
    assert deleted["metadata"]["name"] == "h" and rv(deleted) == rv(replaced) + 1


def test_resource_version_increases_on_every_write(
    core: client.CoreV1Api, leases: client.CoordinationV1Api
) -> None:
    versions = [
        rv(core.create_namespaced_config_map("default", cm("a"))),
        rv(leases.create_namespaced_lease("default", {"metadata": {"name": "l"}})),
        rv(core.patch_namespaced_config_map("a", "default", {"data": {"k": "1"}})),
        rv(core.create_node({"metadata": {"name": "node-1"}})),
        rv(core.delete_namespaced_config_map("a", "default")),
        rv(leases.delete_namespaced_lease("l", "default")),
    ]
    assert versions == list(range(versions[0], versions[0] + 6))
    raw = core.list_namespaced_config_map("default", _preload_content=False)
    assert json.loads(raw.data)["metadata"]["resourceVersion"] == str(versions[-1])


def test_noop_update_is_not_a_write(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", cm("same", k="v"))
    body = created.to_dict(serialize=True)
    # Like the real server, an update that changes nothing keeps the resourceVersion and
    # sends no watch event: the first event after `created` is the next real change.
    assert rv(core.replace_namespaced_config_map("same", "default", body)) == rv(created)
    changed = core.patch_namespaced_config_map("same", "default", {"data": {"k": "w"}})
    stream = watching(core.list_namespaced_config_map, "default", resource_version=str(rv(created)))
    event = next(stream)
    stream.close()
    assert seen(event) == ("MODIFIED", "same") and rv(event["raw_object"]) == rv(changed)


def test_duplicate_create_is_already_exists(leases: client.CoordinationV1Api) -> None:
    leases.create_namespaced_lease("default", {"metadata": {"name": "x"}})
    with pytest.raises(ApiException) as duplicate:
        leases.create_namespaced_lease("default", {"metadata": {"name": "x"}})
    assert duplicate.value.status == 409
    assert duplicate.value.headers["Content-Type"] == "application/json"
    assert json.loads(duplicate.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'leases.coordination.k8s.io "x" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "x", "group": "coordination.k8s.io", "kind": "leases"},
        "code": 409,
    }


def test_not_found_status_bodies(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    assert refused(core.read_namespaced_pod, "x", "default") == failure(
        404, "NotFound", 'pods "x" not found', {"name": "x", "kind": "pods"}
    )
    missing_hook = refused(custom.patch_namespaced_custom_object, G, V, "default", "hooks", "x", {})
    assert missing_hook["message"] == 'hooks.kagent.dev "x" not found'
    assert refused(core.replace_namespaced_config_map, "x", "default", cm("x"))["code"] == 404
    assert refused(core.delete_node, "x")["details"] == {"name": "x", "kind": "nodes"}
    unknown = ("example.com", "v1", "default", "widgets")
    assert refused(custom.list_namespaced_custom_object, *unknown) == failure(
        404, "NotFound", "the server could not find the requested resource", {}
    )


def test_invalid_names_are_422(core: client.CoreV1Api) -> None:
    status = refused(core.create_namespaced_pod, "default", pod("Bad_Name"))
    assert (status["code"], status["reason"], status["details"]["kind"]) == (422, "Invalid", "Pod")
    assert status["message"].startswith(
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123'
    )
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    nameless = refused(core.create_namespaced_config_map, "default", {"metadata": {}})
    assert nameless["message"] == (
        'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )
    too_long = refused(core.create_namespaced_config_map, "default", cm("a" * 254))
    assert "must be no more than 253 characters" in too_long["message"]


def test_generate_name(core: client.CoreV1Api) -> None:
    made = [core.create_namespaced_pod("default", {"metadata": {"generateName": "web-"}})]
    made.append(core.create_namespaced_pod("default", {"metadata": {"generateName": "web-"}}))
    names = {pod.metadata.name for pod in made}
    assert len(names) == 2 and all(len(name) == 9 and name[:4] == "web-" for name in names)
    assert all(c.isdigit() or c.islower() for name in names for c in name[4:])


def test_validate_callable_answers_422() -> None:
    def needs_configs(obj: dict[str, Any]) -> list[str]:
        configs = obj.get("spec", {}).get("eventConfigurations")
        return [] if configs else ["spec.eventConfigurations: Required value"]

    hooks = ResourceType(G, V, "hooks", "Hook", True, True, custom=True, validate=needs_configs)
    with APIServer([hooks]) as server:
        api = client.CustomObjectsApi(server.api_client())
        empty = hook("h", spec={})
        status = refused(api.create_namespaced_custom_object, G, V, "default", "hooks", empty)
        assert status["message"] == (
            'Hook.kagent.dev "h" is invalid: spec.eventConfigurations: Required value'
        )
        assert (status["details"]["group"], status["details"]["kind"]) == (G, "Hook")
        causes = status["details"]["causes"]
        assert [cause["message"] for cause in causes] == [
            "spec.eventConfigurations: Required value"
        ]
        created = api.create_namespaced_custom_object(G, V, "default", "hooks", hook("h"))
        where = (G, V, "default", "hooks", "h")
        assert refused(api.patch_namespaced_custom_object, *where, {"spec": None})["code"] == 422
        replace = api.replace_namespaced_custom_object
        assert refused(replace, *where, created | {"spec": {}})["code"] == 422
        assert api.get_namespaced_custom_object(*where) == created


def test_bad_requests_are_400(server: APIServer, core: client.CoreV1Api) -> None:
    elsewhere = {"metadata": {"name": "x", "namespace": "other"}}
    assert refused(core.create_namespaced_config_map, "default", elsewhere) == failure(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )
    core.create_namespaced_config_map("default", cm("x"))
    renamed = refused(core.replace_namespaced_config_map, "x", "default", cm("y"))
    assert renamed["message"] == "the name of the object (y) does not match the name on the URL (x)"
    # The typed API cannot send malformed JSON; send it on the client's own connection pool.
    answer = server.api_client().rest_client.pool_manager.request(
        "POST",
        f"{server.url}/api/v1/namespaces/default/configmaps",
        body=b'{"metadata": {',
        headers={"Content-Type": "application/json"},
    )
    assert (answer.status, json.loads(answer.data)["reason"]) == (400, "BadRequest")


# -- status subresource and patches -------------------------------------------------------------


def test_status_subresource_separation_for_hooks(custom: client.CustomObjectsApi) -> None:
    where = (G, V, "default", "hooks", "h")
    body = hook("h", status={"active": True})
    created = custom.create_namespaced_custom_object(G, V, "default", "hooks", body)
    assert "status" not in created  # status is written through /status only
    patch = {"spec": {"ignored": True}, "status": {"fired": 1}}
    on_status = custom.patch_namespaced_custom_object_status(*where, patch)
    assert (on_status["spec"], on_status["status"]) == (created["spec"], {"fired": 1})
    assert on_status["metadata"]["generation"] == 1 and rv(on_status) == rv(created) + 1
    patch = {"spec": {"paused": True}, "status": {"fired": 99}}
    on_main = custom.patch_namespaced_custom_object(*where, patch)
    assert on_main["spec"]["paused"] is True and on_main["status"] == {"fired": 1}
    assert on_main["metadata"]["generation"] == 2
    relabelled = on_main | {"status": {"fired": 5}}
    relabelled["metadata"] = on_main["metadata"] | {"labels": {"team": "a"}}
    put_main = custom.replace_namespaced_custom_object(*where, relabelled)
    assert put_main["status"] == {"fired": 1} and put_main["metadata"]["labels"] == {"team": "a"}
    assert put_main["metadata"]["generation"] == 2  # labels are not spec
    body = put_main | {"spec": {}, "status": {"fired": 2}}
    put_status = custom.replace_namespaced_custom_object_status(*where, body)
    assert put_status["spec"] == on_main["spec"] and put_status["status"] == {"fired": 2}
    assert put_status["metadata"]["generation"] == 2
    # Custom resources refuse unconditional updates, as CRD-backed types do.
    unconditional = put_status | {"metadata": {"name": "h", "namespace": "default"}}
    assert refused(custom.replace_namespaced_custom_object, *where, unconditional)["message"] == (
        'Hook.kagent.dev "h" is invalid: metadata.resourceVersion: Invalid value: 0x0: '
        "must be specified for an update"
    )


def test_status_subresource_for_pods_and_nodes(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod("web"))
    running = core.patch_namespaced_pod_status("web", "default", {"status": {"phase": "Running"}})
    assert running.status.phase == "Running"
    body = running.to_dict(serialize=True) | {"status": {"phase": "Failed"}}
    assert core.replace_namespaced_pod("web", "default", body).status.phase == "Running"
    node = core.create_node({"metadata": {"name": "n1", "namespace": "ignored"}})
    assert node.metadata.namespace is None
    ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert core.patch_node_status("n1", ready).status.conditions[0].status == "False"


def test_strategic_merge_patch_is_415_for_custom_types(
    server: APIServer, core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    where = (G, V, "default", "hooks", "h")
    custom.create_namespaced_custom_object(G, V, "default", "hooks", hook("h"))
    patch = {"spec": {"paused": True}}
    strategic = "application/strategic-merge-patch+json"
    status = refused(custom.patch_namespaced_custom_object, *where, patch, _content_type=strategic)
    assert status == failure(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
    merge = "application/merge-patch+json"
    explicit = custom.patch_namespaced_custom_object(*where, patch, _content_type=merge)
    assert explicit["spec"]["paused"] is True
    # Without _content_type, CustomObjectsApi sends merge-patch but CoreV1Api sends a dict
    # as strategic merge (which built-in types accept).
    custom.patch_namespaced_custom_object(*where, {"spec": {"x": 1}})
    core.create_namespaced_config_map("default", cm("c"))
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "v"}})
    assert [(c.status, c.content_type) for c in server.calls(verb="patch")] == [
        (415, strategic),
        (200, merge),
        (200, merge),
        (200, strategic),
    ]


def test_json_patch_and_merge_patch_null(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", cm("c", {"a": "1", "b": "2"}, k="v", old="x"))
    operations = [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "replace", "path": "/data/k", "value": "w"},
        {"op": "add", "path": "/data/new", "value": "1"},
        {"op": "remove", "path": "/data/old"},
    ]
    patched = core.patch_namespaced_config_map("c", "default", operations)
    assert patched.data == {"k": "w", "new": "1"}
    failing = [
        {"op": "test", "path": "/data/k", "value": "no"},
        {"op": "remove", "path": "/data/k"},
    ]
    assert refused(core.patch_namespaced_config_map, "c", "default", failing)["code"] == 422
    assert core.read_namespaced_config_map("c", "default") == patched  # all or nothing
    merge = "application/merge-patch+json"
    unlabel = {"metadata": {"labels": {"a": None}}}
    unlabelled = core.patch_namespaced_config_map("c", "default", unlabel, _content_type=merge)
    assert unlabelled.metadata.labels == {"b": "2"}


def test_patch_resource_version_precondition(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", cm("c"))
    stale = {"metadata": {"resourceVersion": str(rv(created) - 1)}, "data": {"k": "v"}}
    assert refused(core.patch_namespaced_config_map, "c", "default", stale)["reason"] == "Conflict"
    current = {"metadata": {"resourceVersion": str(rv(created))}, "data": {"k": "v"}}
    assert core.patch_namespaced_config_map("c", "default", current).data == {"k": "v"}


def test_delete_preconditions(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", cm("c"))
    uid, version = created.metadata.uid, created.metadata.resource_version

    def options(**preconditions: str) -> client.V1DeleteOptions:
        return client.V1DeleteOptions(preconditions=client.V1Preconditions(**preconditions))

    delete = core.delete_namespaced_config_map
    assert refused(delete, "c", "default", body=options(uid="other"))["message"] == (
        'Operation cannot be fulfilled on configmaps "c": Precondition failed: '
        f"UID in precondition: other, UID in object meta: {uid}"
    )
    wrong_version = refused(delete, "c", "default", body=options(resource_version="1"))
    assert wrong_version["reason"] == "Conflict"
    deleted = delete("c", "default", body=options(uid=uid, resource_version=version))
    assert deleted["metadata"]["uid"] == uid


# -- list and selectors -------------------------------------------------------------------------
