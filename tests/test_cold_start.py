"""Cold start: what khook loads before its first answer, and that the first event is answered
right while the rest of start-up still runs.

No timings here (they belong to the bench and the README's figures): these check what a mode
imports, which is what the time goes to. A library only one mode needs (the Kubernetes client:
cluster mode, the Kubernetes dedup stores, OIDC sender authentication; PyJWT: OIDC) is imported
by that mode alone; a command of the ``khook`` CLI imports what it needs, never what the others
need; prometheus_client is imported only in the process that serves, once gunicorn's master
has said where the workers share their numbers (khook.metrics).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from khook.cli._common import COMMANDS
from khook.core.prompt import compile_prompt
from khook.core.sandbox_samples import sample_facts, sample_object
from khook.sandbox import ProcessRenderer, SandboxError, _pool
from tests.support.events import HOOKS, ROOT, apiserver_event, binary, oom_status, pod
from tests.support.process import clean_env, functions_framework, khook_serve

MIB = 1024 * 1024
# Only cluster mode, the lease/configmap stores or OIDC need these.
CLUSTER_ONLY = ("kubernetes", "jwt")

LOADED = """
import json, sys
{body}
print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}})))
"""

# What a local-mode start does: functions-framework imports the source file (which checks the
# configuration), then a worker builds the pipeline and handles the first event.
FIRST_EVENT = """
import asyncio, runpy, sys
from khook import runtime
from khook.core.cloudevent import parse
runpy.run_path("functions/main.py")
headers, body = {request!r}
outcome = asyncio.run(runtime.current().run(lambda p: p.process(parse(headers, body))))
print(outcome.counts().header(), file=sys.stderr)
"""


def _loaded(body: str, tmp_path: Path, **env: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running ``body``."""
    script = LOADED.format(body=body)
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return set(json.loads(run.stdout.splitlines()[-1]))


def _local(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"KHOOK_HOOKS": str(HOOKS), "KHOOK_DEDUP": f"tinydb:{tmp_path}/dedup", **env}


def _fresh_oom() -> tuple[dict[str, str], bytes]:
    """An OOM kill that happened just now (the samples' timestamps are old: stale)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = pod(name=f"web-{time.time_ns()}", container_statuses=[oom_status(finished=now)])
    return binary(apiserver_event(obj, time=now))


# ---- what each mode imports ----------------------------------------------------------------


def test_the_functions_framework_source_imports_no_cluster_library_in_local_mode(
    tmp_path: Path,
) -> None:
    loaded = _loaded(
        'import runpy; runpy.run_path("functions/main.py")', tmp_path, **_local(tmp_path)
    )
    assert "khook" in loaded and "functions_framework" in loaded  # it did import the function
    assert not loaded & {*CLUSTER_ONLY, "prometheus_client"}


def test_the_first_local_event_needs_no_cluster_library(tmp_path: Path) -> None:
    body = FIRST_EVENT.format(request=_fresh_oom())
    loaded = _loaded(body, tmp_path, **_local(tmp_path))
    assert not loaded & set(CLUSTER_ONLY)
    assert "prometheus_client" in loaded  # the worker counted it


def test_the_first_local_event_is_answered(tmp_path: Path) -> None:
    """The script above does handle the event (the check above would pass on a crash)."""
    run = subprocess.run(
        [sys.executable, "-c", FIRST_EVENT.format(request=_fresh_oom())],
        cwd=ROOT,
        env=clean_env(tmp_path, **_local(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[-1].startswith("fired=1 duplicate=0 failed=0")


def test_token_auth_needs_no_cluster_library(tmp_path: Path) -> None:
    secret = "a-secret-of-16-characters"
    env = _local(tmp_path, KHOOK_AUTH="token", KHOOK_AUTH_TOKEN=secret)
    body = f"""
import runpy
from khook import runtime
runpy.run_path("functions/main.py")
runtime.current().pipeline().authenticator.authenticate({{"authorization": "Bearer {secret}"}})
"""
    assert not _loaded(body, tmp_path, **env) & set(CLUSTER_ONLY)


NOT_FOR_HELP = {*CLUSTER_ONLY, "functions_framework", "gunicorn", "httpx", "jinja2"}
SERVER = {"functions_framework", "gunicorn"}


@pytest.mark.parametrize(
    ("argv", "absent"),
    [
        pytest.param(["--help"], NOT_FOR_HELP, id="help"),
        pytest.param(["--version"], NOT_FOR_HELP, id="version"),
        pytest.param(
            ["validate", "config/samples/hooks"], {*CLUSTER_ONLY, *SERVER, "httpx"}, id="validate"
        ),
        pytest.param(["send", "--help"], {*CLUSTER_ONLY, *SERVER}, id="send"),
        pytest.param(["render", "--help"], {*CLUSTER_ONLY, *SERVER}, id="render"),
    ],
)
def test_a_command_imports_what_it_needs_only(
    argv: list[str], absent: set[str], tmp_path: Path
) -> None:
    body = f"""
