"""Logs an operator can follow: every line a served khook prints is one JSON object
(gunicorn's and uvicorn's included), a start line says where it listens and how it is set up,
and every decision line names the CloudEvent, the Hook, the incident and the trace."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from contextvars import copy_context
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gunicorn.config
import pytest

from khook import logs, runtime, serving, trace
from khook.cli._common import load_sample
from khook.settings import Settings
from tests.support.agent import A2AAgentServer
from tests.support.events import HOOKS, SAMPLES, outcome
from tests.support.process import clean_env, functions_framework, khook_serve

OOM = SAMPLES / "oom-kill-pod-status.json"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
EVENT = {
    "ceId": "c0e8c863-a5fa-51bd-86a7-82e737510d9e",
    "ceSource": "https://10.96.0.1:443",
    "ceSubject": "/apis/v1/namespaces/default/pods/web-7d4b9c8f5-x2x9z",
    "hook": "default/pod-incidents",
    "incidentKey": "default/pod-incidents|oom-kill|default|Deployment/web",
    "traceId": TRACE_ID,
}


def _only(lines: list[dict[str, Any]], msg: str) -> dict[str, Any]:
    [line] = [line for line in lines if line["msg"] == msg]
    return line


def test_every_line_of_khook_serve_is_json(tmp_path: Path) -> None:
    """Debug level, so gunicorn and uvicorn say all they have to say; an agent URL with
    credentials, which no line may show."""
    with A2AAgentServer() as agent:
        url = agent.url.replace("http://", "http://khook:s3cret@")
        args = ("--hooks", str(HOOKS), "--dedup", "memory", "--agent-url", url)
        env = clean_env(tmp_path, KHOOK_LOG_LEVEL="debug")
        with khook_serve(*args, directory=tmp_path, env=env) as served:
            headers, body = load_sample(OOM)
            headers["traceparent"] = TRACEPARENT
            assert served.post(headers, body).headers["X-Khook-Outcome"] == outcome(fired=1)
            again = served.post(headers, body)
            assert again.headers["X-Khook-Outcome"] == outcome(duplicate=1)
            port = served.url.rsplit(":", 1)[1]
        assert served.stop() == 0
    assert "s3cret" not in served.stderr.read_text()
    assert served.out_lines() == []  # not a dry run: nothing on stdout
    lines = served.logs()  # each line parses, or this fails
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "uvicorn.error", "khook", "khook.pipeline"} <= loggers
    assert any(line["msg"].startswith("Listening at: ") for line in lines)  # gunicorn's own
    start = _only(lines, "khook listening")
    assert start["address"] == [f"http://127.0.0.1:{port}"]
    assert (start["mode"], start["dedup"]) == ("files", "memory")
    assert start["agent"] == agent.url  # without the credentials
    assert _only(lines, "khook serving")["hookCount"] == 3
    fired = _only(lines, "hook fired")
    assert fired["level"] == "info" and EVENT.items() <= fired.items()
    duplicate = _only(lines, "hook duplicate")
    assert duplicate["level"] == "debug" and EVENT.items() <= duplicate.items()


def test_every_line_under_functions_framework_is_json(tmp_path: Path) -> None:
    """The documented functions-framework command, gunicorn at info, a dry run: stderr and
    stdout (the requests it would send) are JSON lines."""
    env = clean_env(
        tmp_path, KHOOK_HOOKS=str(HOOKS), KHOOK_DEDUP="memory", GUNICORN_LOG_LEVEL="info"
    )
    with functions_framework(tmp_path, env) as served:
        headers, body = load_sample(OOM)
        headers["traceparent"] = TRACEPARENT
        assert served.post(headers, body).headers["X-Khook-Outcome"] == outcome(fired=1)
    lines = served.logs()
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    start = _only(lines, "khook listening")
    assert (start["mode"], start["agent"]) == ("files", "dry-run")
    assert EVENT.items() <= _only(lines, "hook fired").items()
    [request] = [json.loads(line) for line in served.out_lines()]
    assert request["dryRun"] is True and request["headers"]["traceparent"] == TRACEPARENT


def _configured_python(*lines: str) -> subprocess.CompletedProcess[str]:
    """``lines`` run by a fresh Python after khook's logging is configured (at info)."""
    code = "\n".join(("from khook.logs import configure", "configure('info')", *lines))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_warnings_and_uncaught_exceptions_are_json_too() -> None:
    done = _configured_python(
        "import threading, warnings",
        "warnings.warn('something deprecated')",
        "t = threading.Thread(target=lambda: 1 / 0, name='worker'); t.start(); t.join()",
        "raise RuntimeError('the end')",
    )
    assert done.returncode == 1
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["msg"] for line in lines][1:] == [
        "uncaught exception in a thread",
        "uncaught exception",
    ]
    assert "something deprecated" in lines[0]["msg"] and lines[0]["logger"] == "py.warnings"
    assert "ZeroDivisionError" in lines[1]["error"] and lines[1]["thread"] == "worker"
    assert "RuntimeError: the end" in lines[2]["error"]


