"""The Kagent client against a real A2A server (a2a-sdk), A2A 0.3 and 1.0: the wire format,
retries, the per-tenant identity, agent names, and the circuit breaker.
(Deadlines, size caps, Retry-After caps, the fault matrix and pooling: test_agent_limits.py.)"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading
from dataclasses import replace

import pytest

from khook.agent import (
    A2AClient,
    A2AVersion,
    AgentError,
    AgentRequest,
    AgentResult,
    CircuitBreaker,
    DryRunClient,
    UserIdTemplateError,
    agent_endpoint,
    check_agent_url,
    check_user_id_template,
    user_id_for,
)
from khook.core.hooks import AgentRef
from tests.support.agent import A2AAgentServer, Fault
from tests.support.clock import FakeClock

REQUEST = AgentRequest(
    agent=AgentRef("kagent", "k8s-agent"),
    prompt="Pod web-1 was OOM-killed",
    message_id="6a1f1e0e-0000-4000-8000-000000000001",
    metadata={"khook.dev/hook": "shop/h"},
    hook_namespace="shop",
    hook_name="h",
)


def client(agent: A2AAgentServer, clock: FakeClock, **kw: object) -> A2AClient:
    return A2AClient(agent.url, clock=clock, **kw)  # type: ignore[arg-type]


def test_a2a_0_3_message_send_non_blocking(agent: A2AAgentServer, clock: FakeClock) -> None:
    result = client(agent, clock).send(REQUEST)
    (raw,) = agent.posts()
    assert raw.path == "/api/a2a/kagent/k8s-agent/"
    assert "a2a-version" not in raw.headers
    assert raw.headers["x-user-id"] == "khook:shop"
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
    assert (err.value.kind, err.value.status) == ("http", 429)
    assert clock.sleeps == [] and len(agent.posts()) == 1


def test_attempts_are_bounded(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(*[Fault(500)] * 5)
    with pytest.raises(AgentError) as err:
        client(agent, clock, attempts=3).send(REQUEST)
    assert err.value.retryable and (err.value.kind, err.value.status) == ("http", 500)
    assert len(agent.posts()) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(
    agent: A2AAgentServer, clock: FakeClock, status: int
) -> None:
    agent.fail_next(Fault(status))
    with pytest.raises(AgentError) as err:
        client(agent, clock).send(REQUEST)
    assert not err.value.retryable and (err.value.kind, err.value.status) == ("http", status)
    assert len(agent.posts()) == 1


def test_unknown_agent_is_a_clear_failure(agent: A2AAgentServer, clock: FakeClock) -> None:
    missing = replace(REQUEST, agent=AgentRef("kagent", "nobody"))
    with pytest.raises(AgentError) as err:
        client(agent, clock).send(missing)
    assert "404" in str(err.value) and not err.value.retryable
    assert f"POST {agent.url}/api/a2a/kagent/nobody/" in str(err.value), "names the URL tried"


def test_connection_refused_is_retryable(clock: FakeClock) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = A2AClient(f"http://127.0.0.1:{port}", clock=clock, attempts=2)
    with pytest.raises(AgentError) as err:
        c.send(REQUEST)
    assert err.value.retryable and "cannot reach" in str(err.value)
    assert err.value.kind == "connection"
    assert f"http://127.0.0.1:{port}/api/a2a/kagent/k8s-agent/" in str(err.value)
    assert len(clock.sleeps) == 1


def test_a_slow_agent_times_out_within_the_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(200, delay=3.0))
    with pytest.raises(AgentError) as err:
        client(agent, clock, timeout=0.3, attempts=1).send(REQUEST)
    assert err.value.retryable and "timed out" in str(err.value)
    assert err.value.kind == "timeout"


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
    assert logged["headers"]["X-User-Id"] == "khook:shop", "the same identity as a real call"
    assert result.kind == "dry-run"


# --- The identity khook presents (X-User-Id), per tenant ---------------------------------


def from_hook(namespace: str, name: str) -> AgentRequest:
    return replace(REQUEST, hook_namespace=namespace, hook_name=name)


def test_each_tenant_calls_with_its_own_identity(agent: A2AAgentServer, clock: FakeClock) -> None:
    c = client(agent, clock)  # the default template: khook:{namespace}
    c.send(from_hook("team-a", "oom"))
    c.send(from_hook("team-b", "oom"))
    assert [p.headers["x-user-id"] for p in agent.posts()] == ["khook:team-a", "khook:team-b"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("khook:{namespace}/{name}", "khook:team-a/oom-hook"),
        ("{name}.{namespace}@hooks.example.com", "oom-hook.team-a@hooks.example.com"),
        ("admin@kagent.dev", "admin@kagent.dev"),  # no placeholder: one fixed identity
        ("{{literal}}:{namespace}", "{literal}:team-a"),
    ],
)
def test_the_identity_template(
    agent: A2AAgentServer, clock: FakeClock, template: str, expected: str
) -> None:
    check_user_id_template(template)
    client(agent, clock, user_id=template).send(from_hook("team-a", "oom-hook"))
    assert agent.posts()[0].headers["x-user-id"] == expected
    out = io.StringIO()
    DryRunClient(out=out, user_id=template).send(from_hook("team-a", "oom-hook"))
    assert json.loads(out.getvalue())["headers"]["X-User-Id"] == expected


def test_an_empty_template_sends_no_identity(agent: A2AAgentServer, clock: FakeClock) -> None:
    client(agent, clock, user_id="").send(REQUEST)
    assert "x-user-id" not in agent.posts()[0].headers


@pytest.mark.parametrize(
    "template",
    [
        "khook:{user}",  # unknown placeholder
        "khook:{}",
        "khook:{0}",
        "khook:{namespace.__class__}",  # attribute access
        "khook:{namespace[0]}",
        "khook:{namespace!r}",
        "khook:{namespace:>300}",
        "khook:{namespace",  # unbalanced
        "khook:}",
        "khook:{namespace}\r\nX-Admin: yes",  # header injection
        "khook:\t{namespace}",
        "khook:équipe-{namespace}",  # not ASCII
        " khook:{namespace}",
        "k" * 300 + "{name}",  # can grow past 512 characters
    ],
)
def test_a_bad_template_fails_at_start_up(template: str, agent: A2AAgentServer) -> None:
    with pytest.raises(UserIdTemplateError):
        check_user_id_template(template)
    with pytest.raises(ValueError, match="user id template"):
        A2AClient(agent.url, clock=FakeClock(), user_id=template)
    with pytest.raises(ValueError, match="user id template"):
        DryRunClient(user_id=template)


def test_a_request_without_its_hook_is_refused_not_sent_as_anyone(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    with pytest.raises(AgentError) as err:
        client(agent, clock).send(replace(REQUEST, hook_namespace=""))
    assert not err.value.retryable and "needs the Hook's namespace" in str(err.value)
    assert agent.raw == []


def test_an_expanded_identity_is_checked_again() -> None:
    assert user_id_for("u:{namespace}", namespace="shop", name="h") == "u:shop"
    with pytest.raises(UserIdTemplateError, match="not allowed in a header"):
        user_id_for("u:{name}", namespace="shop", name="h\r\nX-Admin: yes")


def test_a_token_that_would_break_the_header_is_refused_without_showing_it(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    with pytest.raises(AgentError) as err:
        client(agent, clock, token=lambda: "s3cr3t\r\nX-Admin: yes").send(REQUEST)
    assert not err.value.retryable and "s3cr3t" not in str(err.value)
    assert agent.raw == []


# --- Agent names: DNS-1123 labels only ------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("kagent", "../../../api/sessions?x="),
        ("kagent", ".."),
        ("kagent", "a/b"),
        ("kagent", "a?b"),
        ("kagent", "a%2fb"),
        ("kagent", "a#b"),
        ("kagent", "K8s-Agent"),
        ("kagent", "-agent"),
        ("kagent", "agent-"),
        ("kagent", "a.b"),
        ("kagent", ""),
        ("kagent", "a" * 64),
        ("kagent", "a\nb"),
        ("other/../kagent", "k8s-agent"),
        ("", "k8s-agent"),
    ],
)
def test_an_agent_name_that_is_not_a_dns_label_is_never_called(
    agent: A2AAgentServer, clock: FakeClock, namespace: str, name: str
) -> None:
    bad = replace(REQUEST, agent=AgentRef(namespace, name))
    for c in (client(agent, clock), client(agent, clock, version=A2AVersion.AUTO)):
        with pytest.raises(AgentError) as err:
            c.send(bad)
        assert not err.value.retryable and "DNS-1123" in str(err.value)
        assert err.value.kind == "refused"
    with pytest.raises(AgentError):
        DryRunClient(out=io.StringIO()).send(bad)
    assert agent.raw == [], "not one request left khook"


def test_valid_agent_names_make_the_endpoint() -> None:
    longest = "a" * 63
    assert agent_endpoint("http://kagent:8083/", AgentRef("team-a", longest)) == (
        f"http://kagent:8083/api/a2a/team-a/{longest}/"
    )
    assert (
        agent_endpoint("http://k/prefix", AgentRef("0", "a-1")) == "http://k/prefix/api/a2a/0/a-1/"
    )


def test_credentials_in_the_agent_url_are_used_but_never_shown(clock: FakeClock) -> None:
    with A2AAgentServer() as agent:
        base = agent.url.replace("http://", "http://khook:pa%24%24word@")
        c = A2AClient(base, clock=clock)
        c.send(REQUEST)
        assert agent.posts()[0].headers["authorization"] == "Basic a2hvb2s6cGEkJHdvcmQ="
        agent.fail_next(Fault(404))
        with pytest.raises(AgentError) as err:
            c.send(REQUEST)
    assert agent.url in str(err.value) and "pa$$word" not in str(err.value)
    assert "pa%24%24word" not in str(err.value)


@pytest.mark.parametrize(
    "base", ["ftp://k", "http://", "http://k:99999", "http://k/?a=1", "k:8083"]
)
def test_an_unusable_agent_url_fails_at_start_up(base: str) -> None:
    with pytest.raises(ValueError):
        check_agent_url(base)
    with pytest.raises(ValueError):
        A2AClient(base, clock=FakeClock())


# --- The circuit breaker -------------------------------------------------------------------


class Scripted:
    """An agent whose answers are planned: "ok", "fail" (retryable) or "refuse" (not), each
    optionally held at a gate until the test opens it, to see who is let through and when."""

    def __init__(self, default: str = "fail") -> None:
        self.default = default
        self.plan: list[tuple[str, threading.Event | None]] = []
        self.calls = 0
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def hold(self, outcome: str) -> threading.Event:
        gate = threading.Event()
        with self._lock:
            self.plan.append((outcome, gate))
        return gate

    def send(self, request: AgentRequest) -> AgentResult:
        with self._lock:
            self.calls += 1
            outcome, gate = self.plan.pop(0) if self.plan else (self.default, None)
        self.entered.set()
        if gate is not None:
            gate.wait(timeout=10)  # bounded: the old breaker let every caller in here
        if outcome == "fail":
            raise AgentError("down", retryable=True)
        if outcome == "refuse":
            raise AgentError("HTTP 400", retryable=False)
        return AgentResult("t", "c", "submitted", "task")

    def close(self) -> None:
        pass


def in_thread(breaker: CircuitBreaker, sink: list[object]) -> threading.Thread:
    def call() -> None:
        try:
            sink.append(breaker.send(REQUEST))
        except AgentError as exc:
            sink.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def open_circuit(clock: FakeClock, **kw: float) -> tuple[CircuitBreaker, Scripted, list[bool]]:
    inner = Scripted()
    changes: list[bool] = []
    breaker = CircuitBreaker(inner, clock, threshold=3, open_for=30.0, **kw)  # type: ignore[arg-type]
    breaker.on_change = lambda: changes.append(bool(breaker.unavailable()))
    for _ in range(3):
        with pytest.raises(AgentError):
            breaker.send(REQUEST)
    assert breaker.unavailable() == {"kagent/k8s-agent"} and inner.calls == 3
    assert changes == [True]
    return breaker, inner, changes


def test_half_open_lets_exactly_one_trial_call_through(clock: FakeClock) -> None:
    breaker, inner, changes = open_circuit(clock, trial_wait=2.0)
    clock.advance(30)  # the pause is over: half-open
    inner.default = "ok"
    gate = inner.hold("ok")
    trial: list[object] = []
    trial_thread = in_thread(breaker, trial)
    assert inner.entered.wait(timeout=10), "the trial call reached the agent"

    start = threading.Barrier(8)
    errors: list[object] = []

    def caller() -> None:
        start.wait(timeout=10)
        try:
            errors.append(breaker.send(REQUEST))
        except AgentError as exc:
            errors.append(exc)

    others = [threading.Thread(target=caller) for _ in range(8)]
    for t in others:
        t.start()
    for t in others:
        t.join(timeout=5)
    assert not any(t.is_alive() for t in others), "the others failed fast, they did not wait"
    assert inner.calls == 4, "only the trial call reached the agent"
    refused = [e for e in errors if isinstance(e, AgentError)]
    assert len(refused) == 8
    assert all(e.retryable and e.retry_after == 2.0 and "trial call" in str(e) for e in refused)

    gate.set()
    trial_thread.join(timeout=10)
    assert isinstance(trial[0], AgentResult) and breaker.unavailable() == set()
    assert changes == [True, False], "the trial's success closed the circuit"
    breaker.send(REQUEST)
    assert inner.calls == 5


def test_a_failed_trial_reopens_for_the_full_pause(clock: FakeClock) -> None:
    breaker, inner, changes = open_circuit(clock)
    clock.advance(30)
    with pytest.raises(AgentError) as err:
        breaker.send(REQUEST)  # the trial fails
    assert err.value.retryable and inner.calls == 4
    clock.advance(29)
    with pytest.raises(AgentError) as err:
        breaker.send(REQUEST)
    assert inner.calls == 4, "paused again: the agent was not called"
    assert err.value.retry_after == pytest.approx(1.0)
    assert err.value.kind == "circuit-open"
    clock.advance(1)
    inner.default = "ok"
    breaker.send(REQUEST)  # the next trial succeeds
    assert inner.calls == 5 and breaker.unavailable() == set()
    assert changes == [True, False], "re-opening is no change; closing is"


def test_a_trial_the_agent_refuses_still_shows_it_is_up(clock: FakeClock) -> None:
    breaker, inner, _ = open_circuit(clock)
    clock.advance(30)
    inner.default = "refuse"
    with pytest.raises(AgentError) as err:
        breaker.send(REQUEST)
    assert not err.value.retryable and breaker.unavailable() == set()


def test_only_failures_in_a_row_open_the_circuit(clock: FakeClock) -> None:
    inner = Scripted()
    breaker = CircuitBreaker(inner, clock, threshold=3, open_for=30.0)
    for outcome in ("fail", "fail", "ok", "fail", "refuse", "fail", "fail"):
        inner.default = outcome
        with contextlib.suppress(AgentError):
            breaker.send(REQUEST)
    assert breaker.unavailable() == set() and inner.calls == 7
    with pytest.raises(AgentError):
        breaker.send(REQUEST)  # the third in a row
    assert breaker.unavailable() == {"kagent/k8s-agent"}


def test_a_late_success_closes_the_circuit(clock: FakeClock) -> None:
    inner = Scripted()
    breaker = CircuitBreaker(inner, clock, threshold=1, open_for=30.0)
    gate = inner.hold("ok")
    late: list[object] = []
    thread = in_thread(breaker, late)  # started while closed, held
    assert inner.entered.wait(timeout=10)
    with pytest.raises(AgentError):
        breaker.send(REQUEST)  # fails: the circuit opens
    assert breaker.unavailable()
    gate.set()
    thread.join(timeout=10)
    assert isinstance(late[0], AgentResult)
    assert breaker.unavailable() == set(), "a success shows the agent works"


def test_a_late_failure_does_not_extend_the_pause(clock: FakeClock) -> None:
    inner = Scripted()
    breaker = CircuitBreaker(inner, clock, threshold=1, open_for=30.0)
    gate = inner.hold("fail")
    late: list[object] = []
    thread = in_thread(breaker, late)
    assert inner.entered.wait(timeout=10)
    with pytest.raises(AgentError):
        breaker.send(REQUEST)  # opens until +30
    clock.advance(10)
    gate.set()
    thread.join(timeout=10)  # fails late, at +10
    clock.advance(20)
    inner.default = "ok"
    breaker.send(REQUEST)  # +30: half-open, the trial goes through
    assert breaker.unavailable() == set()
