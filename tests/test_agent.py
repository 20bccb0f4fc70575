"""The Kagent client against a real A2A server (a2a-sdk), A2A 0.3 and 1.0."""

from __future__ import annotations

import io
import json
import logging
import socket

import pytest

from khook.agent import A2AClient, A2AVersion, AgentError, AgentRequest, DryRunClient
from khook.core.hooks import AgentRef
from tests.support.agent import A2AAgentServer, Fault
from tests.support.clock import FakeClock

REQUEST = AgentRequest(
    agent=AgentRef("kagent", "k8s-agent"),
    prompt="Pod web-1 was OOM-killed",
    message_id="6a1f1e0e-0000-4000-8000-000000000001",
    metadata={"khook.dev/hook": "shop/h"},
)


def client(agent: A2AAgentServer, clock: FakeClock, **kw: object) -> A2AClient:
    return A2AClient(agent.url, clock=clock, **kw)  # type: ignore[arg-type]


def test_a2a_0_3_message_send_non_blocking(agent: A2AAgentServer, clock: FakeClock) -> None:
    result = client(agent, clock).send(REQUEST)
    (raw,) = agent.posts()
    assert raw.path == "/api/a2a/kagent/k8s-agent/"
    assert "a2a-version" not in raw.headers
    assert raw.headers["x-user-id"] == "admin@kagent.dev"
    assert raw.body["method"] == "message/send"
    assert raw.body["params"]["configuration"] == {"blocking": False}
    message = raw.body["params"]["message"]
    assert message["role"] == "user" and message["kind"] == "message"
    assert message["parts"] == [{"kind": "text", "text": REQUEST.prompt}]
    (got,) = agent.messages()
    assert got.text == REQUEST.prompt and got.metadata == {"khook.dev/hook": "shop/h"}
    assert result.kind == "task" and result.task_id and result.context_id
    assert result.state == "submitted"


def test_a2a_1_0_send_message(agent: A2AAgentServer, clock: FakeClock) -> None:
    result = client(agent, clock, version=A2AVersion.V1_0).send(REQUEST)
    (raw,) = agent.posts()
    assert raw.headers["a2a-version"] == "1.0"
    assert raw.body["method"] == "SendMessage"
    assert raw.body["params"]["configuration"] == {"returnImmediately": True}
    assert raw.body["params"]["message"]["role"] == "ROLE_USER"
    assert agent.messages()[0].text == REQUEST.prompt
    assert result.task_id and result.context_id and result.state == "submitted"


@pytest.mark.parametrize(("card_version", "header"), [("1.0", "1.0"), ("0.3.0", None)])
def test_auto_reads_the_agent_card(clock: FakeClock, card_version: str, header: str) -> None:
    with A2AAgentServer(card_version=card_version) as agent:
        c = client(agent, clock, version=A2AVersion.AUTO)
        c.send(REQUEST)
        c.send(REQUEST)
        posts = agent.posts()
        assert [p.headers.get("a2a-version") for p in posts] == [header, header]
        cards = [r for r in agent.raw if r.method == "GET"]
        assert len(cards) == 1, "the card is read once and cached"
        assert len(agent.messages()) == 2


def test_retries_5xx_with_growing_backoff_and_the_same_message_id(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(503), Fault(502))
    result = client(agent, clock, attempts=4, backoff=0.5).send(REQUEST)
    assert result.task_id
    assert len(agent.posts()) == 3
    assert {p.body["params"]["message"]["messageId"] for p in agent.posts()} == {REQUEST.message_id}
    first, second = clock.sleeps
    assert 0.25 <= first <= 0.5 and 0.5 <= second <= 1.0


def test_429_honours_retry_after(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(Fault(429, {"Retry-After": "7"}))
    client(agent, clock, timeout=30.0).send(REQUEST)
    assert clock.sleeps == [7.0]


def test_retry_after_beyond_the_deadline_gives_up_at_once(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(429, {"Retry-After": "120"}))
    with pytest.raises(AgentError) as err:
        client(agent, clock, timeout=30.0).send(REQUEST)
    assert err.value.retryable and err.value.retry_after == 120.0
    assert clock.sleeps == [] and len(agent.posts()) == 1


def test_attempts_are_bounded(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(*[Fault(500)] * 5)
    with pytest.raises(AgentError) as err:
        client(agent, clock, attempts=3).send(REQUEST)
    assert err.value.retryable
    assert len(agent.posts()) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(
    agent: A2AAgentServer, clock: FakeClock, status: int
) -> None:
    agent.fail_next(Fault(status))
    with pytest.raises(AgentError) as err:
        client(agent, clock).send(REQUEST)
    assert not err.value.retryable
    assert len(agent.posts()) == 1


def test_unknown_agent_is_a_clear_failure(agent: A2AAgentServer, clock: FakeClock) -> None:
    missing = AgentRequest(AgentRef("kagent", "nobody"), "x", "m-1")
    with pytest.raises(AgentError) as err:
        client(agent, clock).send(missing)
    assert "404" in str(err.value) and not err.value.retryable


def test_connection_refused_is_retryable(clock: FakeClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = A2AClient(f"http://127.0.0.1:{port}", clock=clock, attempts=2)
    with pytest.raises(AgentError) as err:
        c.send(REQUEST)
    assert err.value.retryable and "cannot reach" in str(err.value)
    assert len(clock.sleeps) == 1


def test_a_slow_agent_times_out_within_the_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(200, delay=3.0))
    with pytest.raises(AgentError) as err:
        client(agent, clock, timeout=0.3, attempts=1).send(REQUEST)
    assert err.value.retryable and "timed out" in str(err.value)


def test_token_is_sent_but_never_logged(
    agent: A2AAgentServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    agent.fail_next(Fault(503))
    c = client(agent, clock, token=lambda: "s3cr3t-token")
    c.send(REQUEST)
    assert agent.posts()[-1].headers["authorization"] == "Bearer s3cr3t-token"
    ours = [
        r.getMessage() + str(r.__dict__)
        for r in caplog.records
        if r.name.startswith(("khook", "httpx", "httpcore"))
    ]
    assert ours, "khook and its HTTP client did log"
    assert not [line for line in ours if "s3cr3t-token" in line]
    assert "s3cr3t-token" not in json.dumps(c.http_request(REQUEST).redacted())


def test_dry_run_prints_the_exact_request_as_one_json_line() -> None:
    out = io.StringIO()
    result = DryRunClient(out=out, version=A2AVersion.V1_0).send(REQUEST)
    (line,) = out.getvalue().splitlines()
    logged = json.loads(line)
    assert logged["dryRun"] is True
    assert logged["url"].endswith("/api/a2a/kagent/k8s-agent/")
    assert logged["headers"]["A2A-Version"] == "1.0"
    assert logged["body"]["method"] == "SendMessage"
    assert logged["body"]["params"]["message"]["parts"] == [{"text": REQUEST.prompt}]
    assert result.kind == "dry-run"
