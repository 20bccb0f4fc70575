"""Cluster mode against the API double: Hooks from the API server, dedup shared through
Leases or ConfigMaps, Reference mode, owners, status, Kubernetes Events and resolution."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import (
    STATE_NAMESPACE,
    Kube,
    apiserver,
    cluster_pipeline,
    cluster_settings,
    config,
    hook_doc,
    incident_leases,
    khook_requests,
    wait_until,
)
from tests.support.events import (
    apiserver_event,
    binary,
    captured,
    core_event,
    envelope,
    oom_status,
    outcome,
    pod,
    recovered,
)
from tests.support.function import FunctionServer

OUTCOME = "X-Khook-Outcome"
FIRED = outcome(fired=1)
DUPLICATE = outcome(duplicate=1)
HELD = outcome(held=1)
NOTHING = outcome()


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


@pytest.fixture
def kube(server: APIServer) -> Kube:
    return Kube(server)


@pytest.fixture
def make_khook(
    server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> Iterator[FunctionFactory]:
    started: list[FunctionServer] = []

    def make(*, synced: bool = True, **overrides: Any) -> FunctionServer:
        settings = cluster_settings(agent.url, **overrides)
        fn = FunctionServer(settings, clock, lambda: cluster_pipeline(server, clock, settings))
        started.append(fn.__enter__())
        pipeline = fn.runtime.pipeline()
        if synced:
            wait_until(lambda: pipeline.hooks.current(wait=False).synced, what="the Hook list")
        return fn

    yield make
    for fn in started:
        fn.__exit__(None, None, None)


def oom_pod(name: str = "web-7d4b9c8f5-x2x9z", **kw: Any) -> dict[str, Any]:
    return pod(name=name, container_statuses=[oom_status()], **kw)


def post(fn: FunctionServer, obj: dict[str, Any], **attrs: Any) -> Any:
    return fn.post(*binary(apiserver_event(obj, **attrs)))


def calls(server: APIServer, since: int) -> Counter[str]:
    return Counter(
        f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}"
        for r in khook_requests(server)[since:]
        if r.verb != "watch"
    )


def khook_count(server: APIServer) -> int:
    return len(khook_requests(server))


def has_hooks(fn: FunctionServer, *keys: str) -> bool:
    assert fn.pipeline is not None
    current = {h.key: h for h in fn.pipeline.hooks.current().hooks}
    return all(k in current for k in keys)


# ---- Hooks from the cluster ----------------------------------------------------------------


def test_hooks_take_effect_without_a_restart(make_khook: FunctionFactory, kube: Kube) -> None:
    fn = make_khook()
    assert post(fn, oom_pod()).headers[OUTCOME] == NOTHING
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    wait_until(lambda: has_hooks(fn, "default/pods"), what="the new Hook")
    assert post(fn, oom_pod()).headers[OUTCOME] == FIRED

    kube.apply_hook(hook_doc("default", "pods", config("pod-restart")))
    assert fn.pipeline is not None
    wait_until(
        lambda: fn.pipeline.hooks.current().hooks[0].event_types == ["pod-restart"],
        what="the changed Hook",
    )
    other = oom_pod("db-0", owner=None)
    assert post(fn, other).headers[OUTCOME] == NOTHING

    kube.delete_hook("default", "pods")
    wait_until(lambda: not fn.pipeline.hooks.current().hooks, what="the Hook to go")
    crash = core_event("BackOff", "Back-off restarting failed container")
    assert post(fn, crash).headers[OUTCOME] == NOTHING


def test_an_invalid_hook_is_not_ready_and_does_not_stop_the_others(
    make_khook: FunctionFactory, kube: Kube, agent: A2AAgentServer
) -> None:
    kube.apply_hook(hook_doc("default", "good", config("oom-kill")))
    kube.apply_hook(
        hook_doc("default", "bad", config("disk-full"), config("pod-restart", prompt="{{.Oops}}"))
    )
    fn = make_khook()
    assert post(fn, oom_pod()).headers[OUTCOME] == FIRED
    assert fn.pipeline is not None
    fn.pipeline.flush()
    bad = kube.ready("default", "bad")
    assert bad is not None and (bad["status"], bad["reason"]) == ("False", "InvalidConfiguration")
    assert "'disk-full' is not a known event type" in bad["message"]
    assert "{{.Oops}}" in bad["message"]
    good = kube.ready("default", "good")
    assert good is not None and (good["status"], good["reason"]) == ("True", "HookConfigured")
    assert kube.hook("default", "good")["status"]["observedGeneration"] == 1


def test_the_api_server_rejects_what_the_crd_forbids(kube: Kube) -> None:
    import kubernetes

    with pytest.raises(kubernetes.client.ApiException) as err:
        kube.apply_hook(hook_doc("default", "x", {"eventType": "oom-kill", "prompt": ""}))
    assert err.value.status == 422


def test_the_first_event_after_a_cold_start_waits_for_the_hooks(
    make_khook: FunctionFactory, kube: Kube
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook(synced=False)  # the first request races the first list, and waits for it
    assert post(fn, oom_pod()).headers[OUTCOME] == FIRED


# ---- dedup on the API: calls per event, restarts, failures ---------------------------------


@pytest.mark.parametrize("store", ["lease", "configmap"])
def test_a_known_duplicate_costs_no_api_call(
    make_khook: FunctionFactory, kube: Kube, server: APIServer, store: str
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook(dedup=store)
    start = khook_count(server)
    assert post(fn, oom_pod()).headers[OUTCOME] == FIRED
    fired_calls = calls(server, start)
    # The incident's claim and confirmation, and the Hook's session budget for the minute
    # (the storm breaker: one more record).
    if store == "lease":
        assert fired_calls == Counter({"create leases": 2, "get leases": 1, "update leases": 1})
    else:
        assert fired_calls == Counter(
            {"get configmaps": 3, "create configmaps": 1, "update configmaps": 2}
        )
    start = khook_count(server)
    for minute in range(1, 4):
        other = oom_pod(f"web-7d4b9c8f5-{minute}aaaa")
        assert post(fn, other).headers[OUTCOME] == DUPLICATE
    assert calls(server, start) == Counter(), "decided from the replica's cache"


def test_a_restart_inside_the_window_does_not_refire(
    server: APIServer, kube: Kube, clock: FakeClock, agent: A2AAgentServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    settings = cluster_settings(agent.url)
    first = cluster_pipeline(server, clock, settings)
    event = apiserver_event(oom_pod())
    assert first.process(envelope(event)).counts().fired == 1
    first.close()
    clock.advance(timedelta(minutes=9))
    second = cluster_pipeline(server, clock, settings)  # a new replica, nothing in memory
    later = apiserver_event(oom_pod("web-7d4b9c8f5-other"), time=clock.now().isoformat())
    assert second.process(envelope(later)).counts().duplicate == 1
    clock.advance(timedelta(minutes=10))  # quiet for the cooldown since the last sighting
    again = pod(container_statuses=[oom_status(finished=clock.now().isoformat(), restarts=2)])
    assert (
        second.process(envelope(apiserver_event(again, time=clock.now().isoformat())))
        .counts()
        .fired
        == 1
    )
    second.close()
    assert len(agent.messages()) == 2


@pytest.mark.parametrize("store", ["lease", "configmap"])
def test_a_failed_call_releases_the_claim_and_the_redelivery_fires(
    make_khook: FunctionFactory, kube: Kube, agent: A2AAgentServer, server: APIServer, store: str
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook(dedup=store)
    agent.fail_next(Fault(503))
    assert post(fn, oom_pod()).status_code == 503
    if store == "lease":
        assert incident_leases(kube) == []
    assert post(fn, oom_pod()).headers[OUTCOME] == FIRED
    assert len(agent.messages()) == 1
    assert fn.pipeline is not None
    fn.pipeline.flush()
    reasons = [(e.reason, e.type) for e in kube.events_on("default", "pods")]
    assert ("AgentCallFailure", "Warning") in reasons
    assert ("AgentCallSuccess", "Normal") in reasons


def test_the_lease_carries_the_record(make_khook: FunctionFactory, kube: Kube) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    (lease,) = incident_leases(kube)
    assert lease.metadata.name.startswith("khook-")
    labels = lease.metadata.labels
    assert labels["khook.dev/hook-namespace"] == "default"
    assert labels["khook.dev/hook-name"] == "pods"
    assert labels["khook.dev/event-type"] == "oom-kill"
    assert lease.spec.holder_identity == "khook-0"
    assert lease.spec.lease_duration_seconds == 600
    notes = lease.metadata.annotations
    assert notes["khook.dev/count"] == "1" and notes["khook.dev/state"] == "firing"
    assert notes["khook.dev/task-id"] and notes["khook.dev/first-seen"]
    assert notes["khook.dev/key"] == "default/pods|oom-kill|default|Deployment/web"


# ---- Reference mode and owners -------------------------------------------------------------


def test_reference_mode_reads_the_object(
    make_khook: FunctionFactory, kube: Kube, server: APIServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    body = json.loads(captured("pod-update-oomkilled")[1])
    kube.put_pod(body)
    fn = make_khook()
    start = khook_count(server)
    r = fn.post(*captured("reference-mode-add"))
    assert (r.status_code, r.headers["X-Khook-Event-Type"]) == (202, "oom-kill")
    assert r.headers[OUTCOME] == FIRED
    assert calls(server, start)["get pods"] == 1


def test_reference_to_a_deleted_object_is_ignored(make_khook: FunctionFactory) -> None:
    r = make_khook().post(*captured("reference-mode-add"))
    assert (r.status_code, r.headers["X-Khook-Event-Type"]) == (202, "none")


def test_events_about_pods_of_one_deployment_are_one_incident(
    make_khook: FunctionFactory, kube: Kube, agent: A2AAgentServer, server: APIServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("pod-restart")))
    names = ["web-7d4b9c8f5-aaaaa", "web-7d4b9c8f5-bbbbb", "web-7d4b9c8f5-ccccc"]
    for name in names:
        kube.put_pod(pod(name=name))
    fn = make_khook()
    outcomes = [
        post(
            fn, core_event("BackOff", "Back-off restarting failed container", name=n, uid=f"ev-{n}")
        ).headers[OUTCOME]
        for n in names
    ]
    # Each pod crashed once, a blip; three pods of one Deployment failing at once is not.
    assert outcomes == [HELD, HELD, FIRED]
    assert len(agent.messages()) == 1
    assert 'owner: "Deployment/web"' in agent.messages()[0].text
    assert "affectedTotal: 3" in agent.messages()[0].text
    assert fn.pipeline is not None
    fn.pipeline.flush()
    (held,) = [e for e in kube.events_on("default", "pods") if e.reason == "IncidentHeld"]
    assert held.count == 2
    assert held.message == "Held 2 signal(s) of pod-restart for Deployment/web: no session yet"


# ---- status, Kubernetes Events, resolution -------------------------------------------------


def test_status_and_events_after_firing_and_duplicates(
    make_khook: FunctionFactory, kube: Kube, server: APIServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    post(fn, oom_pod("web-7d4b9c8f5-second"))
    post(fn, oom_pod("web-7d4b9c8f5-third"))
    assert fn.pipeline is not None
    start = khook_count(server)
    fn.pipeline.flush()
    status = kube.hook("default", "pods")["status"]
    (active,) = status["activeEvents"]
    assert active["eventType"] == "oom-kill" and active["status"] == "firing"
    assert active["resourceName"] == "web-7d4b9c8f5-x2x9z"
    assert active["group"] == "Deployment/web" and active["count"] == 3
    assert active["taskId"]
    assert status["lastUpdated"] and status["observedGeneration"] == 1
    events = {e.reason: e for e in kube.events_on("default", "pods")}
    assert {"EventFiring", "AgentCallSuccess", "DuplicateEventIgnored"} <= set(events)
    assert events["DuplicateEventIgnored"].count == 2
    assert events["EventFiring"].source.component == "khook"
    assert events["EventFiring"].reporting_component == "khook"
    flushed = calls(server, start)
    assert flushed["patch hooks/status"] == 1
    assert flushed["create events"] == 3
    # More duplicates: the aggregated Event's count grows; no new Event object.
    post(fn, oom_pod("web-7d4b9c8f5-fourth"))
    fn.pipeline.flush()
    dups = [e for e in kube.events_on("default", "pods") if e.reason == "DuplicateEventIgnored"]
    assert len(dups) == 1 and dups[0].count == 3


def test_an_incident_resolves_when_its_window_passes(
    make_khook: FunctionFactory, kube: Kube, clock: FakeClock
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    assert fn.pipeline is not None
    fn.pipeline.flush()
    clock.advance(timedelta(minutes=10))
    fn.pipeline.sweep()  # in service every 30 s: the window passed, the incident is over
    status_writer = fn.pipeline.recorder.status  # type: ignore[attr-defined]
    status_writer.recheck()
    fn.pipeline.flush()
    (active,) = kube.hook("default", "pods")["status"]["activeEvents"]
    assert active["status"] == "resolved"
    fn.pipeline.flush()
    assert "EventResolved" in {e.reason for e in kube.events_on("default", "pods")}


def test_an_incident_resolves_early_when_the_object_is_healthy(
    make_khook: FunctionFactory, kube: Kube, agent: A2AAgentServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    healthy = recovered(oom_pod())
    # The session is told (a follow-up into its conversation).
    assert post(fn, healthy).headers[OUTCOME] == NOTHING.replace("followup=0", "followup=1")
    first, resolution = agent.messages()
    assert resolution.context_id == first.context_id and resolution.text.startswith("Resolved")
    assert fn.pipeline is not None
    fn.pipeline.flush()
    (active,) = kube.hook("default", "pods")["status"]["activeEvents"]
    assert active["status"] == "resolved"
    assert "EventResolved" in {e.reason for e in kube.events_on("default", "pods")}


def resolved_events(kube: Kube) -> int:
    return sum(e.reason == "EventResolved" for e in kube.events_on("default", "pods"))


def test_an_early_resolution_is_announced_once(
    make_khook: FunctionFactory, kube: Kube, clock: FakeClock
) -> None:
    # Before: the recorder announced the healthy Pod, and the status writer, which had
    # written the incident as firing, announced the change it saw on its next write.
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    assert fn.pipeline is not None
    fn.pipeline.flush()
    healthy = recovered(oom_pod())
    post(fn, healthy)
    fn.pipeline.flush()
    clock.advance(timedelta(minutes=11))
    fn.pipeline.sweep()
    fn.pipeline.recorder.status.recheck()  # type: ignore[attr-defined]
    fn.pipeline.flush()
    assert resolved_events(kube) == 1


def test_a_window_that_passes_is_announced_once_by_all_replicas(
    make_khook: FunctionFactory, kube: Kube, clock: FakeClock
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    replicas = [make_khook(pod_name=f"khook-{i}") for i in range(3)]
    post(replicas[0], oom_pod())
    for i, fn in enumerate(replicas[1:]):
        post(fn, oom_pod(f"web-7d4b9c8f5-other{i}"))  # duplicates: every replica knows it
    for fn in replicas:
        assert fn.pipeline is not None
        fn.pipeline.flush()
    clock.advance(timedelta(minutes=11))
    for fn in replicas:
        assert fn.pipeline is not None
        fn.pipeline.sweep()  # every replica sweeps; one store write wins, one announces
        fn.pipeline.recorder.status.recheck()  # type: ignore[attr-defined]
        fn.pipeline.recorder.status.touched("default/pods")  # type: ignore[attr-defined]
        fn.pipeline.flush()
    assert resolved_events(kube) == 1
    (active,) = kube.hook("default", "pods")["status"]["activeEvents"]
    assert active["status"] == "resolved"


def test_a_failing_agent_makes_its_hooks_not_ready(
    make_khook: FunctionFactory, kube: Kube, agent: A2AAgentServer
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    agent.fail_next(*[Fault(503)] * 5)
    for i in range(5):
        assert post(fn, oom_pod(f"p-{i}", owner=f"rs-{i}")).status_code == 503
    assert fn.pipeline is not None
    fn.pipeline.flush()
    ready = kube.ready("default", "pods")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "AgentUnavailable")
    assert "kagent/k8s-agent" in ready["message"]


def test_settings_for_the_cluster() -> None:
    settings = Settings.from_env(
        {"KHOOK_HOOKS": "cluster", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "khook-abc"}
    )
    assert settings.hooks_from_cluster and settings.hooks == ()
    assert settings.effective_dedup == "lease"
    assert settings.identity == "khook-abc"
    local = Settings.from_env({})
    assert local.effective_dedup.startswith("tinydb:") and not local.uses_cluster


@pytest.mark.parametrize("wanted", [True, False])
def test_an_event_before_the_hooks_could_be_listed_is_redelivered_not_lost(
    clock: FakeClock, agent: A2AAgentServer, wanted: bool
) -> None:
    """An OOM kill, or an Event no rule wants (answered on the event loop once the Hooks were
    listed, never before: the answer waits for them)."""
    event = oom_pod() if wanted else core_event("Started", "Started", type_="Normal")
    with apiserver() as server:
        api = server.api_client()
    # The API server is gone: the Hook list cannot come.
    settings = cluster_settings(agent.url, cold_start_wait=0.2)
    pipeline = build_pipeline(settings, clock, api=api, background=False)
    try:
        fn = FunctionServer(settings, clock, lambda: pipeline).__enter__()
        try:
            r = post(fn, event)
            assert r.status_code == 503
            assert "not been listed" in r.json()["error"]
            assert fn.get("/readyz").status_code == 503
        finally:
            fn.__exit__(None, None, None)
    finally:
        pipeline.close()


def test_damage_the_store_repaired_shows_on_the_hooks(
    make_khook: FunctionFactory, kube: Kube, clock: FakeClock
) -> None:
    kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
    fn = make_khook()
    post(fn, oom_pod())
    assert fn.pipeline is not None
    fn.pipeline.flush()
    (lease,) = incident_leases(kube)
    lease.metadata.annotations["khook.dev/count"] = "1e999"
    kube.leases.replace_namespaced_lease(lease.metadata.name, STATE_NAMESPACE, lease)
    clock.advance(timedelta(minutes=11))  # past the window: the next firing reads the lease
    assert post(fn, oom_pod("web-7d4b9c8f5-other")).headers[OUTCOME] == FIRED
    fn.pipeline.flush()
    ready = kube.ready("default", "pods")
    assert ready is not None and ready["status"] == "True"
    assert "dedup store" in ready["message"] and "damaged record" in ready["message"]
