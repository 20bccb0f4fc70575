"""The fault matrix: what khook answers when the agent or a replica fails, and what the sender's
redelivery then does. For each fault: no incident is lost (a fault a retry can fix answers 503,
and the redelivery fires) and no incident is called twice (the agent's executor receives one
message, and a repeated attempt carries the same message id)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import (
    Kube,
    apiserver,
    cluster_function,
    cluster_settings,
    config,
    hook_doc,
    wait_until,
)
from tests.support.events import HOOKS, ROOT, oom_request, outcome
from tests.test_cli import KHOOK

OUTCOME = "X-Khook-Outcome"
FIRED = outcome(fired=1)
FAILED = outcome(failed=1)


@dataclass(frozen=True)
class Case:
    faults: tuple[Fault, ...]
    status: int  # khook's answer to the first delivery
    retry_after: str | None  # its Retry-After, when it asks for a redelivery


CASES = {
    "5xx": Case((Fault(502),), 503, None),
    "503 with Retry-After": Case((Fault(503, {"Retry-After": "7"}),), 503, "7"),
    "429 with a huge Retry-After": Case((Fault(429, {"Retry-After": "999999"}),), 503, "300"),
    "408": Case((Fault(408),), 503, None),
    "no answer in time": Case((Fault(503, delay=3.0),), 503, None),
    "JSON-RPC internal error": Case(
        (
            Fault(
                200,
                {"Content-Type": "application/json"},
                body=b'{"jsonrpc":"2.0","id":"1","error":{"code":-32603,"message":"busy"}}',
            ),
        ),
        503,
        None,
    ),
    # Permanent: a retry cannot fix it, so khook says failed (202) and does not ask for one.
    "404 (no such agent)": Case((Fault(404),), 202, None),
    "JSON-RPC invalid params": Case(
        (
            Fault(
                200,
                {"Content-Type": "application/json"},
                body=b'{"jsonrpc":"2.0","id":"1","error":{"code":-32602,"message":"bad"}}',
            ),
        ),
        202,
        None,
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_agent_faults(case: str, make_function: FunctionFactory, agent: A2AAgentServer) -> None:
    expected = CASES[case]
    fn = make_function(dedup="memory", agent_attempts=1, agent_timeout=1.0)
    agent.fail_next(*expected.faults)
    first = fn.post(*oom_request())
    assert first.status_code == expected.status, first.text
    assert first.headers.get("Retry-After") == expected.retry_after
    if expected.status == 202:
        assert first.headers[OUTCOME] == FAILED
    # The sender's redelivery (Knative retries the 503s; after a 202 failed, the next report of
    # the same problem, as here): the claim was released, so it fires, once.
    second = fn.post(*oom_request())
    assert (second.status_code, second.headers[OUTCOME]) == (202, FIRED)
    assert len(agent.messages()) == 1


def test_an_agent_that_refuses_connections_then_comes_back(make_function: FunctionFactory) -> None:
    late = A2AAgentServer(agents=("kagent/k8s-agent",))  # bound, not listening yet: refused
    fn = make_function(dedup="memory", agent_attempts=1, agent_url=late.url)
    refused = fn.post(*oom_request())
    assert refused.status_code == 503
    assert late.url.removeprefix("http://") in refused.json()["error"], "names what it tried"
    with late:
        again = fn.post(*oom_request())
        assert again.headers[OUTCOME] == FIRED
        assert len(late.messages()) == 1


# ---- a replica killed between its claim and its agent call --------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def replica(tmp_path: Path, agent: A2AAgentServer) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(agent_timeout: str) -> str:
        port = _free_port()
        env = {
            **os.environ,
            "KHOOK_AGENT_TIMEOUT": agent_timeout,
            "KHOOK_AGENT_ATTEMPTS": "1",
            "KHOOK_RENDER_TIMEOUT": "1s",
        }
        argv = [KHOOK, "serve", "--host", "127.0.0.1", "--port", str(port), "--hooks", str(HOOKS)]
        argv += ["--dedup", f"tinydb:{tmp_path}/dedup", "--agent-url", agent.url]
        # Its own session, so the whole process group (gunicorn and its worker) can be killed.
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "khook serve did not start"
            time.sleep(0.1)

    start.kill = lambda: os.killpg(started[0].pid, signal.SIGKILL)  # type: ignore[attr-defined]
    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_replica_killed_between_claim_and_call_loses_nothing(
    replica: object, agent: A2AAgentServer
) -> None:
    start = replica
    first = start("60s")  # type: ignore[operator]
    # The agent holds the call, then refuses it: the killed replica's call never completes.
    agent.fail_next(Fault(503, delay=60))
    headers, body = oom_request()
    with httpx.Client(timeout=2) as client, pytest.raises(httpx.HTTPError):
        client.post(first, headers=headers, content=body)
    deadline = time.monotonic() + 10
    while not agent.posts():  # the claim is stored, and the call is on its way
        assert time.monotonic() < deadline
        time.sleep(0.05)
    start.kill()  # type: ignore[attr-defined]
    lost_id = agent.posts()[0].body["id"]

    # A replica (or the restarted one) with a short claim timeout: 1 s agent + 1 s render + 5 s.
    second = start("1s")  # type: ignore[operator]
    with httpx.Client(timeout=10) as client:
        answer = client.post(second, headers=headers, content=body)
        assert answer.status_code == 503, "in flight: come back, not a duplicate"
        deadline = time.monotonic() + 30
        while answer.status_code == 503:  # the sender's redeliveries
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
            answer = client.post(second, headers=headers, content=body)
    assert answer.headers[OUTCOME] == FIRED, "taken over once the claim timed out"
    assert len(agent.messages()) == 1
    assert agent.posts()[-1].body["id"] == lost_id, "the agent can tell it is the same message"


# ---- the API server failing under the Kubernetes-backed stores ----------------------------


@pytest.fixture
def kube_server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


API_FAULTS = {
    "503 from an overloaded server": (503, "ServiceUnavailable"),
    "504 from etcd timing out": (504, "Timeout"),
    "429 from priority and fairness": (429, "TooManyRequests"),
    "500 internal error": (500, "InternalError"),
}


@pytest.mark.parametrize("fault", API_FAULTS, ids=list(API_FAULTS))
@pytest.mark.parametrize("store", ["lease", "configmap"])
def test_api_server_faults_under_the_store(
    fault: str,
    store: str,
    kube_server: APIServer,
    clock: FakeClock,
    agent: A2AAgentServer,
) -> None:
    Kube(kube_server).apply_hook(hook_doc("default", "pods", config("oom-kill")))
    settings = cluster_settings(agent.url, dedup=store)
    with cluster_function(kube_server, clock, settings) as fn:
        status, reason = API_FAULTS[fault]
        resource = f"{store}s"
        # Every write and read of the store fails for a while: the claim cannot be taken.
        kube_server.fail_next(status, reason, resources=(resource,), count=10)
        first = fn.post(*oom_request())
        assert first.status_code == 503, "a retry can fix it: never a 500, never a silent 202"
        assert agent.messages() == [], "no call without a claim"
        kube_server.clear_failures()
        second = fn.post(*oom_request())  # the redelivery
        assert (second.status_code, second.headers[OUTCOME]) == (202, FIRED)
        assert len(agent.messages()) == 1


def test_a_conflict_on_the_claim_is_another_replica_winning(
    kube_server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> None:
    Kube(kube_server).apply_hook(hook_doc("default", "pods", config("oom-kill")))
    settings = cluster_settings(agent.url, dedup="lease")
    with cluster_function(kube_server, clock, settings) as fn:
        # The create of the Lease loses a race (409): khook reads again and decides again.
        kube_server.fail_next(409, "AlreadyExists", verbs=("create",), resources=("leases",))
        answer = fn.post(*oom_request())
        assert answer.status_code in (202, 503)
        while answer.status_code == 503:  # nothing was claimed by anyone: the retry fires
            answer = fn.post(*oom_request())
        assert answer.headers[OUTCOME] == FIRED
        assert len(agent.messages()) == 1


def test_a_dropped_hook_watch_keeps_hooks_current(
    kube_server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> None:
    kube = Kube(kube_server)
    settings = cluster_settings(agent.url, dedup="lease")
    with cluster_function(kube_server, clock, settings) as fn:
        pipeline = fn.runtime.pipeline()
        assert fn.post(*oom_request()).headers[OUTCOME] == outcome()
        kube_server.drop_watches()
        kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
        wait_until(lambda: pipeline.hooks.current(wait=False).hooks, what="the new Hook")
        assert fn.post(*oom_request()).headers[OUTCOME] == FIRED
