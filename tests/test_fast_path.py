"""What no Hook wants is answered at once, on the event loop, for no I/O (Pipeline.screen);
everything else takes the full path, and the answer is the same either way."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from khook.core.cloudevent import parse
from khook.core.outcome import Outcome
from khook.pipeline import Screened
from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.clock import FakeClock
from tests.support.cluster import (
    Kube,
    apiserver,
    cluster_function,
    cluster_settings,
    config,
    hook_doc,
    khook_requests,
    wait_until,
)
from tests.support.events import (
    HOOKS,
    apiserver_event,
    binary,
    core_event,
    oom_request,
    oom_status,
    outcome,
    pod,
    recovered,
)
from tests.support.function import FunctionServer

OUTCOME = "X-Khook-Outcome"
REASON = "X-Khook-Reason"
STARTED = core_event("Started", "Started container app", type_="Normal", name="web-1-abc12")


def post(fn: FunctionServer, obj: dict[str, Any]) -> httpx.Response:
    return fn.post(*binary(apiserver_event(obj)))


@contextmanager
def agent_held(agent: A2AAgentServer) -> Iterator[threading.Event]:
    """The agent's next call stays in flight until the event is set (or the block ends)."""
    release = threading.Event()
    agent.fail_next(Fault(0, on_arrival=lambda: release.wait(30)))
    try:
        yield release
    finally:
        release.set()


def answered_while_busy(
    fn: FunctionServer, agent: A2AAgentServer, obj: dict[str, Any]
) -> httpx.Response:
    """Post ``obj`` while the only worker thread waits for the agent (a new incident's call,
    held): what the event loop answers on its own. A request for a worker thread would wait."""
    calls = len(agent.posts())
    answers: list[httpx.Response] = []
    with agent_held(agent) as release:
        firing = threading.Thread(target=lambda: answers.append(fn.post(*oom_request())))
        firing.start()
        wait_until(lambda: len(agent.posts()) > calls, what="the agent call to start")
        quick = post(fn, obj)
        assert not answers, "the agent call is still in flight"
        release.set()
        firing.join(timeout=30)
    assert answers[0].headers[OUTCOME] == outcome(fired=1)
    assert quick.status_code == 202
    return quick


LIVE = pod(name="live-7d4b9c8f5-x2x9z", owner="live-7d4b9c8f5", container_statuses=[oom_status()])


def test_an_event_no_rule_wants_is_answered_while_every_worker_is_busy(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    quick = answered_while_busy(make_function(threads=1), agent, STARTED)
    assert quick.headers[OUTCOME] == outcome()
    assert quick.headers[REASON].startswith("no-rule; ")


def test_a_repeat_of_a_live_incident_is_answered_while_every_worker_is_busy(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    """With the store in memory, a repeat is decided on the event loop (finish_now): it is
    not queued behind an agent call that holds the only worker thread."""
    fn = make_function(threads=1, dedup="memory")
    assert post(fn, LIVE).headers[OUTCOME] == outcome(fired=1)
    assert answered_while_busy(fn, agent, LIVE).headers[OUTCOME] == outcome(duplicate=1)
    assert len(agent.posts()) == 2


def test_an_event_no_rule_wants_is_answered_here_while_the_hook_files_are_due_a_look(
    clock: FakeClock, agent: A2AAgentServer
) -> None:
    """Hook files are looked at once a second, by a worker thread: meanwhile the loop cannot
    tell which Hooks are in force, but for an object that is not healthy and no rule wants it
    does not need to (a healthy one may end an incident of a Hook: that waits for the look)."""
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "agent_url": agent.url})
    pipeline = build_pipeline(settings, clock)
    try:
        pipeline.process(parse(*binary(apiserver_event(STARTED))))  # the Hooks listed
        clock.advance(5)  # a look at the files is due
        assert pipeline.hooks.cached() is None
        answer = pipeline.screen(parse(*binary(apiserver_event(STARTED))))
        assert isinstance(answer, Outcome), "sent to a worker thread"
        assert answer.reason().header().startswith("no-rule; ")
        healthy = pipeline.screen(parse(*binary(apiserver_event(recovered(pod())))))
        assert isinstance(healthy, Screened)
    finally:
        pipeline.close()


