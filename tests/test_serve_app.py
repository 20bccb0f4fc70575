"""`khook serve` hands every POST straight to the function (khook.function.direct_posts);
`functions-framework --target handle` routes it through functions-framework's Starlette app.
The same requests, sent over real HTTP to each in turn, get the same answers and the agent the
same messages."""

from __future__ import annotations

import asyncio
from typing import Any

from khook.function import direct_posts
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.events import apiserver_event, binary, oom_status, pod, recovered, structured
from tests.support.function import FunctionServer

# What differs from one answer to the next whatever the app: when it was made.
_VARYING = {"date", "server"}
BODY_LIMIT = 4096


def _requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    oom = binary(apiserver_event(pod(container_statuses=[oom_status()])))
    other = structured(
        apiserver_event(
            pod("api-5c6d7f8b9-q7r8s", owner="api-5c6d7f8b9", container_statuses=[oom_status()])
        )
    )
    healthy = binary(apiserver_event(recovered(pod("db-6b7c8d9e0-a1b2c"))))
    headers, _ = oom
    big = b'{"kind": "Pod", "pad": "' + b"x" * BODY_LIMIT + b'"}'
    return [
        ("POST", "/", *oom),  # a new incident: the agent is called
        ("POST", "/", *oom),  # its redelivery: a duplicate
        ("POST", "/any/path", *other),  # an event on another path, structured mode
        ("POST", "/", *healthy),  # nothing any Hook wants
        ("POST", "/", {"content-type": "application/json"}, b"{}"),  # not a CloudEvent
        ("POST", "/", {"content-type": "application/json"}, b"{"),  # not even JSON
        ("POST", "/", headers, big),  # over the body limit
        ("POST", "/healthz", {}, b""),
        ("GET", "/", {}, b""),
        ("PUT", "/", headers, oom[1]),
        ("GET", "/healthz", {}, b""),
        ("GET", "/readyz", {}, b""),
        ("GET", "/robots.txt", {}, b""),
    ]


def _requests_counted(fn: FunctionServer) -> dict[str, float]:
    """khook_requests_total by its labels, as the scrape gives it."""
    counted = {}
    for line in fn.get("/metrics").text.splitlines():
        if line.startswith("khook_requests_total{"):
            labels, _, value = line.rpartition(" ")
            counted[labels] = float(value)
    return counted


def _answers(fn: FunctionServer) -> list[tuple[Any, ...]]:
    # The metrics are the process's, shared by both servers: what this run added counts.
    before = _requests_counted(fn)
    out: list[tuple[Any, ...]] = []
    for method, path, headers, body in _requests():
        r = fn.http.request(method, path, headers=headers, content=body)
        kept = sorted((k, v) for k, v in r.headers.items() if k not in _VARYING)
        out.append((method, path, r.status_code, kept, r.content))
    scrape = fn.get("/metrics")
    out.append(("GET", "/metrics", scrape.status_code, scrape.headers["content-type"]))
    after = _requests_counted(fn)
    out.append({k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)})
    return out


def test_serve_answers_as_functions_framework_does(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    seen: dict[bool, tuple[list[tuple[Any, ...]], list[str]]] = {}
    for direct in (True, False):
        # Each server installs its own runtime, with its own memory store: the second
        # starts from nothing, as the first did.
        fn = make_function(dedup="memory", max_body_bytes=BODY_LIMIT, direct=direct)
        before = len(agent.messages())
        answers = _answers(fn)
        seen[direct] = answers, [f"{m.agent}: {m.text}" for m in agent.messages()[before:]]
    direct_answers, direct_messages = seen[True]
    framework_answers, framework_messages = seen[False]
    assert direct_answers == framework_answers
    assert direct_messages == framework_messages
    # Not vacuous: the requests got every kind of answer, and two sessions were opened.
    *answers, counted = direct_answers
    assert {200, 202, 400, 404, 405, 413} <= {a[2] for a in answers}
    # Every request is counted but the probes' and robots.txt (functions-framework's 404).
    uncounted = ("/healthz", "/readyz", "/robots.txt")
    assert sum(counted.values()) == len([r for r in _requests() if r[1] not in uncounted])
    assert len(direct_messages) == 2


def test_serve_sends_posts_straight_to_the_function(make_function: FunctionFactory) -> None:
    """Only what is not a POST reaches functions-framework's app."""
    make_function(dedup="memory")  # khook's runtime, which the function answers with
    reached: list[str] = []

    async def framework(scope: Any, receive: Any, send: Any) -> None:
        reached.append(f"{scope['method']} {scope['path']}")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    served = direct_posts(framework)

    def call(method: str, path: str) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
        asyncio.run(served(scope, receive, send))
        return int(sent[0]["status"])

    assert call("POST", "/") == 400  # khook's answer: not a CloudEvent
    assert call("POST", "/healthz") == 200
    assert reached == []
    assert call("GET", "/healthz") == 204
    assert call("PUT", "/") == 204
    assert reached == ["GET /healthz", "PUT /"]
