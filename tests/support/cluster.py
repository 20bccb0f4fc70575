"""khook against the in-repo API double: the CRD's schema enforced like a real server would,
and every request khook makes checked against config/rbac/."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar

import jsonschema
import kubernetes
import yaml

from khook.clock import Clock
from khook.pipeline import Pipeline
from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.support.apiserver import DEFAULT_RESOURCES, APIServer, RecordedRequest
from tests.support.events import ROOT
from tests.support.rbac import grants, ungranted

STATE_NAMESPACE = "khook-system"
SOURCE_RBAC = ROOT / "sources" / "base"
_CRD = yaml.safe_load((ROOT / "config" / "crd" / "hooks.kagent.dev.yaml").read_text())
_SCHEMA = jsonschema.Draft7Validator(_CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

T = TypeVar("T")


def validate_hook(obj: dict[str, Any]) -> list[str]:
    """What the API server's CRD validation answers with 422."""
    return [f"{'.'.join(map(str, e.path))}: {e.message}" for e in _SCHEMA.iter_errors(obj)]


RESOURCES = tuple(
    replace(r, validate=validate_hook) if r.plural == "hooks" else r for r in DEFAULT_RESOURCES
)


def khook_requests(server: APIServer) -> list[RecordedRequest]:
    return [r for r in server.requests if r.user_agent.startswith("khook/")]


@contextmanager
def apiserver() -> Iterator[APIServer]:
    with APIServer(RESOURCES, bookmark_interval=0.5) as server:
        yield server
        missing = ungranted(khook_requests(server))
        assert not missing, f"khook called what config/rbac/ does not grant: {missing}"
        source = [r for r in server.requests if r.user_agent.startswith("khook-source/")]
        missing = ungranted(source, grants(SOURCE_RBAC, ("khook-system", "khook-source")))
        assert not missing, f"khook source called what sources/ does not grant: {missing}"


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll a condition that another thread (the Hook watch) makes true; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def cluster_settings(agent_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hooks_from_cluster": True,
        "dedup": "lease",
        "state_namespace": STATE_NAMESPACE,
        "agent_url": agent_url,
        "agent_attempts": 1,
        "pod_name": "khook-0",
    }
    values.update(overrides)
    return Settings.coerce(values)


def cluster_pipeline(server: APIServer, clock: Clock, settings: Settings) -> Pipeline:
    """A pipeline whose background writers write only when flushed (the test decides)."""
    return build_pipeline(settings, clock, api=server.api_client(), background=False)


class Kube:
    """What a test does to the cluster, through the official client (like kubectl)."""

    def __init__(self, server: APIServer) -> None:
        api = server.api_client()
        self.core = kubernetes.client.CoreV1Api(api)
        self.objects = kubernetes.client.CustomObjectsApi(api)
        self.leases = kubernetes.client.CoordinationV1Api(api)

    def apply_hook(self, doc: dict[str, Any]) -> dict[str, Any]:
        ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
        try:
            current = self.hook(ns, name)
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            return self.objects.create_namespaced_custom_object(  # type: ignore[no-any-return]
                "kagent.dev", "v1alpha2", ns, "hooks", doc
            )
        doc = {
            **doc,
            "metadata": {
                **doc["metadata"],
                "resourceVersion": current["metadata"]["resourceVersion"],
            },
        }
        return self.objects.replace_namespaced_custom_object(  # type: ignore[no-any-return]
            "kagent.dev", "v1alpha2", ns, "hooks", name, doc
        )

    def hook(self, namespace: str, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(  # type: ignore[no-any-return]
            "kagent.dev", "v1alpha2", namespace, "hooks", name
        )

    def delete_hook(self, namespace: str, name: str) -> None:
        self.objects.delete_namespaced_custom_object(
            "kagent.dev", "v1alpha2", namespace, "hooks", name
        )

    def ready(self, namespace: str, name: str) -> dict[str, Any] | None:
        for cond in self.hook(namespace, name).get("status", {}).get("conditions", []):
            if cond["type"] == "Ready":
                return cond  # type: ignore[no-any-return]
        return None

    def events_on(self, namespace: str, name: str) -> list[Any]:
        found = self.core.list_namespaced_event(namespace)
        return [
            e
            for e in found.items
            if e.involved_object.kind == "Hook" and e.involved_object.name == name
        ]

    def put_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Create or update a Pod, status included (the status subresource, as kubelet does)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        body = {k: v for k, v in pod.items() if k != "status"}
        server_set = ("resourceVersion", "uid", "creationTimestamp", "managedFields")
        body["metadata"] = {k: v for k, v in pod["metadata"].items() if k not in server_set}
        # Raw responses: test pods are minimal, and the typed models would reject them.
        try:
            self.core.create_namespaced_pod(ns, body, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
        response = self.core.patch_namespaced_pod_status(
            name, ns, {"status": pod.get("status", {})}, _preload_content=False
        )
        return json.loads(response.data)  # type: ignore[no-any-return]


def hook_doc(namespace: str, name: str, *configs: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"eventConfigurations": list(configs), **spec},
    }


def config(event_type: str, agent: str = "k8s-agent", **extra: Any) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "agentRef": {"name": agent, "namespace": "kagent"},
        "prompt": f"{event_type} on {{{{.ResourceName}}}}",
        **extra,
    }


@contextmanager
def cluster_function(server: APIServer, clock: Clock, settings: Settings) -> Iterator[Any]:
    """The function on a real port, in cluster mode against ``server``, its Hooks listed."""
    from tests.support.function import FunctionServer

    with FunctionServer(settings, clock, lambda: cluster_pipeline(server, clock, settings)) as fn:
        pipeline = fn.runtime.pipeline()
        wait_until(lambda: pipeline.hooks.current(wait=False).synced, 60, "the Hook list")
        yield fn


def incident_leases(kube: Kube) -> list[Any]:
    """The Leases of incidents (not the storm breaker's records)."""
    leases = kube.leases.list_namespaced_lease(STATE_NAMESPACE).items
    return [
        lease
        for lease in leases
        if not (lease.metadata.labels or {}).get("khook.dev/event-type", "").startswith("khook-")
    ]