def test_a_detection_no_hook_wants_is_answered_while_every_worker_is_busy(
    make_function: FunctionFactory,
) -> None:
    """Whatever the store (tinydb here, on disk): matching needs none, so an OOM kill in a
    namespace no Hook sees is answered on the event loop."""
    fn = make_function(threads=1)
    release = threading.Event()
    held = fn.runtime.executor().submit(release.wait, 30)  # the only worker thread, busy
    try:
        answer = fn.post(*oom_request("kube-system"))
        assert not held.done(), "answered by the worker thread, after it was let go"
    finally:
        release.set()
    assert answer.headers[OUTCOME] == outcome()
    assert answer.headers[REASON].startswith("no-hook; "), answer.headers[REASON]


@pytest.mark.parametrize("store", ["lease", "configmap"])
def test_in_cluster_a_repeat_is_decided_from_the_replicas_cache_while_workers_are_busy(
    clock: FakeClock, store: str
) -> None:
    """A replica's cache in front of the Lease or ConfigMap store decides a duplicate of a
    confirmed live incident without an API call: on the event loop, like the memory store."""
    with apiserver() as server, A2AAgentServer() as agent:
        Kube(server).apply_hook(hook_doc("default", "pods", config("oom-kill")))
        settings = cluster_settings(agent.url, dedup=store, threads=1)
        with cluster_function(server, clock, settings) as fn:
            assert post(fn, LIVE).headers[OUTCOME] == outcome(fired=1)
            quick = answered_while_busy(fn, agent, LIVE)
            assert quick.headers[OUTCOME] == outcome(duplicate=1)


def test_finish_now_leaves_what_would_call_the_agent_for_finish(
    clock: FakeClock, agent: A2AAgentServer
) -> None:
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "agent_url": agent.url})
    pipeline = build_pipeline(settings, clock)
    try:
        pipeline.hooks.current()
        sick = pod(container_statuses=[oom_status()])
        screened = pipeline.screen(parse(*binary(apiserver_event(sick))))
        assert isinstance(screened, Screened)
        left = pipeline.finish_now(screened)
        # A new incident: its claim and agent call are left for a worker thread, untouched.
        assert isinstance(left, Screened) and left.plan is not None
        assert agent.posts() == []
        assert pipeline.finish(left).counts().header() == outcome(fired=1)
        assert len(agent.posts()) == 1
        # Its repeat is answered here, and sends nothing.
        again = pipeline.screen(parse(*binary(apiserver_event(sick))))
        assert isinstance(again, Screened)
        done = pipeline.finish_now(again)
        assert isinstance(done, Outcome) and done.counts().header() == outcome(duplicate=1)
        # A healthy Pod may end the incident (its session is told): left to finish().
        healthy = pipeline.screen(parse(*binary(apiserver_event(recovered(sick)))))
        assert isinstance(healthy, Screened) and pipeline.finish_now(healthy) is healthy
        assert len(agent.posts()) == 1
    finally:
        pipeline.close()


@pytest.mark.parametrize("dedup", ["memory", "tinydb"])
def test_a_hook_file_removed_stops_acting_whatever_the_store(
    tmp_path: Path, clock: FakeClock, agent: A2AAgentServer, dedup: str
) -> None:
    """Hook files are looked at once a second: the loop's fast path (finish_now, with the
    memory store) never acts on Hooks older than that."""
    hooks = tmp_path / "hooks"
    shutil.copytree(HOOKS, hooks)
    store = "memory" if dedup == "memory" else f"tinydb:{tmp_path / 'dedup'}"
    settings = Settings.coerce({"hooks": (str(hooks),), "dedup": store, "agent_url": agent.url})
    pipeline = build_pipeline(settings, clock)
    try:
        assert "default/pod-incidents" in {h.key for h in pipeline.hooks.current().hooks}
        (hooks / "pod-incidents.yaml").unlink()
        clock.advance(5)
        answer = pipeline.process(parse(*oom_request()))
        assert answer.counts().header() == outcome(), answer.reason().header()
        assert agent.posts() == []
    finally:
        pipeline.close()


def test_a_plan_made_on_the_loop_is_made_again_if_the_hooks_changed_meanwhile(
    tmp_path: Path, clock: FakeClock, agent: A2AAgentServer
) -> None:
    hooks = tmp_path / "hooks"
    shutil.copytree(HOOKS, hooks)
    settings = Settings.coerce({"hooks": (str(hooks),), "dedup": "memory", "agent_url": agent.url})
    pipeline = build_pipeline(settings, clock)
    try:
        pipeline.hooks.current()
        screened = pipeline.screen(parse(*oom_request()))
        assert isinstance(screened, Screened)
        left = pipeline.finish_now(screened)  # planned with the Hooks as last checked
        assert isinstance(left, Screened) and left.plan is not None
        # While it waits for a worker thread, its Hook's file goes, and is seen gone.
        (hooks / "pod-incidents.yaml").unlink()
        clock.advance(5)
        assert "default/pod-incidents" not in {h.key for h in pipeline.hooks.current().hooks}
        assert pipeline.finish(left).counts().header() == outcome()
        assert agent.posts() == []
    finally:
        pipeline.close()


