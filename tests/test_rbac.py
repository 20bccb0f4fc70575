"""config/rbac/ grants exactly what khook calls: every call is granted (checked after every
cluster test), and every grant is used by some feature (checked here, all features at once)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from khook.core.events import Envelope
from tests.support.agent import A2AAgentServer, Fault
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import (
    Kube,
    apiserver,
    cluster_pipeline,
    cluster_settings,
    config,
    hook_doc,
    khook_requests,
    wait_until,
)
from tests.support.events import apiserver_event, envelope, oom_status, pod, sample_object
from tests.support.rbac import grants, needed


def reference(kind: str, name: str, namespace: str = "") -> Envelope:
    return Envelope(
        {"type": "dev.knative.apiserver.ref.update", "source": "s", "id": "1"},
        {"apiVersion": "v1", "kind": kind, "name": name, "namespace": namespace},
    )


def exercise(server: APIServer, clock: FakeClock, agent: A2AAgentServer, store: str) -> None:
    kube = Kube(server)
    sender = "system:serviceaccount:khook-system:khook-oidc-sources.knative.dev-apiserversource"
    settings = cluster_settings(
        agent.url, dedup=store, auth="oidc", auth_audience="khook", auth_senders=(sender,)
    )
    pipeline = cluster_pipeline(server, clock, settings)
    wait_until(lambda: pipeline.hooks.current(wait=False).synced)
    token = server.issuer.token(sender, "khook", now=clock.now())
    assert pipeline.authenticator.authenticate({"authorization": f"Bearer {token}"}).subject

    def oom(name: str, owner: str) -> Envelope:
        return envelope(
            apiserver_event(pod(name=name, owner=owner, container_statuses=[oom_status()]))
        )

    assert pipeline.process(oom("web-1", "web-rs")).counts().fired == 1
    assert pipeline.process(oom("web-2", "web-rs")).counts().duplicate == 1
    pipeline.flush()
    pipeline.process(oom("web-3", "web-rs"))
    pipeline.flush()  # the aggregated duplicate Event is patched
    agent.fail_next(Fault(503))
    assert pipeline.process(oom("db-1", "db-rs")).retryable  # claimed, then released
    kube.put_pod(pod(name="ref-pod", container_statuses=[oom_status()]))
    kube.core.create_node({"metadata": {"name": "worker-9"}})
    event = sample_object("pod-restart-backoff-event")
    event["metadata"] = {"name": "ev-1", "namespace": "default"}
    kube.core.create_namespaced_event("default", event)
    for ref in (
        reference("Pod", "ref-pod", "default"),
        reference("Node", "worker-9"),
        reference("Event", "ev-1", "default"),
    ):
        pipeline.process(ref)
    clock.advance(timedelta(hours=2))
    pipeline.dedup.store.prune(settings.max_signal_age)
    pipeline.close()


def test_every_grant_is_used_and_every_call_is_granted(
    clock: FakeClock, agent: A2AAgentServer
) -> None:
    used: set[tuple[str, str, str]] = set()
    for store in ("lease", "configmap"):
        with apiserver() as server:
            Kube(server).apply_hook(
                hook_doc("default", "pods", config("oom-kill"), config("pod-restart"))
            )
            exercise(server, clock, agent, store)
            used |= {needed(r)[:3] for r in khook_requests(server)}
    granted = {(g.api_group, g.resource, g.verb) for g in grants()}
    assert used == granted, {"unused grants": granted - used, "ungranted calls": used - granted}


def test_state_grants_are_confined_to_the_state_namespace() -> None:
    scoped: dict[str, Any] = {g.resource: g.namespace for g in grants()}
    assert scoped["leases"] == "khook-system"
    assert scoped["configmaps"] == "khook-system"
    assert scoped["hooks"] is None and scoped["pods"] is None