from khook.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
"""
    loaded = _loaded(body, tmp_path)
    assert "khook" in loaded
    assert not loaded & absent


# ---- the command line, loaded one command at a time ------------------------------------------


def test_khook_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from khook.cli import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for name, text in COMMANDS.items():
        assert f"{name} {' '.join(text.split())}" in shown


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_has_its_own_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from khook.cli import main

    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: khook {name} ")


def test_every_parser_at_once_is_the_same_parser() -> None:
    """Without argv every command's parser is loaded: the stubs stand for the real ones."""
    from khook.cli import parser

    def commands(argv: list[str] | None) -> dict[str, str]:
        sub = next(a for a in parser(argv)._actions if a.dest == "command")
        return {c.dest: str(c.help) for c in sub._choices_actions}

    assert commands(None) == commands(["--help"]) == commands(["serve"]) == COMMANDS


def test_an_unknown_command_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from khook.cli import main

    with pytest.raises(SystemExit) as done:
        main(["serv"])
    assert done.value.code == 2
    assert "invalid choice: 'serv'" in capsys.readouterr().err


# ---- render processes started ahead ---------------------------------------------------------


def _slow_start(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[Any]:
    """Make each render process take ``seconds`` longer to start; the list gets each one."""
    started: list[Any] = []
    real = _pool._Process.__init__

    def slow(self: Any, memory_bytes: int) -> None:
        time.sleep(seconds)
        real(self, memory_bytes)
        started.append(self)

    monkeypatch.setattr(_pool._Process, "__init__", slow)
    return started


def _render(renderer: ProcessRenderer) -> str:
    return renderer.render(
        compile_prompt("{{ event.name }}"), sample_facts("oom-kill"), sample_object("oom-kill")
    )


def _wait_for(condition: Any, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_prestart_starts_the_processes_in_the_background() -> None:
    renderer = ProcessRenderer(inline=False, workers=2, memory_bytes=256 * MIB + 11)
    renderer.prestart()
    _wait_for(lambda: len(renderer.worker_pids()) == 2)
    assert _render(renderer).startswith("web-")
    renderer.prestart()  # nothing missing: nothing more starts
    assert renderer._pool.starts == 2 and len(renderer.worker_pids()) == 2


def test_a_render_waits_for_a_process_started_ahead_not_counting_its_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = _slow_start(monkeypatch, 0.5)
    # A deadline shorter than a start: the wait for the process is khook's, not the template's.
    renderer = ProcessRenderer(inline=False, timeout=0.3, workers=1, memory_bytes=256 * MIB + 12)
    renderer.prestart()
    assert _render(renderer).startswith("web-")
    assert len(started) == 1 and renderer._pool.starts == 1  # it used the one started ahead


def test_a_process_that_cannot_start_ahead_is_left_to_the_render(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures = iter([SandboxError("no room")])
    real = _pool._Process.__init__

    def first_fails(self: Any, memory_bytes: int) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real(self, memory_bytes)

    monkeypatch.setattr(_pool._Process, "__init__", first_fails)
    renderer = ProcessRenderer(inline=False, workers=1, memory_bytes=256 * MIB + 13)
    renderer.prestart()
    assert _render(renderer).startswith("web-")  # started on demand after the failure
    assert renderer._pool.starts == 1


def test_a_pool_stopped_while_processes_start_ahead_leaves_none_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = _slow_start(monkeypatch, 0.3)
    pool = _pool.Pool(256 * MIB + 14, 2)
    pool.prestart()
    pool.stop()
    _wait_for(lambda: len(started) == 2)
    _wait_for(lambda: all(p.proc.poll() is not None for p in started))
    assert pool.pids() == [] and pool.starts == 0
    threads = [t for t in threading.enumerate() if t.name == "khook-render-start"]
    for thread in threads:
        thread.join(10)


# ---- the first event, as real processes -----------------------------------------------------


@pytest.mark.parametrize("command", ["khook serve", "functions-framework"])
def test_the_first_event_after_start_is_answered_right(command: str, tmp_path: Path) -> None:
    """An event sent as soon as the process answers at all (the pipeline still building, the
    render processes still starting) is judged like any other: it fires."""
    env = clean_env(tmp_path, **_local(tmp_path))
    if command == "khook serve":
        serving = khook_serve(directory=tmp_path, env=env, ready=False)
    else:
        serving = functions_framework(tmp_path, env, ready=False)
    with serving as served:
        answer = served.post(*_fresh_oom())
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Khook-Outcome"].startswith("fired=1 duplicate=0 failed=0")
