"""The hostile-Hook corpus (tests/fixtures/hostile_hooks/) on all three paths a Hook takes:
file mode, cluster mode against the API double, and `khook validate`. Each Hook says in its
annotations whether it must be refused (and with which problem) or is harmless; either way
khook keeps serving every other tenant, and no request gets a 500."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from khook.cli import main
from khook.settings import Settings
from tests.support.agent import A2AAgentServer
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import Kube, apiserver, cluster_function, cluster_settings
from tests.support.events import ROOT, oom_request, outcome
from tests.support.function import FunctionServer

CORPUS = ROOT / "tests" / "fixtures" / "hostile_hooks"
# Every case ends at one of the sandbox's own limits, well within a second; on an overloaded
# machine a render could reach its deadline first, and the Hook is refused all the same.
DEADLINE_PROBLEM = "took longer than"
ROOM = 500  # Hooks per namespace: the whole corpus lives in team-a


@dataclass(frozen=True)
class Case:
    name: str
    doc: dict[str, Any]
    refused: bool
    problem: str

    def problem_seen(self, text: str) -> bool:
        return self.problem in text or DEADLINE_PROBLEM in text


def corpus() -> list[Case]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        notes = doc["metadata"]["annotations"]
        cases.append(
            Case(
                doc["metadata"]["name"],
                doc,
                notes["khook.dev/expect"] == "invalid",
                notes.get("khook.dev/expect-problem", ""),
            )
        )
    return cases


CASES = corpus()
HARMLESS = [c for c in CASES if not c.refused]


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 100 and HARMLESS and len(HARMLESS) < len(CASES)


@pytest.fixture(scope="module")
def agent() -> Iterator[A2AAgentServer]:
    with A2AAgentServer(agents=("team-a/k8s-agent",)) as server:
        yield server


def test_file_mode(agent: A2AAgentServer) -> None:
    settings = Settings.coerce(
        {
            "hooks": (str(CORPUS),),
            "dedup": "memory",
            "agent_url": agent.url,
            "agent_attempts": 1,
            "max_hooks_per_namespace": ROOM,
        }
    )
    with FunctionServer(settings, FakeClock()) as fn:
        ready = fn.get("/readyz")
        assert ready.status_code == 200, ready.text
        hooks = fn.runtime.pipeline().hooks.current()
        in_force = {h.name for h in hooks.hooks}
        refused = {bad.name: "; ".join(bad.problems) for bad in hooks.invalid}
        for case in CASES:
            if case.refused:
                assert case.name in refused, case.name
                assert case.problem_seen(refused[case.name]), (case.name, refused[case.name])
            else:
                assert case.name in in_force, (case.name, refused.get(case.name))
        # The harmless ones fire for a real event; the event is answered, never a 500.
        answer = fn.post(*oom_request("team-a"))
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Khook-Outcome"].startswith(f"fired={len(HARMLESS)} ")
        assert len(agent.messages()) == len(HARMLESS)
        assert fn.get("/healthz").status_code == 200


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


def test_cluster_mode(server: APIServer, agent: A2AAgentServer) -> None:
    kube = Kube(server)
    rejected_by_schema = set()
    for case in CASES:
        try:
            kube.apply_hook(case.doc)
        except ApiException as exc:  # the CRD's schema refused it: 422, like a real server
            assert exc.status == 422 and case.refused, (case.name, exc.body)
            rejected_by_schema.add(case.name)
    settings = cluster_settings(agent.url, max_hooks_per_namespace=ROOM)
    with cluster_function(server, FakeClock(), settings) as fn:
        fn.runtime.pipeline().flush()
        for case in CASES:
            if case.name in rejected_by_schema:
                continue
            ready = kube.ready("team-a", case.name)
            assert ready is not None, case.name
            if case.refused:
                assert ready["status"] == "False", case.name
                assert ready["reason"] in ("InvalidConfiguration", "PromptRenderFailed")
                assert case.problem_seen(ready["message"]), (case.name, ready["message"])
            else:
                assert ready["status"] == "True", (case.name, ready["message"])
        answer = fn.post(*oom_request("team-a"))
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Khook-Outcome"].startswith(f"fired={len(HARMLESS)} ")


def test_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(CORPUS), "--max-hooks-per-namespace", str(ROOM)])
    out = capsys.readouterr().out
    assert code == 1
    findings: dict[str, list[str]] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith(("ok   Hook ", "FAIL Hook ")):
            current = line.split()[2]
            findings[current] = [line]
        elif line.startswith("     ") and current:
            findings[current].append(line)
    for case in CASES:
        lines = findings.get(f"team-a/{case.name}")
        assert lines is not None, (case.name, out[-2000:])
        if case.refused:
            assert lines[0].startswith("FAIL"), lines
            assert case.problem_seen("\n".join(lines)), lines
        else:
            assert lines[0].startswith("ok"), lines


def test_one_tenants_hostile_hooks_do_not_slow_another_tenant(agent: A2AAgentServer) -> None:
    # team-a's whole corpus is loaded beside a plain Hook of team-b's: team-b's events fire.
    hooks = Path(__file__).parent / "fixtures" / "team_b_hook.yaml"
    settings = Settings.coerce(
        {
            "hooks": (str(CORPUS), str(hooks)),
            "dedup": "memory",
            "agent_url": agent.url,
            "agent_attempts": 1,
            "max_hooks_per_namespace": ROOM,
            "agent_namespaces": ("kagent", "team-a"),
        }
    )
    with FunctionServer(settings, FakeClock()) as fn:
        answer = fn.post(*oom_request("team-b"))
        assert answer.headers["X-Khook-Outcome"] == outcome(fired=1)
