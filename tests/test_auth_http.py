"""Sender authentication through the real HTTP server: a forged event never reaches a Hook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from khook.cli import main
from khook.settings import Settings
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import (
    Kube,
    apiserver,
    cluster_function,
    cluster_settings,
    config,
    hook_doc,
)
from tests.support.events import oom_request, outcome
from tests.support.function import FunctionServer

SECRET = "a-shared-secret-of-some-length"
SOURCE = "system:serviceaccount:khook-system:khook-oidc-sources.knative.dev-apiserversource"
AUDIENCE = "serving.knative.dev/service/khook-system/khook"


def test_token_mode_refuses_a_forged_event_and_accepts_the_sender(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function(auth="token", auth_token=SECRET)
    headers, body = oom_request()
    missing = fn.post(headers, body)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = fn.post({**headers, "Authorization": "Bearer not-the-secret-at-all"}, body)
    assert wrong.status_code == 401
    assert "not-the-secret" not in wrong.text
    assert agent.messages() == []  # neither reached a Hook
    right = fn.post({**headers, "Authorization": f"Bearer {SECRET}"}, body)
    assert right.status_code == 202
    assert right.headers["X-Khook-Outcome"] == outcome(fired=1)
    assert len(agent.messages()) == 1


def test_probes_need_no_token(make_function: FunctionFactory) -> None:
    fn = make_function(auth="token", auth_token=SECRET)
    assert fn.get("/healthz").status_code == 200
    assert fn.get("/readyz").status_code == 200


def test_a_token_mode_without_a_token_does_not_start(make_function: FunctionFactory) -> None:
    fn = make_function(auth="token")
    r = fn.post(*oom_request())
    assert r.status_code == 503
    assert "auth" in r.json()["error"]
    assert fn.get("/readyz").status_code == 503


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


@pytest.fixture
def oidc_khook(
    server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> Iterator[FunctionServer]:
    Kube(server).apply_hook(hook_doc("default", "pods", config("oom-kill")))
    settings: Settings = cluster_settings(
        agent.url, auth="oidc", auth_audience=AUDIENCE, auth_senders=(SOURCE,)
    )
    with cluster_function(server, clock, settings) as fn:
        yield fn


def post(fn: FunctionServer, token: str | None) -> Any:
    headers, body = oom_request()
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return fn.post(headers, body)


def test_oidc_mode_accepts_the_sources_token(
    oidc_khook: FunctionServer, server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> None:
    r = post(oidc_khook, server.issuer.token(SOURCE, AUDIENCE, now=clock.now()))
    assert r.status_code == 202
    assert r.headers["X-Khook-Outcome"] == outcome(fired=1)
    assert len(agent.messages()) == 1


def test_oidc_mode_refuses_what_is_not_the_source(
    oidc_khook: FunctionServer, server: APIServer, clock: FakeClock, agent: A2AAgentServer
) -> None:
    now = clock.now()
    other = "system:serviceaccount:team-a:default"
    assert post(oidc_khook, None).status_code == 401
    assert post(oidc_khook, server.issuer.token(SOURCE, "someone-else", now=now)).status_code == 401
    expired = server.issuer.token(SOURCE, AUDIENCE, now=now - timedelta(hours=2))
    assert post(oidc_khook, expired).status_code == 401
    assert post(oidc_khook, server.issuer.token(other, AUDIENCE, now=now)).status_code == 403
    assert agent.messages() == []


def test_khook_send_presents_the_shared_secret(
    make_function: FunctionFactory,
    agent: A2AAgentServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fn = make_function(auth="token", auth_token=SECRET)
    secret = tmp_path / "token"
    secret.write_text(SECRET + "\n")
    monkeypatch.setenv("KHOOK_AUTH_TOKEN_FILE", str(secret))
    assert main(["send", "sources/samples/oom-kill-pod-status.json", "--to", fn.url]) == 0
    assert "202" in capsys.readouterr().out
    assert len(agent.messages()) == 1