@pytest.mark.parametrize("namespace", ["default", "a|b"])
def test_a_healthy_pod_in_a_live_incident_still_resolves_it(
    make_function: FunctionFactory, clock: FakeClock, namespace: str
) -> None:
    """Healthy objects are most of the stream; the one that ends a known incident is not
    screened out, whatever its namespace holds ("a|b": the "|" an incident's id is joined
    with once hid the incident from the screen)."""
    fn = make_function()
    sick = pod(name="web-7d4b9c8f5-x2x9z", namespace=namespace, container_statuses=[oom_status()])
    assert post(fn, sick).headers[OUTCOME] == outcome(fired=1)
    other = recovered(pod(name="web-7d4b9c8f5-other", namespace=namespace))
    assert post(fn, other).headers[OUTCOME] == outcome(), "another pod: no incident of its own"
    answer = post(fn, recovered(sick))
    assert answer.headers[OUTCOME] != outcome(), answer.headers[REASON]


def test_a_forged_namespace_cannot_join_another_namespaces_incident(
    make_function: FunctionFactory,
) -> None:
    """Sent with KHOOK_AUTH=none, an object may name anything. The platform team's Hook sees
    both namespaces; their incidents' keys once joined to one id, and the second was counted
    as a duplicate of the first."""
    fn = make_function()
    first = pod(name="x|Pod/y", namespace="n", owner=None, container_statuses=[oom_status()])
    second = pod(name="y", namespace="n|Pod/x", owner=None, container_statuses=[oom_status()])
    assert post(fn, first).headers[OUTCOME] == outcome(fired=1)
    assert post(fn, second).headers[OUTCOME] == outcome(fired=1)


@pytest.mark.parametrize("namespace", ["shop", "a|b"])
def test_a_new_replica_resolves_a_live_incident_whatever_its_namespace(
    clock: FakeClock, namespace: str
) -> None:
    """A replica learns the live incidents every replica stored (read back by its sweep):
    their keys come from their ids, which give back the namespace as it was, "|" and all."""
    with apiserver() as server, A2AAgentServer() as agent:
        everywhere = {"namespaces": ["*"]}
        Kube(server).apply_hook(
            hook_doc("khook-system", "all", config("oom-kill"), selector=everywhere)
        )
        settings = cluster_settings(agent.url)
        sick = pod(namespace=namespace, container_statuses=[oom_status()])
        with cluster_function(server, clock, settings) as fn:
            assert post(fn, sick).headers[OUTCOME] == outcome(fired=1)
        with cluster_function(server, clock, settings) as fn:
            fn.runtime.pipeline().sweep()  # as its background sweep does, every 30 s
            answer = post(fn, recovered(sick))
            assert answer.headers[OUTCOME] == outcome(followup=1), answer.headers[REASON]


def test_an_event_no_rule_wants_costs_no_api_call(clock: FakeClock) -> None:
    """An Event about a Pod khook has not seen: its owner would be read from the API server
    if the event could matter; no rule wants it, so nothing is read."""
    with apiserver() as server, A2AAgentServer() as agent:
        Kube(server).apply_hook(hook_doc("default", "pods", config("oom-kill")))
        settings = cluster_settings(agent.url, dedup="lease")
        with cluster_function(server, clock, settings) as fn:
            start = len(khook_requests(server))
            answer = post(fn, STARTED)
            assert answer.status_code == 202 and answer.headers[OUTCOME] == outcome()
            later = [r for r in khook_requests(server)[start:] if r.verb != "watch"]
            assert Counter(f"{r.verb} {r.resource}" for r in later) == Counter()
            # A Warning the Hook wants about the same unseen Pod still reads its owner.
            crash = core_event(
                "BackOff", "Back-off restarting failed container", name="web-1-abc12"
            )
            post(fn, crash)
            reads = [r for r in khook_requests(server)[start:] if r.resource == "pods"]
            assert [r.verb for r in reads] == ["get"]
