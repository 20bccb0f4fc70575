"""`khook source`: a local ApiServerSource. Against the API double, its CloudEvents carry
exactly the attributes an ApiServerSource sets, and drive a live khook function end to end."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.http import from_http

from khook.emitter import COMPONENT, Emitter, Sender
from khook.kubeapi import identify
from khook.settings import Settings
from tests.support.agent import A2AAgentServer
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import Kube, apiserver, wait_until
from tests.support.events import CAPTURED, HOOKS, ROOT, oom_status, pod
from tests.support.function import FunctionServer
from tests.support.sink import RecordingSink
from tests.test_cli import KHOOK


def captured_ce_headers() -> set[str]:
    """What the real adapter sends (tests/fixtures/captured), besides transport headers."""
    doc = json.loads((CAPTURED / "pod-update-oomkilled.json").read_text())
    return {h.lower() for h in doc["headers"] if h.lower().startswith("ce-")} | {"content-type"}


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


def emitter_for(
    server: APIServer, sink: RecordingSink, sleeps: list[float] | None = None, **kw: object
) -> Emitter:
    sleeps = [] if sleeps is None else sleeps
    sender = Sender(sink.url, sleep=sleeps.append)
    api = identify(server.api_client(), COMPONENT)
    return Emitter(api, sender, **kw)  # type: ignore[arg-type]


def test_changes_arrive_shaped_like_an_apiserversource(server: APIServer) -> None:
    kube = Kube(server)
    kube.put_pod(pod(name="before-start"))  # exists at start: not replayed
    with RecordingSink() as sink:
        emitter = emitter_for(server, sink, namespaces=["default"])
        emitter.start()
        try:
            wait_until(lambda: len(server.calls(verb="watch")) >= 3, what="the watches")
            kube.put_pod(pod(name="web-1", container_statuses=[oom_status()]))
            kube.core.delete_namespaced_pod("web-1", "default", _preload_content=False)
            wait_until(lambda: len(sink.received()) >= 3, what="three CloudEvents")
        finally:
            emitter.close()
    got = sink.received()
    assert [d.headers["Ce-Type"] for d in got] == [
        "dev.knative.apiserver.resource.add",
        "dev.knative.apiserver.resource.update",
        "dev.knative.apiserver.resource.delete",
    ]
    first = got[0]
    assert {h.lower() for h in first.headers if h.lower().startswith("ce-")} | {
        "content-type"
    } == captured_ce_headers()
    assert first.headers["Ce-Subject"] == "/apis/v1/namespaces/default/pods/web-1"
    assert first.headers["Ce-Source"] == server.url
    assert (first.headers["Ce-Kind"], first.headers["Ce-Name"]) == ("Pod", "web-1")
    assert (first.headers["Ce-Namespace"], first.headers["Ce-Apiversion"]) == ("default", "v1")
    assert first.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", first.headers["Ce-Time"])
    assert len({d.headers["Ce-Id"] for d in got}) == 3, "a fresh id per observation"
    event = from_http(first.headers, first.body)
    assert event.data["metadata"]["name"] == "web-1"
    update = json.loads(got[1].body)
    assert update["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == (
        "OOMKilled"
    )


def test_cluster_scoped_nodes(server: APIServer) -> None:
    with RecordingSink() as sink:
        emitter = emitter_for(server, sink, kinds=["Node"])
        emitter.start()
        try:
            wait_until(lambda: server.calls(verb="watch"), what="the watch")
            Kube(server).core.create_node(
                {"metadata": {"name": "worker-1"}}, _preload_content=False
            )
            wait_until(sink.received, what="a CloudEvent")
        finally:
            emitter.close()
    (node,) = sink.received()
    assert node.headers["Ce-Subject"] == "/apis/v1/nodes/worker-1"
    assert node.headers["Ce-Namespace"] == ""


@pytest.mark.parametrize(
    ("answers", "attempts", "sleeps"),
    [
        ([503, 429, 202], 3, [0.05, 0.1]),
        ([500], 1, []),  # the adapter drops a 500 at once
        ([400], 1, []),
        ([504] * 6, 6, [0.05, 0.1, 0.2, 0.4, 0.8]),  # 5 retries, then dropped
    ],
)
def test_the_adapters_retry_behaviour(
    answers: list[int], attempts: int, sleeps: list[float]
) -> None:
    with RecordingSink() as sink:
        sink.answers = list(answers)
        slept: list[float] = []
        Sender(sink.url, sleep=slept.append).send(
            {"specversion": "1.0", "type": "t", "source": "s", "id": "1", "subject": "x"},
            {"apiVersion": "v1", "kind": "Pod"},
        )
        assert len(sink.received()) == attempts
        assert slept == pytest.approx(sleeps)


def test_an_unreachable_sink_is_retried_then_dropped() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    slept: list[float] = []
    status = Sender(url, sleep=slept.append).send(
        {"specversion": "1.0", "type": "t", "source": "s", "id": "1", "subject": "x"}, {}
    )
    assert status is None and len(slept) == 5


def test_khook_source_drives_a_live_function_end_to_end(
    server: APIServer, tmp_path: Path, clock: FakeClock, agent: A2AAgentServer
) -> None:
    """`khook source` (a real process) -> khook (real HTTP) -> the agent, once per incident."""
    kube = Kube(server)
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "agent_url": agent.url})
    with FunctionServer(settings, clock) as fn:
        proc = subprocess.Popen(
            [KHOOK, "source", "--sink", fn.url, "--namespace", "default", "--kind", "Pod,Event"],
            cwd=ROOT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: len(server.calls(verb="watch")) >= 2, what="the source's watches")
            # Fresh against the CloudEvents' time, which the source stamps when it sends.
            now = datetime.now(UTC).isoformat()
            for name in ("web-7d4b9c8f5-aaaaa", "web-7d4b9c8f5-bbbbb"):
                kube.put_pod(pod(name=name, container_statuses=[oom_status(finished=now)]))
            kube.core.patch_namespaced_pod(
                "web-7d4b9c8f5-aaaaa",
                "default",
                {"metadata": {"labels": {"touched": "yes"}}},
                _preload_content=False,
            )
            kube.core.delete_namespaced_pod(
                "web-7d4b9c8f5-bbbbb", "default", _preload_content=False
            )
            wait_until(agent.messages, what="the agent call")
            # Every change was delivered: adds, status updates, the label, the delete.
            wait_until(lambda: fn.handled >= 6, what="every change delivered")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert len(agent.messages()) == 1, "two pods of one Deployment, many updates: one incident"
    assert "OOM-killed" in agent.messages()[0].text
