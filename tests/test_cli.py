"""The khook command: validate, render, send, and `khook serve` as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from khook.cli import main
from tests.support.agent import A2AAgentServer
from tests.support.events import HOOKS, ROOT, SAMPLES

KHOOK = str(Path(sys.executable).with_name("khook"))


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["--help"],
        ["serve", "--help"],
        ["send", "--help"],
        ["validate", "--help"],
        ["render", "--help"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
        assert "usage: khook" in capsys.readouterr().out


def test_validate_the_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(HOOKS)]) == 0
    out = capsys.readouterr().out
    assert "ok   Hook default/pod-incidents" in out and "FAIL" not in out


def test_validate_reports_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: kagent.dev/v1alpha2\nkind: Hook\nmetadata: {name: bad, namespace: x}\n"
        "spec:\n  eventConfigurations:\n"
        "    - {eventType: disk-full, agentRef: {name: a}, prompt: '{{.Oops}}'}\n"
    )
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL Hook x/bad" in out
    assert "'disk-full' is not a known event type" in out
    assert "{{.Oops}}" in out


def test_validate_knows_types_from_rules_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {eventType: disk-full, source: event, reasons: [DiskFull]}\n")
    hook = tmp_path / "hook.yaml"
    hook.write_text(
        "apiVersion: kagent.dev/v1alpha2\nkind: Hook\nmetadata: {name: h, namespace: x}\n"
        "spec:\n  eventConfigurations:\n"
        "    - {eventType: disk-full, agentRef: {name: a}, prompt: 'full: {{.ResourceName}}'}\n"
    )
    assert main(["validate", str(rules), str(hook)]) == 0
    assert main(["validate", str(hook), "--rules", str(rules)]) == 0
    broken = tmp_path / "broken-rules.yaml"
    broken.write_text("rules:\n  - {eventType: x, source: event}\n")
    assert main(["validate", str(broken)]) == 1
    assert "must narrow" in capsys.readouterr().out


def test_render_prints_the_prompt_and_the_a2a_request(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "render",
            "--hook",
            str(HOOKS),
            "--event",
            str(SAMPLES / "pod-restart-backoff-event.json"),
            "--a2a-version",
            "1.0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "event type: pod-restart" in out
    assert "keeps restarting: BackOff" in out
    request = json.loads(out[out.index("--- A2A request") + len("--- A2A request") :])
    assert request["body"]["method"] == "SendMessage"
    assert request["headers"]["A2A-Version"] == "1.0"
    assert "keeps restarting" in request["body"]["params"]["message"]["parts"][0]["text"]


def test_render_an_event_nobody_wants(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["render", "--hook", str(HOOKS), "--event", str(SAMPLES / "ignored-started-event.json")]
    )
    assert code == 0
    assert "event type: none" in capsys.readouterr().out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[str]


@contextmanager
def serving(
    argv: list[str], port: int, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> Iterator[Served]:
    """Run a server process until it answers /readyz; stop it afterwards."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start: {proc.communicate()[1]}")
            time.sleep(0.1)
        yield Served(url, proc)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def khook_serve(
    *args: str, env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[Served]:
    port = _free_port()
    return serving([KHOOK, "serve", "--host", "127.0.0.1", "--port", str(port), *args], port, env)


def test_serve_dry_run_and_send(tmp_path: Path) -> None:
    dedup = f"tinydb:{tmp_path}/dedup.json"
    with khook_serve("--hooks", str(HOOKS), "--dedup", dedup) as served:
        url = served.url
        sample = str(SAMPLES / "oom-kill-pod-status.json")
        out = subprocess.run(
            [KHOOK, "send", sample, sample, "--to", url], capture_output=True, text=True, check=True
        ).stdout
        assert out.count("202") == 2
        assert "X-Khook-Outcome: fired=1 duplicate=0 failed=0 held=0 followup=0 stale=0" in out
        assert "X-Khook-Outcome: fired=0 duplicate=1 failed=0 held=0 followup=0 stale=0" in out
        structured = subprocess.run(
            [
                KHOOK,
                "send",
                "--structured",
                str(SAMPLES / "node-not-ready-event.json"),
                "--to",
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "X-Khook-Event-Type: node-not-ready" in structured
        assert "fired=1" in structured


def test_send_reports_failures(tmp_path: Path) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    done = subprocess.run(
        [KHOOK, "send", str(junk), "--to", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "a sample is a JSON object" in done.stderr


def test_serve_refuses_a_broken_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules: [{eventType: BAD}]\n")
    done = subprocess.run(
        [KHOOK, "serve", "--rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "DNS label" in done.stderr


def test_two_processes_share_the_tinydb_record(tmp_path: Path) -> None:
    """Two `khook serve` processes on one tinydb file: one incident, one agent call."""
    dedup = f"tinydb:{tmp_path}/shared.json"
    with A2AAgentServer() as agent:
        common = ("--hooks", str(HOOKS), "--dedup", dedup, "--agent-url", agent.url)
        with khook_serve(*common) as one, khook_serve(*common) as two:
            first, second = one.url, two.url
            sample = str(SAMPLES / "pod-restart-crashloop-pod-status.json")
            procs = [
                subprocess.Popen(
                    [KHOOK, "send", sample, "--to", url], stdout=subprocess.PIPE, text=True
                )
                for url in (first, second, first, second)
            ]
            outs = [p.communicate(timeout=60)[0] for p in procs]
        assert sum("fired=1" in o for o in outs) == 1
        assert sum("duplicate=1" in o for o in outs) == 3
        assert len(agent.messages()) == 1


def test_the_documented_functions_framework_command_serves_khook() -> None:
    """`functions-framework --target handle --source functions/main.py`, configured by env."""
    port = _free_port()
    env = {"KHOOK_HOOKS": str(HOOKS), "KHOOK_DEDUP": "memory", "THREADS": "4"}
    framework = str(Path(KHOOK).with_name("functions-framework"))
    argv = [framework, "--target", "handle", "--source", "functions/main.py", "--port", str(port)]
    with serving(argv, port, env) as served:
        sample = str(SAMPLES / "oom-kill-pod-status.json")
        out = subprocess.run(
            [KHOOK, "send", sample, "--to", served.url], capture_output=True, text=True, check=True
        ).stdout
    assert "X-Khook-Outcome: fired=1 duplicate=0 failed=0 held=0 followup=0 stale=0" in out
