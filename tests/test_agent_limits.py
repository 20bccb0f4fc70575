"""The agent call against slow, huge and failing agents, all through real sockets: one total
deadline nothing the agent does can stretch, a size cap enforced while reading, a capped
Retry-After, the outcome of every fault (the fault matrix), and the shared connection pool."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from email.utils import format_datetime

import orjson
import pytest

from khook.agent import A2AClient, A2AVersion, AgentError, AgentRequest, AgentResult
from khook.core.hooks import AgentRef
from tests.support.agent import (
    A2AAgentServer,
    Fault,
    HostileAgent,
    deaf_port,
    unanswered_port,
)
from tests.support.clock import FakeClock

MIB = 1024 * 1024
BOUND = 5.0  # "did not hang": before the fix these calls ran for minutes
REQUEST = AgentRequest(
    agent=AgentRef("kagent", "k8s-agent"),
    prompt="Pod web-1 was OOM-killed",
    message_id="6a1f1e0e-0000-4000-8000-000000000002",
    hook_namespace="shop",
    hook_name="h",
)
ENDPOINT = "/api/a2a/kagent/k8s-agent/"
TASK = {"kind": "task", "id": "t-1", "contextId": "c-1", "status": {"state": "submitted"}}


def client(url: str, clock: FakeClock, **kw: object) -> A2AClient:
    return A2AClient(url, clock=clock, **kw)  # type: ignore[arg-type]


def failure(call: Callable[[], object]) -> tuple[AgentError, float]:
    """The AgentError ``call`` raised, and how long it took (real time)."""
    started = time.monotonic()
    with pytest.raises(AgentError) as err:
        call()
    return err.value, time.monotonic() - started


def rpc(**fields: object) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": REQUEST.message_id, **fields})


# --- One total deadline --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["trickle-head", "trickle-body", "stall"])
def test_a_hostile_agent_cannot_stretch_the_deadline(clock: FakeClock, mode: str) -> None:
    # Trickled one byte every 0.2 s, the head alone would take over 30 minutes, the body 20 s;
    # each byte used to restart the read timeout.
    with HostileAgent(mode, interval=0.2) as hostile:
        c = client(hostile.url, clock, timeout=1.0, attempts=4)
        err, took = failure(lambda: c.send(REQUEST))
        c.close()
    assert err.retryable and "timed out" in str(err)
    assert f"POST {hostile.url}{ENDPOINT}" in str(err), "names the URL tried"
    assert took < BOUND
    assert hostile.lasted and max(hostile.lasted) < BOUND, "khook hung up at the deadline"


def test_a_trickled_body_through_the_sdk_server_ends_at_the_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(
        Fault(200, {"Content-Type": "application/json"}, body=rpc(result=TASK), trickle=0.2)
    )
    err, took = failure(lambda: client(agent.url, clock, timeout=1.0).send(REQUEST))
    assert err.retryable and "timed out waiting for or reading the answer" in str(err)
    assert took < BOUND


def test_a_connect_that_hangs_ends_at_the_deadline(clock: FakeClock) -> None:
    with unanswered_port() as port:
        c = client(f"http://127.0.0.1:{port}", clock, timeout=1.0, attempts=4)
        err, took = failure(lambda: c.send(REQUEST))
    assert err.retryable and "timed out connecting" in str(err)
    assert took < BOUND


def test_an_agent_that_never_reads_cannot_stall_the_request(clock: FakeClock) -> None:
    big = replace(REQUEST, prompt="x" * (16 * MIB))  # more than the socket buffers hold
    with deaf_port() as port:
        c = client(f"http://127.0.0.1:{port}", clock, timeout=1.0, attempts=4)
        err, took = failure(lambda: c.send(big))
    assert err.retryable and "timed out sending the request" in str(err)
    assert took < BOUND


def test_the_deadline_includes_retries(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(*[Fault(503, delay=0.2)] * 20)
    c = client(agent.url, clock, timeout=1.0, attempts=20, backoff=0.01)
    err, took = failure(lambda: c.send(REQUEST))
    assert err.retryable and took < BOUND
    assert 2 <= len(agent.posts()) <= 5, "0.2 s per attempt: at most 5 fit in 1 s"
    assert "gave up after" in str(err)


def test_backoff_sleeps_count_against_the_same_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(429, {"Retry-After": "20"}), Fault(429, {"Retry-After": "20"}))
    err, _ = failure(lambda: client(agent.url, clock, timeout=30.0).send(REQUEST))
    assert clock.sleeps == [20.0], "a second 20 s wait would end after the 30 s deadline"
    assert len(agent.posts()) == 2 and err.retry_after == 20.0


# --- A size cap on answers, enforced while reading ------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_answer_is_refused_while_reading(
    agent: A2AAgentServer, clock: FakeClock, declared: bool
) -> None:
    size = 100 * MIB
    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(size)
    agent.fail_next(Fault(200, headers, size=size))
    c = client(agent.url, clock, attempts=4)
    tracemalloc.start()
    try:
        err, took = failure(lambda: c.send(REQUEST))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not err.retryable, "a 2xx: the agent took the message; a retry could start another"
    assert "over 1048576 bytes" in str(err) and f"{agent.url}{ENDPOINT}" in str(err)
    assert len(agent.posts()) == 1
    assert peak < 16 * MIB, f"read at most about the cap, not 100 MiB (peak {peak} bytes)"
    assert took < BOUND
    assert c.send(REQUEST).task_id, "the next call works (the connection was not reused)"


def test_the_cap_is_the_setting(agent: A2AAgentServer, clock: FakeClock) -> None:
    body = rpc(result=TASK)
    agent.fail_next(Fault(200, body=body), Fault(200, body=body))
    assert client(agent.url, clock, max_response_bytes=len(body)).send(REQUEST).task_id == "t-1"
    err, _ = failure(
        lambda: client(agent.url, clock, max_response_bytes=len(body) - 1).send(REQUEST)
    )
    assert not err.retryable and f"over {len(body) - 1} bytes" in str(err)


def test_a_huge_error_page_is_not_read(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(Fault(503, {"Retry-After": "2"}, size=100 * MIB))
    err, took = failure(lambda: client(agent.url, clock, attempts=1).send(REQUEST))
    assert err.retryable and err.retry_after == 2.0 and took < BOUND


def test_a_huge_agent_card_is_refused_and_0_3_spoken(clock: FakeClock) -> None:
    with A2AAgentServer(card_version="1.0") as agent:
        agent.fail_next(
            Fault(200, {"Content-Type": "application/json"}, size=100 * MIB, method="GET")
        )
        c = client(agent.url, clock, version=A2AVersion.AUTO)
        err_free = c.send(REQUEST)
        assert err_free.task_id
        (post,) = agent.posts()
        assert "a2a-version" not in post.headers, "the card was not read: A2A 0.3"


# --- Retry-After, capped -----------------------------------------------------------------


def http_date(clock: FakeClock, seconds: float) -> str:
    return format_datetime(clock.now() + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("999999", 300.0),
        ("9" * 5000, 300.0),  # more digits than Python parses into an int by default
        ("+20s", None),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
    ],
)
def test_retry_after_is_passed_on_capped(
    agent: A2AAgentServer, clock: FakeClock, value: str, expected: float | None
) -> None:
    agent.fail_next(Fault(429, {"Retry-After": value}))
    err, _ = failure(lambda: client(agent.url, clock, attempts=1).send(REQUEST))
    assert err.retryable and err.retry_after == expected


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    ("seconds", "expected"), [(20, 20.0), (-3600, 0.0), (10 * 365 * 86400, 300.0)]
)
def test_retry_after_as_an_http_date(
    agent: A2AAgentServer, clock: FakeClock, status: int, seconds: int, expected: float
) -> None:
    agent.fail_next(Fault(status, {"Retry-After": http_date(clock, seconds)}))
    err, _ = failure(lambda: client(agent.url, clock, attempts=1).send(REQUEST))
    assert err.retryable and err.retry_after == pytest.approx(expected)


def test_khook_waits_at_most_the_cap_itself(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(Fault(429, {"Retry-After": "999999"}))
    result = client(agent.url, clock, timeout=3600.0).send(REQUEST)
    assert result.task_id and clock.sleeps == [300.0]
    agent.fail_next(Fault(429, {"Retry-After": "999999"}))
    err, _ = failure(
        lambda: client(agent.url, clock, max_retry_after=60.0, attempts=1).send(REQUEST)
    )
    assert err.retry_after == 60.0


# --- The fault matrix: what each fault comes to -------------------------------------------

JSON = {"Content-Type": "application/json"}
MATRIX: list[tuple[str, Fault, bool, float | None, str]] = [
    # (case, fault, retryable, retry_after passed on, the message says)
    ("500", Fault(500), True, None, "HTTP 500"),
    ("502", Fault(502), True, None, "HTTP 502"),
    ("503-retry-after", Fault(503, {"Retry-After": "5"}), True, 5.0, "HTTP 503"),
    ("504", Fault(504), True, None, "HTTP 504"),
    ("429-small", Fault(429, {"Retry-After": "3"}), True, 3.0, "HTTP 429"),
    ("429-huge", Fault(429, {"Retry-After": "999999"}), True, 300.0, "HTTP 429"),
    ("429-none", Fault(429), True, None, "HTTP 429"),
    ("408", Fault(408), True, None, "HTTP 408"),
    ("400", Fault(400), False, None, 'HTTP 400: {"error":"planned fault"}'),
    ("401", Fault(401), False, None, "HTTP 401"),
    ("403", Fault(403), False, None, "HTTP 403"),
    ("404", Fault(404), False, None, "HTTP 404"),
    ("409", Fault(409), False, None, "HTTP 409"),
    ("422", Fault(422), False, None, "HTTP 422"),
    ("302", Fault(302, {"Location": "http://elsewhere/"}), False, None, "HTTP 302"),
    ("html", Fault(200, {"Content-Type": "text/html"}, body=b"<html>"), False, None, "not JSON"),
    ("empty", Fault(200, JSON, body=b""), False, None, "not JSON"),
    ("deep", Fault(200, JSON, body=b"[" * 100_000 + b"]" * 100_000), False, None, "not JSON"),
    ("not-rpc", Fault(200, JSON, body=b"[1, 2]"), False, None, "not JSON-RPC"),
    ("no-result", Fault(200, JSON, body=rpc()), False, None, "has no result"),
    (
        "neither",
        Fault(200, JSON, body=rpc(result={"kind": "status-update"})),
        False,
        None,
        "neither a task nor a message",
    ),
    (
        "rpc-internal",
        Fault(200, JSON, body=rpc(error={"code": -32603, "message": "boom"})),
        True,
        None,
        "JSON-RPC error -32603: boom",
    ),
    *[
        (
            f"rpc{code}",
            Fault(200, JSON, body=rpc(error={"code": code, "message": "no"})),
            False,
            None,
            f"JSON-RPC error {code}: no",
        )
        for code in (-32700, -32600, -32601, -32602, -32001, -32004)
    ],
    (
        "rpc-odd-code",
        Fault(200, JSON, body=rpc(error={"code": "-32603", "message": "x"})),
        False,
        None,
        "JSON-RPC error None",
    ),
    (
        "rpc-long-message",
        Fault(200, JSON, body=rpc(error={"code": 1, "message": "line\n" * 100_000})),
        False,
        None,
        "JSON-RPC error 1: line line",
    ),
    ("huge", Fault(200, JSON, size=8 * MIB), False, None, "over 1048576 bytes"),
]


@pytest.mark.parametrize("case", MATRIX, ids=[m[0] for m in MATRIX])
def test_fault_matrix(
    agent: A2AAgentServer, clock: FakeClock, case: tuple[str, Fault, bool, float | None, str]
) -> None:
    _, fault, retryable, retry_after, says = case
    agent.fail_next(fault)
    err, took = failure(lambda: client(agent.url, clock, attempts=1).send(REQUEST))
    assert (err.retryable, err.retry_after) == (retryable, retry_after)
    assert says in str(err) and f"POST {agent.url}{ENDPOINT}" in str(err)
    assert "\n" not in str(err) and len(str(err)) < 600, "one bounded line"
    assert took < BOUND
    kind = "http" if "HTTP " in says else "jsonrpc" if "JSON-RPC error" in says else "answer"
    assert err.kind == kind, "a bounded label for metrics and answers"
    # And what retrying means: a retryable fault is retried (the next answer is good), the
    # others are not.
    agent.fail_next(replace(fault))
    retrying = client(agent.url, clock, attempts=2, timeout=3600.0)
    if retryable:
        assert retrying.send(REQUEST).task_id
        assert len(agent.posts()) == 3
    else:
        failure(lambda: retrying.send(REQUEST))
        assert len(agent.posts()) == 2


def test_fault_matrix_refused_connection(clock: FakeClock) -> None:
    with unanswered_port() as port:
        pass  # closed: nothing listens there now
    err, took = failure(lambda: client(f"http://127.0.0.1:{port}", clock, attempts=1).send(REQUEST))
    assert err.retryable and err.retry_after is None and "cannot reach the agent" in str(err)
    assert f"http://127.0.0.1:{port}{ENDPOINT}" in str(err) and took < BOUND


def test_fault_matrix_dropped_mid_answer(clock: FakeClock) -> None:
    with HostileAgent("hang-up") as hostile:
        err, took = failure(lambda: client(hostile.url, clock, attempts=1).send(REQUEST))
    assert err.retryable and err.retry_after is None and "connection failed" in str(err)
    assert err.kind == "connection"
    assert f"POST {hostile.url}{ENDPOINT}" in str(err) and took < BOUND


@pytest.mark.parametrize("version", [A2AVersion.V0_3, A2AVersion.V1_0])
@pytest.mark.parametrize("state", ["failed", "rejected", "canceled"])
def test_fault_matrix_task_states(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion, state: str
) -> None:
    agent.end_next_tasks(state)
    err, _ = failure(lambda: client(agent.url, clock, version=version).send(REQUEST))
    assert not err.retryable and err.retry_after is None
    assert f"agent {state} the task" in str(err) and f"{agent.url}{ENDPOINT}" in str(err)
    assert err.kind == "task-failed"
    assert len(agent.posts()) == 1, "not retried"


def test_an_agent_cannot_plant_huge_ids(agent: A2AAgentServer, clock: FakeClock) -> None:
    task = {**TASK, "id": "t" * 100_000, "contextId": {"nested": "object"}}
    agent.fail_next(Fault(200, JSON, body=rpc(result=task)))
    result = client(agent.url, clock).send(REQUEST)
    assert result.task_id == "t" * 256 and result.context_id == ""


# --- One pool, kept-alive connections, many threads ----------------------------------------


def test_calls_reuse_one_kept_alive_connection(agent: A2AAgentServer, clock: FakeClock) -> None:
    c = client(agent.url, clock)
    for _ in range(5):
        c.send(REQUEST)
    assert len({p.client for p in agent.posts()}) == 1


def test_a_host_name_is_resolved_and_each_address_tried(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    # "localhost" may resolve to ::1 first, where nothing listens: the next address is tried.
    url = agent.url.replace("127.0.0.1", "localhost")
    assert client(url, clock, timeout=5.0).send(REQUEST).task_id
    assert agent.posts()[0].headers["host"] == url.removeprefix("http://")


def test_concurrent_calls_share_a_bounded_pool(agent: A2AAgentServer, clock: FakeClock) -> None:
    agent.fail_next(*[Fault(0, delay=0.05)] * 32)  # each call in flight a while
    c = client(agent.url, clock, max_connections=4, version=A2AVersion.AUTO)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results: list[AgentResult] = list(pool.map(lambda _: c.send(REQUEST), range(32)))
    assert len({r.task_id for r in results}) == 32 and len(agent.messages()) == 32
    assert 2 <= len({p.client for p in agent.posts()}) <= 4, "concurrent, within the bound"


def test_waiting_for_a_free_connection_counts_against_the_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(*[Fault(0, delay=0.6)] * 4)
    c = client(agent.url, clock, max_connections=1, timeout=1.0, attempts=1)

    def call(_: int) -> str:
        try:
            return c.send(REQUEST).task_id
        except AgentError as exc:
            return str(exc)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(call, range(4)))
    assert time.monotonic() - started < BOUND
    # One connection, 0.6 s per call, 1 s each: the first call fits, the others cannot.
    timed_out = [o for o in outcomes if "timed out" in o and "within 1s" in o]
    assert len(timed_out) >= 3