def test_a_record_looks_up_no_thread_or_process() -> None:
    """No line shows them, so configure() turns off logging's look-ups of the thread, the
    process id (a system call for every line) and the multiprocessing process name."""
    done = _configured_python(
        "import logging",
        "r = logging.LogRecord('khook', logging.INFO, '', 0, 'x', None, None)",
        "print(r.thread, r.threadName, r.process, r.processName)",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "None", "None"]


def test_bound_fields_follow_the_context_into_threads() -> None:
    formatter = logs.JSONFormatter()
    logger = logging.getLogger("khook.test")
    seen: list[dict[str, Any]] = []

    def emit() -> None:
        record = logger.makeRecord("khook.test", logging.INFO, __file__, 0, "x", None, None)
        seen.append(json.loads(formatter.format(record)))

    with trace.handling({}, {"id": "e-1", "source": "s"}):  # no subject: no ceSubject
        context = copy_context()
        thread = threading.Thread(target=context.run, args=(emit,))
        thread.start()
        thread.join()
    emit()
    assert seen[0]["ceId"] == "e-1" and "ceSubject" not in seen[0]
    assert "ceId" not in seen[1]


def test_gunicorns_settings_khook_relies_on_exist() -> None:
    """The seam with gunicorn for the functions-framework command: a gunicorn that renamed
    these settings fails here (khook would then serve with gunicorn's own log format)."""
    settings = Settings.coerce({"dedup": "memory"})
    rt = runtime.Runtime(settings, lambda: pytest.fail("not built"))
    names = ("logger_class", "when_ready", "post_worker_init", "worker_exit")
    known = {s.name: s for s in gunicorn.config.KNOWN_SETTINGS}
    before = {name: vars(known[name])["default"] for name in names}  # staticmethods as such
    try:
        defaults = {"logger_class": serving.JSONLogger, **serving.hooks(settings, rt)}
        assert serving.adopt_gunicorn_defaults(defaults) == []
        config = gunicorn.config.Config()
        assert config.logger_class is serving.JSONLogger
        assert (
            config.worker_exit is not None
            and config.settings["worker_exit"].get() is (defaults["worker_exit"])
        )
    finally:
        for name, value in before.items():
            known[name].default = value
    assert gunicorn.config.Config().logger_class is not serving.JSONLogger


def test_a_line_is_compact_json_whatever_its_fields_hold() -> None:
    """orjson writes a line; what it cannot write (an int past 64 bits, a key that is no
    string) the standard library writes; a datetime or anything else shows as its str()
    either way. A line is never lost to a field."""
    when = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    plain = {"msg": "é \u2028 x", "n": 1, "t": when, "set": {1}, "ok": True, "f": 1.5}
    line = logs.json_line(plain)
    assert "\n" not in line and ", " not in line and '": ' not in line
    assert json.loads(line) == {
        "msg": "é \u2028 x",
        "n": 1,
        "t": str(when),
        "set": "{1}",
        "ok": True,
        "f": 1.5,
    }
    huge = {"n": 2**70, 3: "three", "t": when}
    assert json.loads(logs.json_line(huge)) == {"n": 2**70, "3": "three", "t": str(when)}
    assert "\n" not in logs.json_line(huge) and ", " not in logs.json_line(huge)
