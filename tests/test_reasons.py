"""Every answer says why: ``X-Khook-Reason: <code>; <text>``, over real HTTP, with CloudEvents
made by the cloudevents SDK and the a2a-sdk agent behind the function."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from khook.core.reasons import IGNORED, Code
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.events import (
    apiserver_event,
    binary,
    core_event,
    oom_status,
    outcome,
    pod,
    recovered,
)
from tests.support.function import FunctionServer

REASON = "X-Khook-Reason"
OUTCOME = "X-Khook-Outcome"
CE = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "test", "ce-type": "t"}


def reason(response: Any) -> tuple[str, str]:
    code, _, text = response.headers[REASON].partition("; ")
    return code, text


def oom_pod(namespace: str = "default") -> dict[str, Any]:
    return pod(namespace=namespace, container_statuses=[oom_status()])


def event_with(**changes: Any) -> dict[str, Any]:
    obj = core_event("BackOff", "Back-off restarting failed container app", count=5)
    for key, value in changes.items():
        if value is None:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


def post_object(fn: FunctionServer, obj: Any) -> Any:
    return fn.post({**CE, "content-type": "application/json"}, json.dumps(obj).encode())


Send = Callable[[FunctionServer], Any]

# (what is sent, status, code, a fragment of the text)
CASES: dict[str, tuple[Send, int, Code, str]] = {
    "fired": (
        lambda fn: fn.post(*binary(apiserver_event(oom_pod()))),
        202,
        Code.FIRED,
        "default/pod-incidents oom-kill Deployment/web: a new incident",
    ),
    "a JSON array": (
        lambda fn: post_object(fn, [{"kind": "Event"}]),
        202,
        Code.NOT_JSON,
        "the event data is an array, not a JSON object",
    ),
    # The CloudEvents default: data with no content type is JSON.
    "no content type": (
        lambda fn: fn.post(CE, json.dumps(oom_pod()).encode()),
        202,
        Code.FIRED,
        "oom-kill",
    ),
    "a text content type": (
        lambda fn: fn.post({**CE, "content-type": "text/plain"}, json.dumps(oom_pod()).encode()),
        202,
        Code.NOT_JSON,
        "sent as 'text/plain': khook reads it only as JSON",
    ),
    "kind: Evnt": (
        lambda fn: post_object(fn, event_with(kind="Evnt")),
        202,
        Code.UNSUPPORTED_KIND,
        "did you mean Event (v1)?",
    ),
    "reasn instead of reason": (
        lambda fn: post_object(fn, {**event_with(reason=None), "reasn": "BackOff"}),
        202,
        Code.NO_RULE,
        "Event default/web-1.backoff has no reason",
    ),
    "a Normal event no rule knows": (
        lambda fn: post_object(fn, event_with(reason="Pulled", type="Normal")),
        202,
        Code.NO_RULE,
        "Normal 'Pulled' about Pod default/web-1: no classification rule matched",
    ),
    "a healthy pod": (
        lambda fn: fn.post(*binary(apiserver_event(recovered(oom_pod())))),
        202,
        Code.NO_RULE,
        "Pod default/web-7d4b9c8f5-x2x9z shows nothing failing",
    ),
    "nobody's namespace": (
        lambda fn: fn.post(*binary(apiserver_event(pod("x", "nobody-home", owner=None)))),
        202,
        Code.NO_RULE,
        "shows nothing failing",
    ),
    "a namespace with no Hook": (
        lambda fn: post_object(fn, core_event("BackOff", "Back-off", namespace="team-x")),
        202,
        Code.NO_HOOK,
        "khook-system/cluster-incidents: it configures node-not-ready, oom-kill, not pod-restart",
    ),
    "an excluded namespace": (
        lambda fn: fn.post(*binary(apiserver_event(oom_pod("kube-system")))),
        202,
        Code.NO_HOOK,
        "spec.selector.exclude.namespaces lists kube-system",
    ),
    "held": (
        lambda fn: post_object(fn, event_with(count=1)),
        202,
        Code.HELD,
        "default/pod-incidents pod-restart Pod/web-1",
    ),
    "stale": (
        lambda fn: fn.post(
            *binary(apiserver_event(pod(container_statuses=[oom_status("2026-11-01T00:00:00Z")])))
        ),
        202,
        Code.STALE,
        "the signal was 22d9h old when observed, older than the 15m a signal may be",
    ),
    "deleted": (
        lambda fn: fn.post(*binary(apiserver_event(oom_pod(), action="delete"))),
        202,
        Code.DELETED,
        "deletions never fire",
    ),
    "not a CloudEvent": (
        lambda fn: fn.post({"content-type": "text/plain"}, b"hello"),
        400,
        Code.INVALID_CLOUDEVENT,
        "not a CloudEvent",
    ),
    "GET": (lambda fn: fn.get("/"), 405, Code.METHOD_NOT_ALLOWED, "POST a CloudEvent"),
    "healthz": (lambda fn: fn.get("/healthz"), 200, Code.OK, "alive"),
    "readyz": (lambda fn: fn.get("/readyz"), 200, Code.OK, "ready"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_answer_says_why(make_function: FunctionFactory, case: str) -> None:
    send, status, code, fragment = CASES[case]
    r = send(make_function())
    assert r.status_code == status
    got, text = reason(r)
    assert got == code.value, text
    assert fragment in text
    assert r.headers[REASON].isascii() and r.headers[REASON].isprintable()
    if status == 202:
        assert r.content == b"", "a 202's body stays empty: Knative reads one as a reply"


def test_a_redelivery_says_duplicate(make_function: FunctionFactory) -> None:
    fn = make_function()
    request = binary(apiserver_event(oom_pod()))
    assert reason(fn.post(*request))[0] == "fired"
    code, text = reason(fn.post(*request))
    assert code == "duplicate" and "occurrence already recorded" in text


def test_an_agent_refusal_is_failed_with_its_reason(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    agent.fail_next(Fault(404))
    r = make_function().post(*binary(apiserver_event(oom_pod())))
    assert (r.status_code, r.headers[OUTCOME]) == (202, outcome(failed=1))
    code, text = reason(r)
    assert code == "failed" and "HTTP 404" in text and "/api/a2a/kagent/k8s-agent/" in text


def test_an_agent_outage_is_503_agent_unavailable(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    agent.fail_next(Fault(503), Fault(503))
    r = make_function(agent_attempts=2).post(*binary(apiserver_event(oom_pod())))
    assert r.status_code == 503
    code, text = reason(r)
    assert code == "agent-unavailable" and "HTTP 503" in text


def test_a_body_over_the_limit_is_too_large(make_function: FunctionFactory) -> None:
    big = oom_pod()
    big["metadata"]["annotations"] = {"filler": "x" * 10_000}
    r = make_function(max_body_bytes=4096).post(*binary(apiserver_event(big)))
    assert (r.status_code, reason(r)[0]) == (413, "too-large")


def test_a_reason_cannot_smuggle_a_header(make_function: FunctionFactory) -> None:
    """Tenant text in a reason (an Event's reason) is one printable ASCII line."""
    obj = event_with(reason="Weird\r\nX-Injected: 1 \u202e\u00e9", type="Normal")
    r = post_object(make_function(), obj)
    assert "X-Injected" not in r.headers
    value = r.headers[REASON]
    assert value.startswith("no-rule; ") and value.isascii() and value.isprintable()


def test_ignored_codes_are_the_ones_that_202_without_acting() -> None:
    assert Code.NO_RULE in IGNORED and Code.FIRED not in IGNORED
    assert all(code.value == code.value.lower() for code in Code)


@pytest.mark.parametrize("sent", [CloudEvent({"type": "t", "source": "s"}, {"a": 1})])
def test_the_sdks_own_event_is_read(make_function: FunctionFactory, sent: CloudEvent) -> None:
    r = make_function().post(*binary(sent))
    assert reason(r) == (
        "not-kubernetes",
        "the event data has no apiVersion and no kind: not a Kubernetes object",
    )
