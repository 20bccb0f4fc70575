"""The khook command: validate, render, send, and `khook serve` as a real process."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import pytest

from khook.cli import main
from tests.support.agent import A2AAgentServer
from tests.support.events import HOOKS, SAMPLES
from tests.support.process import KHOOK, Served, clean_env, functions_framework
from tests.support.process import khook_serve as served_khook


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
    out = capsys.readouterr().out
    assert "event type: none" in out
    assert "reason: no-rule; Event default/web-7d4b9c8f5-x2x9z." in out
    assert "Normal 'Started' about Pod default/web-7d4b9c8f5-x2x9z" in out


def test_render_explain_says_why_each_hook_acts_or_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "hooks" / "broken.yaml"
    broken.parent.mkdir()
    broken.write_text(
        "apiVersion: kagent.dev/v1alpha2\nkind: Hook\nmetadata: {name: broken, namespace: x}\n"
        "spec:\n  eventConfigurations:\n    - {eventType: oom-kill, prompt: 'x'}\n"
    )
    for sample in HOOKS.glob("*.yaml"):
        (tmp_path / "hooks" / sample.name).write_text(sample.read_text())
    event = str(SAMPLES / "pod-restart-backoff-event.json")
    assert main(["render", "--hook", str(tmp_path / "hooks"), "--event", event, "--explain"]) == 0
    out = capsys.readouterr().out
    assert "reason: fired; default/pod-incidents pod-restart Deployment/web" in out
    assert "signal event 'BackOff': pod-restart" in out
    assert "hook default/pod-incidents: acts on pod-restart" in out
    assert "  pod-restart: its prompt is straight-line: it renders in khook's process" in out
    # Excluded by the platform team's selector; another tenant's Hook never sees it.
    assert (
        "hook khook-system/cluster-incidents: not acting: "
        "spec.selector.exclude.namespaces lists default"
    ) in out
    assert "hook khook-demo/hook-sample: not acting: the object is in namespace default" in out
    assert "hook x/broken: not in force (InvalidConfiguration)" in out and "agentRef" in out


def khook_serve(*args: str, directory: Path) -> contextlib.AbstractContextManager[Served]:
    """`khook serve` as a real process in a clean environment, output kept in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return served_khook(*args, directory=directory, env=clean_env(directory))


def test_serve_dry_run_and_send(tmp_path: Path) -> None:
    dedup = f"tinydb:{tmp_path}/dedup.json"
    with khook_serve("--hooks", str(HOOKS), "--dedup", dedup, directory=tmp_path) as served:
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
        assert "server" not in served.get("/healthz").headers


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
        with (
            khook_serve(*common, directory=tmp_path / "one") as one,
            khook_serve(*common, directory=tmp_path / "two") as two,
        ):
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


def test_the_documented_functions_framework_command_serves_khook(tmp_path: Path) -> None:
    """`functions-framework --target handle --source functions/main.py`, configured by env."""
    env = clean_env(tmp_path, KHOOK_HOOKS=str(HOOKS), KHOOK_DEDUP="memory", THREADS="4")
    with functions_framework(tmp_path, env) as served:
        sample = str(SAMPLES / "oom-kill-pod-status.json")
        out = subprocess.run(
            [KHOOK, "send", sample, "--to", served.url], capture_output=True, text=True, check=True
        ).stdout
        # Events go straight to the function; functions-framework's app still serves the rest.
        assert served.get("/robots.txt").status_code == 404
        health = served.get("/healthz")
        assert health.status_code == 200
        assert "server" not in health.headers, "uvicorn's Server header is not sent (TRIMMED)"
    assert "X-Khook-Outcome: fired=1 duplicate=0 failed=0 held=0 followup=0 stale=0" in out
