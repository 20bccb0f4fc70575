"""The storm corpus through the served function, with the a2a-sdk agent: the same sessions as
`khook replay` finds, in memory and tinydb modes, and with three Lease-backed replicas racing
on every event of the storm against the API double.

The function's clock is moved to each event's ``ce-time`` before it is posted (as the replay's
virtual clock is), quiet incidents are swept every 5 s of recording time (as the replay does),
and a 503 is posted again, as the ApiServerSource adapter would. What counts is what the agent
received: the first message of a conversation is a session, the others are follow-ups.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from khook.replay import expand, load_expectation, open_storm, play, read_requests
from khook.settings import Settings
from tests.support import storms
from tests.support.agent import A2AAgentServer
from tests.support.clock import FakeClock
from tests.support.cluster import Kube, apiserver, cluster_function, cluster_settings
from tests.support.function import FunctionServer

STORMS = expand([storms.STORMS])
SWEEP_EVERY = timedelta(seconds=5)
AGENTS = ("kagent/k8s-agent",)


def ids(path: Path) -> str:
    return path.name


def move_to(clock: FakeClock, moment: datetime | None) -> None:
    if moment is not None and moment > clock.now():
        clock.advance(moment - clock.now())


def deliver(fn: FunctionServer, headers: dict[str, str], body: bytes) -> None:
    for _ in range(6):  # the adapter: 5 retries of a 503
        if fn.post(headers, body).status_code != 503:
            return


def conversations(agent: A2AAgentServer) -> tuple[int, int]:
    """(sessions, follow-ups) the agent received."""
    messages = agent.messages()
    followups = sum(1 for m in messages if m.continued)
    return len(messages) - followups, followups


def play_through(servers: list[FunctionServer], clock: FakeClock, storm: Path) -> None:
    swept = clock.now()
    for request in read_requests(open_storm(storm).recording):
        move_to(clock, request.time)
        if clock.now() - swept >= SWEEP_EVERY:
            for fn in servers:
                assert fn.pipeline is not None
                fn.pipeline.sweep()
            swept = clock.now()
        headers, body = request.headers, request.body
        if len(servers) == 1:
            deliver(servers[0], headers, body)
            continue
        threads = [threading.Thread(target=deliver, args=(fn, headers, body)) for fn in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for fn in servers:
        assert fn.pipeline is not None
        fn.pipeline.sweep()


def expected(storm: Path) -> tuple[int, Any]:
    expectation = load_expectation(storm / "expected.yaml")
    return len(expectation.sessions), expectation.followups


def start_of(storm: Path) -> datetime:
    first = next(read_requests(open_storm(storm).recording))
    assert first.time is not None
    return first.time


@pytest.fixture
def agent() -> Iterator[A2AAgentServer]:
    with A2AAgentServer(agents=AGENTS) as server:
        yield server


@pytest.mark.parametrize("dedup", ["memory", "tinydb"])
@pytest.mark.parametrize("storm", STORMS, ids=ids)
def test_a_storm_through_the_served_function(
    storm: Path, dedup: str, agent: A2AAgentServer, tmp_path: Path
) -> None:
    shape = open_storm(storm)
    settings = Settings.coerce(
        {
            "hooks": tuple(str(p) for p in shape.hooks),
            "rules": tuple(str(p) for p in shape.rules),
            "dedup": "memory" if dedup == "memory" else f"tinydb:{tmp_path / 'dedup'}",
            "agent_url": agent.url,
            "agent_attempts": 1,
        }
    )
    clock = FakeClock(start_of(storm))
    with FunctionServer(settings, clock) as fn:
        play_through([fn], clock, storm)
    sessions, followups = conversations(agent)
    replayed = play(shape)
    want_sessions, want_followups = expected(storm)
    assert sessions == want_sessions == replayed.sessions
    assert want_followups.holds(followups), (followups, want_followups)
    assert followups == replayed.followups, "the served function and the replay agree"


def apply_hooks(kube: Kube, hooks: list[Path]) -> None:
    for path in hooks:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Hook":
                kube.apply_hook(doc)


@pytest.mark.parametrize("storm", STORMS, ids=ids)
def test_a_storm_with_three_lease_replicas_racing(storm: Path, agent: A2AAgentServer) -> None:
    shape = open_storm(storm)
    clock = FakeClock(start_of(storm))
    with apiserver() as server, ExitStack() as stack:
        kube = Kube(server)
        apply_hooks(kube, list(shape.hooks))
        replicas = [
            stack.enter_context(
                cluster_function(
                    server,
                    clock,
                    cluster_settings(
                        agent.url,
                        pod_name=f"khook-{i}",
                        rules=tuple(str(p) for p in shape.rules),
                    ),
                )
            )
            for i in range(3)
        ]
        play_through(replicas, clock, storm)
    sessions, followups = conversations(agent)
    want_sessions, want_followups = expected(storm)
    assert sessions == want_sessions
    assert want_followups.holds(followups), (followups, want_followups)


def test_the_storm_corpus_has_what_the_issue_asks() -> None:
    names = {path.name for path in STORMS}
    assert len(names) >= 8
    assert {
        "registry-429",
        "oom-crashloop",
        "rollout-warmup",
        "crashloop-45s",
        "node-lost",
    } <= names


def test_the_agent_conversation_of_an_incident_is_one_context(agent: A2AAgentServer) -> None:
    storm = next(path for path in STORMS if path.name == "liveness-hang")
    shape = open_storm(storm)
    settings = Settings.coerce(
        {"hooks": tuple(str(p) for p in shape.hooks), "dedup": "memory", "agent_url": agent.url}
    )
    clock = FakeClock(start_of(storm))
    with FunctionServer(settings, clock) as fn:
        play_through([fn], clock, storm)
    messages = agent.messages()
    (first,) = [m for m in messages if not m.continued]
    later = [m for m in messages if m.continued]
    assert later, "the session heard of the escalation"
    assert all(m.context_id == first.context_id for m in later)
    assert any("the cause is now pod-restart" in m.text for m in later)
