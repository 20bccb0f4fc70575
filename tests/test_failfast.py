"""Fail fast on configuration, retry on weather: `khook serve` and `functions-framework` as
real processes.

A mistake no retry can fix stops the process before it serves: exit 2, one JSON line on
stderr naming the setting, no traceback. What a retry can fix (an API server or an agent that
cannot be reached) keeps it up, with /readyz 503 and the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from khook.cli._common import load_sample
from khook.settings import DEDUP_STORES
from khook.stores._open import KINDS
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault, deaf_port
from tests.support.apiserver import APIServer
from tests.support.events import HOOKS, ROOT, SAMPLES
from tests.support.process import (
    FUNCTIONS_FRAMEWORK,
    KHOOK,
    clean_env,
    free_port,
    functions_framework,
    khook_serve,
    refused,
)

OOM = SAMPLES / "oom-kill-pod-status.json"

# (flags, environment, what the one line must say); "{tmp}" is the test's directory.
MISTAKES: dict[str, tuple[list[str], dict[str, str], str]] = {
    "unknown dedup store": (
        ["--dedup", "redis"],
        {},
        "dedup (--dedup / KHOOK_DEDUP): unknown dedup store 'redis'",
    ),
    "dedup store with a stray argument": (
        ["--dedup", "lease:x"],
        {},
        "only tinydb takes a PATH",
    ),
    "nonexistent Hook directory": (
        ["--hooks", "{tmp}/nonexistent/"],
        {},
        "hooks (--hooks / KHOOK_HOOKS): {tmp}/nonexistent: no such file or directory",
    ),
    "nonexistent Hook file from the environment": (
        [],
        {"KHOOK_HOOKS": f"{HOOKS},{{tmp}}/gone.yaml"},
        "{tmp}/gone.yaml: no such file or directory",
    ),
    "a flag that is not a number": (["--port", "http"], {}, "argument --port: invalid int"),
    "an unknown flag": (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
    "a bad log level": ([], {"KHOOK_LOG_LEVEL": "verbose"}, "'verbose' is not a log level"),
    "a duration that is not one": (
        [],
        {"KHOOK_AGENT_TIMEOUT": "soon"},
        "agent_timeout (KHOOK_AGENT_TIMEOUT)",
    ),
    "a count that is not a number": (
        [],
        {"THREADS": "many"},
        "threads (THREADS): expected a whole number, not 'many'",
    ),
    "a broken rules file": (
        ["--rules", "{tmp}/rules.yaml"],
        {},
        "rules (--rules / KHOOK_RULES)",
    ),
    "an agent URL khook cannot call": (
        ["--agent-url", "ftp://kagent"],
        {},
        "agent_url (--agent-url / KAGENT_URL): agent URL must be http:// or https://",
    ),
    "a Kagent token file that does not exist": (
        ["--agent-url", "http://127.0.0.1:9"],
        {"KAGENT_TOKEN_FILE": "{tmp}/token"},
        "KAGENT_TOKEN_FILE: {tmp}/token: no such file or directory",
    ),
    "token auth without a token": (
        ["--auth", "token"],
        {},
        "token auth needs KHOOK_AUTH_TOKEN or KHOOK_AUTH_TOKEN_FILE",
    ),
    "token auth with an unusable token": (
        [],
        {"KHOOK_AUTH": "token", "KHOOK_AUTH_TOKEN": "short"},
        "at least 16 characters",
    ),
    "token auth with a token file that does not exist": (
        ["--auth", "token"],
        {"KHOOK_AUTH_TOKEN_FILE": "{tmp}/secret"},
        "cannot read the auth token file {tmp}/secret",
    ),
    "oidc auth without an audience": (["--auth", "oidc"], {}, "needs KHOOK_AUTH_AUDIENCE"),
    "Hooks from the cluster without a kubeconfig": (
        ["--hooks-from-cluster"],
        {},
        "Hooks from the cluster (--hooks-from-cluster / KHOOK_HOOKS=cluster) needs Kubernetes "
        "credentials: no kubeconfig at ~/.kube/config (KUBECONFIG), and not in a pod",
    ),
    "Hooks from the cluster with a kubeconfig that does not exist": (
        [],
        {"KHOOK_HOOKS": "cluster", "KUBECONFIG": "{tmp}/kubeconfig"},
        "no kubeconfig at {tmp}/kubeconfig",
    ),
    "in a pod without its service account": (
        [],
        {"KHOOK_HOOKS": "cluster", "KUBERNETES_SERVICE_HOST": "10.96.0.1"},
        "no usable service account in this pod",
    ),
    "the lease store without credentials": (
        ["--dedup", "lease"],
        {},
        "the lease dedup store (--dedup / KHOOK_DEDUP) needs Kubernetes credentials",
    ),
}


def _one_json_line(stderr: str) -> dict[str, object]:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    line: dict[str, object] = json.loads(lines[0])
    assert line["level"] == "error" and line["msg"] == "khook cannot start", line
    return line


@pytest.mark.parametrize("case", MISTAKES, ids=list(MISTAKES))
def test_khook_serve_refuses_a_configuration_mistake(case: str, tmp_path: Path) -> None:
    flags, env, expected = MISTAKES[case]
    (tmp_path / "rules.yaml").write_text("rules: [{eventType: BAD}]\n")
    tmp = str(tmp_path)
    argv = [KHOOK, "serve", "--host", "127.0.0.1", "--port", str(free_port())]
    argv += [f.replace("{tmp}", tmp) for f in flags]
    environment = clean_env(tmp_path, **{k: v.replace("{tmp}", tmp) for k, v in env.items()})
    done = refused(argv, environment)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    line = _one_json_line(done.stderr)
    assert expected.replace("{tmp}", tmp) in str(line["error"])


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KHOOK_DEDUP": "redis"}, "unknown dedup store 'redis'"),
        ({"KHOOK_HOOKS": "/nonexistent/hooks"}, "/nonexistent/hooks: no such file or directory"),
        ({"KHOOK_LOG_LEVEL": "verbose"}, "'verbose' is not a log level"),
        ({"KHOOK_AUTH": "token"}, "token auth needs KHOOK_AUTH_TOKEN"),
    ],
    ids=["dedup", "hooks", "log-level", "auth"],
)
def test_functions_framework_refuses_to_start_too(
    env: dict[str, str], expected: str, tmp_path: Path
) -> None:
    """Under `functions-framework --target handle`, where an event would otherwise get 503
    forever and /healthz 200: the process exits, so a Knative revision never becomes ready and
    its log says why."""
    argv = [FUNCTIONS_FRAMEWORK, "--target", "handle", "--source", "functions/main.py"]
    done = refused([*argv, "--port", str(free_port())], clean_env(tmp_path, **env))
    assert done.returncode == 2, done.stderr
    assert expected in str(_one_json_line(done.stderr)["error"])


def test_the_dedup_stores_settings_accepts_are_the_ones_khook_opens() -> None:
    assert DEDUP_STORES == KINDS


def test_an_unreachable_api_server_is_weather(tmp_path: Path) -> None:
    """Credentials, but no API server behind them: khook serves, /readyz says why it is not
    ready, an event gets 503 (retried by Knative), and nothing has exited."""
    with APIServer() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig")
    env = clean_env(tmp_path, KUBECONFIG=str(kubeconfig), KHOOK_COLD_START_WAIT="0.2s")
    with khook_serve(
        "--hooks-from-cluster", "--dedup", "memory", directory=tmp_path, env=env, ready=False
    ) as served:
        # The event waits for the pipeline to be built, then for the first list of Hooks
        # (KHOOK_COLD_START_WAIT), in vain.
        answer = served.post(*load_sample(OOM))
        assert answer.status_code == 503 and "not been listed" in answer.text
        ready = served.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == "listing Hooks"
        assert served.get("/healthz").status_code == 200
        assert served.process.poll() is None


def test_an_unreachable_agent_is_weather(tmp_path: Path) -> None:
    """The agent's URL is checked (it must be http(s)), not called, at start: khook is ready;
    an event the agent cannot take is a 503 whose reason names the URL tried."""
    port = free_port()  # nothing listens there
    env = clean_env(tmp_path, KHOOK_AGENT_ATTEMPTS="1")
    agent = f"http://khook:s3cret@127.0.0.1:{port}"
    args = ("--hooks", str(HOOKS), "--dedup", "memory", "--agent-url", agent)
    with khook_serve(*args, directory=tmp_path, env=env) as served:
        answer = served.post(*load_sample(OOM))
        assert answer.status_code == 503
        error = answer.json()["error"]
        url = f"POST http://127.0.0.1:{port}/api/a2a/kagent/k8s-agent/: cannot reach the agent"
        assert url in error and "s3cret" not in error
        assert served.get("/readyz").status_code == 200  # the next event may find it up
    assert "s3cret" not in served.stderr.read_text()


def test_readyz_reflects_a_store_that_cannot_work(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = clean_env(tmp_path)
    args = ("--hooks", str(HOOKS), "--dedup", f"tinydb:{state}/dedup")
    with khook_serve(*args, directory=tmp_path, env=env) as served:
        assert served.get("/readyz").json()["store"] == {"ready": True, "problems": []}
        shutil.rmtree(state)
        state.write_text("a file where the store's directory must be")
        unready = served.get("/readyz")
        assert unready.status_code == 503
        assert unready.json()["error"].startswith(f"dedup store: cannot use {state}/dedup")
        state.unlink()
        assert served.get("/readyz").status_code == 200  # the store repairs itself


def test_functions_framework_serves_a_good_configuration(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KHOOK_HOOKS=str(HOOKS), KHOOK_DEDUP="memory")
    with functions_framework(tmp_path, env) as served:
        answer = served.post(*load_sample(OOM))
        assert answer.status_code == 202
        assert answer.headers["X-Khook-Event-Type"] == "oom-kill"
        assert served.get("/readyz").json()["hooks"] == 3


# ---- failures that stay visible: khook send, and any command whose reader goes away ------


def _send(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return refused([KHOOK, "send", *args], clean_env(tmp_path))


def test_send_exits_2_when_the_server_cannot_be_reached(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done = _send(str(OOM), str(OOM), "--to", f"http://me:pw@127.0.0.1:{port}/", tmp_path=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"{OOM}: cannot reach http://127.0.0.1:{port}/: [Errno 111] Connection refused; "
        "1 more file(s) not sent"
    ]


def test_send_exits_2_when_the_server_does_not_answer_in_time(tmp_path: Path) -> None:
    with deaf_port() as port:
        done = _send(
            str(OOM), "--to", f"http://127.0.0.1:{port}", "--timeout", "0.5", tmp_path=tmp_path
        )
    assert done.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}: timed out" in done.stderr


def test_send_exits_2_when_the_name_does_not_resolve(tmp_path: Path) -> None:
    done = _send(str(OOM), "--to", "http://khook.invalid:8080", "--timeout", "5", tmp_path=tmp_path)
    assert done.returncode == 2 and "cannot reach http://khook.invalid:8080: " in done.stderr


def test_send_exits_1_when_an_event_failed_even_with_a_2xx(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    """The agent refuses the message for good: khook answers 202 (a retry would not help)
    with failed=1, and khook send says so with its exit code."""
    fn = make_function()
    agent.fail_next(Fault(400))
    done = _send(str(OOM), "--to", fn.url, tmp_path=tmp_path)
    assert "202 Accepted" in done.stdout and "failed=1" in done.stdout
    assert done.returncode == 1
    passed = _send(str(SAMPLES / "node-not-ready-event.json"), "--to", fn.url, tmp_path=tmp_path)
    assert passed.returncode == 0 and "failed=0" in passed.stdout


def test_send_exits_1_when_an_answer_is_not_2xx(
    tmp_path: Path, make_function: FunctionFactory
) -> None:
    event = tmp_path / "no-id.json"
    event.write_text(json.dumps({"specversion": "1.0", "source": "s", "type": "t"}))
    done = _send(str(event), "--to", make_function().url, tmp_path=tmp_path)
    assert done.returncode == 1 and "400 Bad Request" in done.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["validate", str(HOOKS)],
        ["render", "--hook", str(HOOKS), "--event", str(OOM)],
        ["replay", str(ROOT / "sources" / "storms" / "oom-crashloop")],
    ],
    ids=["help", "validate", "render", "replay"],
)
def test_a_reader_that_went_away_ends_a_command_quietly(argv: list[str], tmp_path: Path) -> None:
    """`khook ... | head`: the pipe is closed before the command writes a byte, so every
    write fails; the command stops with 141 (a shell's 128 + SIGPIPE) and says nothing."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [KHOOK, *argv],
            cwd=ROOT,
            env=clean_env(tmp_path),
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")
