"""Replicas racing: several `khook serve` processes (not threads) against the API double,
many rounds, one agent call per incident, for both Kubernetes-backed stores."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.agent import A2AAgentServer
from tests.support.cluster import Kube, apiserver, config, hook_doc, wait_until
from tests.support.events import apiserver_event, binary, oom_status, pod
from tests.support.process import KHOOK, clean_env, khook_serve

REPLICAS = 3
ROUNDS = 12
DELIVERIES = 2  # per replica and round: the ApiServerSource retries, a Broker redelivers


def deliver_everywhere(
    clients: list[httpx.Client], headers: dict[str, str], body: bytes
) -> list[str]:
    """The same CloudEvent to every replica, several times, all at once."""
    barrier = threading.Barrier(len(clients) * DELIVERIES)
    outcomes: list[str] = []

    def deliver(client: httpx.Client) -> None:
        barrier.wait()
        outcomes.append(redeliver_like_the_adapter(client, headers, body))

    threads = [
        threading.Thread(target=deliver, args=(c,)) for c in clients for _ in range(DELIVERIES)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def redeliver_like_the_adapter(client: httpx.Client, headers: dict[str, str], body: bytes) -> str:
    """Post, retrying a 503 the way an ApiServerSource's adapter does (5 retries, exponential
    from 50 ms): a delivery that finds the incident in flight comes back."""
    delay = 0.05
    for _ in range(6):
        r = client.post("/", headers=headers, content=body)
        if r.status_code != 503:
            break
        time.sleep(delay)  # the adapter's own backoff, not a wait for a condition
        delay *= 2
    return f"{r.status_code} {r.headers.get('X-Khook-Outcome')}"


@pytest.mark.parametrize("store", ["lease", "configmap"])
def test_replicas_race_and_one_call_is_made_per_incident(tmp_path: Path, store: str) -> None:
    with apiserver() as server, A2AAgentServer() as agent, contextlib.ExitStack() as stack:
        kube = Kube(server)
        kube.apply_hook(hook_doc("default", "pods", config("oom-kill")))
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        args = (
            "--hooks-from-cluster",
            "--dedup",
            store,
            "--state-namespace",
            "khook-system",
            "--agent-url",
            agent.url,
        )
        urls = []
        for i in range(REPLICAS):
            home = tmp_path / f"replica-{i}"
            home.mkdir()
            env = clean_env(home, KUBECONFIG=str(kubeconfig), POD_NAME=f"khook-{i}")
            urls.append(stack.enter_context(khook_serve(*args, directory=home, env=env)).url)
        clients = [stack.enter_context(httpx.Client(base_url=u, timeout=30)) for u in urls]
        for round_ in range(ROUNDS):
            obj = pod(
                name=f"web-{round_}-x", owner=f"web-{round_}", container_statuses=[oom_status()]
            )
            outcomes = deliver_everywhere(clients, *binary(apiserver_event(obj)))
            assert sum("fired=1" in o for o in outcomes) == 1, (round_, outcomes)
            assert all(o.startswith("202") for o in outcomes), outcomes
        assert len(agent.messages()) == ROUNDS

        def active() -> list[dict[str, Any]]:
            status = kube.hook("default", "pods").get("status", {})
            return list(status.get("activeEvents", []))

        # The replicas' background writers bring the status up to date on their own.
        wait_until(lambda: len(active()) == ROUNDS, timeout=20, what="the Hook status")
        assert {e["status"] for e in active()} == {"firing"}
        ready = kube.ready("default", "pods")
        assert ready is not None and ready["status"] == "True"


def test_serve_refuses_both_hook_sources() -> None:
    done = subprocess.run(
        [KHOOK, "serve", "--hooks", "x.yaml", "--hooks-from-cluster"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "not both" in done.stderr
