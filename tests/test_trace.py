"""Trace context from the sender to the agent: W3C traceparent/tracestate and B3, validated,
passed on unchanged, carried into the threads that call the agent, and logged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khook import trace
from khook.cli._common import load_sample
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.events import HOOKS, SAMPLES, oom_request, outcome
from tests.support.process import clean_env, khook_serve

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
B3_SINGLE = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90"
V00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


# ---- traceparent ---------------------------------------------------------------------------


def test_a_valid_traceparent_is_passed_on_as_it_came() -> None:
    assert trace.parse_traceparent(TRACEPARENT) == (TRACEPARENT, TRACE_ID, PARENT_ID)
    unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
    assert trace.parse_traceparent(unsampled) == (unsampled, TRACE_ID, PARENT_ID)


@pytest.mark.parametrize(
    "value",
    [
        f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # uppercase hex
        f"00-{'0' * 32}-{PARENT_ID}-01",  # all-zero trace-id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent-id
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # version ff is forbidden
        f"0g-{TRACE_ID}-{PARENT_ID}-01",  # a version that is not hex
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 is exactly 55 characters
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",  # a short trace-id
        f"00_{TRACE_ID}-{PARENT_ID}-01",  # not dash-delimited
        f"00-{TRACE_ID}-{PARENT_ID}-0x",  # flags that are not hex
        f"01-{TRACE_ID}-{PARENT_ID}-01x",  # a higher version: the flags end the value or a dash
        f"00-{TRACE_ID}-{PARENT_ID}\r\n-1",  # header injection
        "",
    ],
)
def test_an_invalid_traceparent_is_dropped(value: str) -> None:
    assert trace.parse_traceparent(value) is None
    context = trace.from_headers({"traceparent": value, "tracestate": TRACESTATE})
    assert context.headers == {}, "nor is a tracestate read without a valid traceparent"
    assert context.trace_id == ""


def test_a_higher_version_is_read_as_the_spec_says_and_passed_on_as_00() -> None:
    later = f"cc-{TRACE_ID}-{PARENT_ID}-09-whatever-comes-next"
    assert trace.parse_traceparent(later) == (f"00-{TRACE_ID}-{PARENT_ID}-01", TRACE_ID, PARENT_ID)
    assert trace.parse_traceparent(f"cc-{TRACE_ID}-{PARENT_ID}-08") == (
        f"00-{TRACE_ID}-{PARENT_ID}-00",
        TRACE_ID,
        PARENT_ID,
    )


@given(st.text(alphabet="0123456789abcdefABCDEF-xf \t", max_size=70))
def test_whatever_is_passed_on_is_a_valid_version_00_traceparent(value: str) -> None:
    parsed = trace.parse_traceparent(value)
    if parsed is not None:
        header, trace_id, parent_id = parsed
        assert V00.fullmatch(header)
        assert header[3:35] == trace_id and header[36:52] == parent_id
        assert trace_id != "0" * 32 and parent_id != "0" * 16


@given(
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    st.from_regex(r"[0-9a-f]{2}", fullmatch=True),
)
def test_every_valid_version_00_traceparent_is_passed_on(
    trace_id: str, parent_id: str, flags: str
) -> None:
    value = f"00-{trace_id}-{parent_id}-{flags}"
    valid = trace_id != "0" * 32 and parent_id != "0" * 16
    assert trace.parse_traceparent(value) == ((value, trace_id, parent_id) if valid else None)


# ---- tracestate ----------------------------------------------------------------------------


def test_tracestate_is_passed_on_with_its_traceparent() -> None:
    context = trace.from_headers({"Traceparent": TRACEPARENT, "TraceState": TRACESTATE})
    assert context.headers == {"traceparent": TRACEPARENT, "tracestate": TRACESTATE}
    assert (context.trace_id, context.span_id) == (TRACE_ID, PARENT_ID)
    # Whitespace around members and empty members are not part of the list.
    assert trace.parse_tracestate(" rojo=1 ,, tenant@congo=a b\t") == "rojo=1,tenant@congo=a b"


@pytest.mark.parametrize(
    "value",
    [
        "Rojo=1",  # keys are lowercase
        "rojo",  # no value
        "rojo=1,rojo=2",  # one entry per key
        "rojo=a,b",  # a member without "="
        "rojo=caf\u00e9",  # values are printable ASCII
        ",".join(f"k{i}=v" for i in range(33)),  # at most 32 members
        "",
    ],
)
def test_an_invalid_tracestate_is_dropped_but_not_its_traceparent(value: str) -> None:
    context = trace.from_headers({"traceparent": TRACEPARENT, "tracestate": value})
    assert context.headers == {"traceparent": TRACEPARENT}


# ---- B3 ------------------------------------------------------------------------------------


def test_b3_headers_are_passed_on_when_valid() -> None:
    multi = {
        "X-B3-TraceId": "463ac35c9f6413ad48485a3953bb6124",
        "X-B3-SpanId": "a2fb4a1d1a96d312",
        "X-B3-ParentSpanId": "0020000000000001",
        "X-B3-Sampled": "1",
    }
    context = trace.from_headers({"b3": B3_SINGLE, **multi})
    assert context.headers == {"b3": B3_SINGLE, **{k.lower(): v for k, v in multi.items()}}
    # Without W3C, the B3 ids are logged; the single header wins over the multiple ones.
    assert (context.trace_id, context.span_id) == (
        "80f198ee56343ba864fe8b2a57d3eff7",
        "e457b5a2e4d86bd1",
    )
    assert trace.from_headers({"b3": "0"}).headers == {"b3": "0"}  # a decision alone
    assert trace.from_headers({"x-b3-flags": "1"}).headers == {"x-b3-flags": "1"}


@pytest.mark.parametrize(
    "headers",
    [
        {"b3": "80F198EE56343BA8-e457b5a2e4d86bd1"},  # uppercase
        {"b3": "80f198ee56343ba8-e457b5a2e4d86bd1-x"},  # not a sampling state
        {"b3": "80f198ee56343ba8-e457b5a2e4d86bd1-1-05e3-extra"},
        {"b3": f"{'0' * 16}-e457b5a2e4d86bd1"},  # an all-zero trace id
        {"x-b3-spanid": "a2fb4a1d1a96d312"},  # a span without its trace
        {"x-b3-traceid": "463ac35c9f6413ad", "x-b3-spanid": "a2fb4a1d1a96d31"},  # short span
        {"x-b3-sampled": "yes"},
        {"x-b3-flags": "2"},
    ],
)
def test_b3_headers_that_are_not_valid_are_dropped(headers: dict[str, str]) -> None:
    assert trace.from_headers(headers).headers == {}


# ---- through a served khook ----------------------------------------------------------------


def test_khook_serve_passes_the_senders_trace_to_the_agent_and_logs_it(tmp_path: Path) -> None:
    """`khook serve` (gunicorn, a worker thread per event): the agent receives the
    traceparent, tracestate and b3 the sender sent, unchanged; the decision line carries the
    trace id."""
    with A2AAgentServer() as agent:
        args = ("--hooks", str(HOOKS), "--dedup", "memory", "--agent-url", agent.url)
        with khook_serve(*args, directory=tmp_path, env=clean_env(tmp_path)) as served:
            headers, body = load_sample(SAMPLES / "oom-kill-pod-status.json")
            headers.update(traceparent=TRACEPARENT, tracestate=TRACESTATE, b3=B3_SINGLE)
            answer = served.post(headers, body)
            assert answer.headers["X-Khook-Outcome"] == outcome(fired=1)
        [post] = agent.posts()
    assert post.headers["traceparent"] == TRACEPARENT
    assert post.headers["tracestate"] == TRACESTATE
    assert post.headers["b3"] == B3_SINGLE
    [fired] = [line for line in served.logs() if line["msg"] == "hook fired"]
    assert (fired["traceId"], fired["spanId"]) == (TRACE_ID, PARENT_ID)


def test_an_invalid_traceparent_never_reaches_the_agent(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    headers, body = oom_request()
    headers.update(traceparent=f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", tracestate=TRACESTATE)
    assert make_function().post(headers, body).headers["X-Khook-Outcome"] == outcome(fired=1)
    [post] = agent.posts()
    assert "traceparent" not in post.headers and "tracestate" not in post.headers


def test_every_agent_call_of_one_event_carries_its_trace(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    """Two Hooks fire on one event: their calls run side by side on other threads (FanOut),
    each with the event's trace; an event without one sends none."""
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(
        "\n---\n".join(
            "apiVersion: kagent.dev/v1alpha2\nkind: Hook\n"
            f"metadata: {{name: {name}, namespace: default}}\n"
            "spec:\n  eventConfigurations:\n"
            "    - {eventType: oom-kill, agentRef: {name: k8s-agent, namespace: kagent}, "
            "prompt: 'OOM: {{.ResourceName}}'}\n"
            for name in ("first", "second")
        )
    )
    fn = make_function(hooks=(str(hooks),), agent_concurrency=2)
    headers, body = oom_request()
    headers["traceparent"] = TRACEPARENT
    assert fn.post(headers, body).headers["X-Khook-Outcome"] == outcome(fired=2)
    assert [p.headers.get("traceparent") for p in agent.posts()] == [TRACEPARENT] * 2
    untraced = make_function(hooks=(str(hooks),), dedup="memory")
    assert untraced.post(*oom_request()).headers["X-Khook-Outcome"] == outcome(fired=2)
    assert [p.headers.get("traceparent") for p in agent.posts()[2:]] == [None, None]
