"""The function over real HTTP, with CloudEvents made by the cloudevents SDK and a real A2A
agent behind it."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.clock import FakeClock
from tests.support.events import (
    apiserver_event,
    binary,
    captured,
    core_event,
    oom_status,
    outcome,
    pod,
    sample_object,
    structured,
)

OUTCOME = "X-Khook-Outcome"
TYPE = "X-Khook-Event-Type"


def oom_pod() -> dict:  # type: ignore[type-arg]
    return pod(container_statuses=[oom_status()])


@pytest.mark.parametrize("mode", [binary, structured])
def test_accepted_event_is_202_with_an_empty_body(
    make_function: FunctionFactory, agent: A2AAgentServer, mode: object
) -> None:
    fn = make_function()
    r = fn.post(*mode(apiserver_event(oom_pod())))  # type: ignore[operator]
    assert r.status_code == 202
    assert r.content == b""
    assert "Content-Type" not in r.headers
    assert r.headers[TYPE] == "oom-kill"
    assert r.headers[OUTCOME] == outcome(fired=1)
    (message,) = agent.messages()
    assert message.agent == "kagent/k8s-agent"
    assert "web-7d4b9c8f5-x2x9z in namespace default was OOM-killed" in message.text
    assert 'owner: "Deployment/web"' in message.text


def test_a_redelivery_is_a_duplicate(make_function: FunctionFactory, agent: A2AAgentServer) -> None:
    fn = make_function()
    request = binary(apiserver_event(oom_pod()))
    assert fn.post(*request).headers[OUTCOME] == outcome(fired=1)
    r = fn.post(*request)
    assert r.status_code == 202
    assert r.headers[OUTCOME] == outcome(duplicate=1)
    assert len(agent.messages()) == 1


@pytest.mark.parametrize("dedup", ["memory", "tinydb"])
def test_ten_identical_deliveries_at_once_fire_exactly_once(
    make_function: FunctionFactory, agent: A2AAgentServer, dedup: str, tmp_path: object
) -> None:
    fn = make_function(dedup=dedup if dedup == "memory" else f"tinydb:{tmp_path}/ten.json")
    headers, body = binary(apiserver_event(oom_pod()))
    barrier = threading.Barrier(10)
    outcomes: list[str] = []

    def deliver() -> None:
        barrier.wait()
        r = fn.post(headers, body)
        outcomes.append(f"{r.status_code} {r.headers[OUTCOME]}")

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("202 " + outcome(fired=1)) == 1
    # The others came while the call was in flight (503: come back) or after it (duplicate).
    others = set(outcomes) - {"202 " + outcome(fired=1)}
    assert others <= {"202 " + outcome(duplicate=1), "503 " + outcome(duplicate=1)}
    again = fn.post(headers, body)  # the redelivery of a 503
    assert (again.status_code, again.headers[OUTCOME]) == (202, outcome(duplicate=1))
    assert len(agent.messages()) == 1


def test_pods_of_one_deployment_are_one_incident(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function()
    for name in ("web-7d4b9c8f5-aaaaa", "web-7d4b9c8f5-bbbbb", "web-7d4b9c8f5-ccccc"):
        fn.post(*binary(apiserver_event(pod(name=name, container_statuses=[oom_status()]))))
    assert len(agent.messages()) == 1


def test_the_window_passes_and_a_new_oom_fires_again(
    make_function: FunctionFactory, agent: A2AAgentServer, clock: FakeClock
) -> None:
    fn = make_function()
    fn.post(*binary(apiserver_event(oom_pod())))
    clock.advance(timedelta(minutes=10))
    again = pod(container_statuses=[oom_status(finished="2026-11-23T09:29:59Z", restarts=2)])
    r = fn.post(*binary(apiserver_event(again, time="2026-11-23T09:30:05Z")))
    assert r.headers[OUTCOME] == outcome(fired=1)
    assert len(agent.messages()) == 2


def test_an_old_last_state_never_fires_again(
    make_function: FunctionFactory, agent: A2AAgentServer, clock: FakeClock
) -> None:
    """A Pod keeps showing its old lastState on every later status update."""
    fn = make_function()
    fn.post(*binary(apiserver_event(oom_pod())))
    expected = {
        5: outcome(duplicate=1),  # the recorded occurrence
        12: outcome(stale=1),  # now over 15m old
        40: outcome(stale=1),
        600: outcome(stale=1),
    }
    for minutes, answer in expected.items():  # inside, just past, and long past the window
        clock.advance(timedelta(minutes=minutes))
        later = clock.now().isoformat()
        r = fn.post(*binary(apiserver_event(oom_pod(), time=later)))
        assert r.headers[OUTCOME] == answer, minutes
    assert len(agent.messages()) == 1


def test_a_retryable_agent_failure_is_503_and_the_redelivery_fires(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function(agent_attempts=2)
    agent.fail_next(Fault(503), Fault(503))
    request = binary(apiserver_event(oom_pod()))
    r = fn.post(*request)
    assert r.status_code == 503
    assert r.headers[OUTCOME] == outcome(failed=1)
    assert agent.messages() == []
    r = fn.post(*request)  # what Knative's redelivery does
    assert r.status_code == 202
    assert r.headers[OUTCOME] == outcome(fired=1)
    assert len(agent.messages()) == 1


def test_retry_after_is_passed_on(make_function: FunctionFactory, agent: A2AAgentServer) -> None:
    fn = make_function(agent_timeout=5.0)
    agent.fail_next(Fault(429, {"Retry-After": "90"}))
    r = fn.post(*binary(apiserver_event(oom_pod())))
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "90"


def test_a_non_retryable_failure_is_not_503(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function()
    agent.fail_next(Fault(404))
    r = fn.post(*binary(apiserver_event(oom_pod())))
    assert r.status_code == 202
    assert r.headers[OUTCOME] == outcome(failed=1)


def test_agent_down_is_503_never_500(make_function: FunctionFactory) -> None:
    fn = make_function(agent_url="http://127.0.0.1:9", agent_attempts=1)
    r = fn.post(*binary(apiserver_event(oom_pod())))
    assert r.status_code == 503


# ---- the real captured ApiServerSource requests, replayed byte for byte ------------------


def test_captured_oomkilled_pod_update_fires_oom_kill(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function()
    r = fn.post(*captured("pod-update-oomkilled"))
    assert (r.status_code, r.headers[TYPE]) == (202, "oom-kill")
    assert r.headers[OUTCOME] == outcome(fired=1)
    assert "oom-demo" in agent.messages()[0].text


def test_captured_backoff_event_is_a_pod_restart_held_until_it_repeats(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    fn = make_function()
    r = fn.post(*captured("event-add-backoff"))
    assert (r.status_code, r.headers[TYPE]) == (202, "pod-restart")
    # One crash (count 1) is a blip that usually heals: held, no session.
    assert r.headers[OUTCOME] == outcome(held=1)
    assert agent.messages() == []


def test_captured_delete_fires_nothing(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    r = make_function().post(*captured("event-delete"))
    assert (r.status_code, r.headers[TYPE]) == (202, "none")
    assert r.headers[OUTCOME] == outcome()
    assert agent.messages() == []


def test_captured_reference_mode_is_accepted_and_ignored(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    r = make_function().post(*captured("reference-mode-add"))
    assert (r.status_code, r.headers[TYPE]) == (202, "none")
    assert agent.messages() == []


# ---- bad input: 4xx or 202, never 500, and the server stays up ---------------------------

CE = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "test", "ce-type": "t"}


@pytest.mark.parametrize(
    ("headers", "body", "fragment"),
    [
        ({"content-type": "text/plain"}, b"hello", "not a CloudEvent"),
        ({"content-type": "application/json"}, b'{"apiVersion":"v1"}', "not a CloudEvent"),
        ({k: v for k, v in CE.items() if k != "ce-id"}, b"{}", "ce-id"),
        ({**CE, "ce-specversion": "9.9"}, b"{}", "specversion"),
        ({**CE, "content-type": "application/json"}, b'{"apiVersion": "v1", "ki', "not valid JSON"),
        ({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0"', "not a valid"),
        (
            {"content-type": "application/cloudevents+json"},
            b'{"specversion":"1.0","id":"1"}',
            "type",
        ),
    ],
)
def test_bad_requests_are_400_with_the_reason(
    make_function: FunctionFactory, headers: dict[str, str], body: bytes, fragment: str
) -> None:
    fn = make_function()
    r = fn.post(headers, body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]
    assert r.headers[TYPE] == "none"
    assert r.headers[OUTCOME] == outcome()
    assert fn.get("/healthz").status_code == 200


def test_oversized_body_is_413(make_function: FunctionFactory) -> None:
    fn = make_function(max_body_bytes=4096)
    big = pod(container_statuses=[oom_status()])
    big["metadata"]["annotations"] = {"filler": "x" * 10_000}
    r = fn.post(*binary(apiserver_event(big)))
    assert r.status_code == 413
    assert "limit" in r.json()["error"]


def test_oversized_chunked_body_is_413(make_function: FunctionFactory) -> None:
    fn = make_function(max_body_bytes=4096)

    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"apiVersion": "v1", "kind": "Pod", "x": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}'

    r = fn.http.post("/", headers={**CE, "content-type": "application/json"}, content=chunks())
    assert r.status_code == 413


@pytest.mark.parametrize(
    "data",
    [
        {"hello": "world"},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}},
        [1, 2, 3],
    ],
)
def test_data_of_an_unknown_kind_is_accepted_and_ignored(
    make_function: FunctionFactory, agent: A2AAgentServer, data: object
) -> None:
    fn = make_function()
    r = fn.post({**CE, "content-type": "application/json"}, json.dumps(data).encode())
    assert (r.status_code, r.content, r.headers[TYPE]) == (202, b"", "none")


def test_non_json_data_is_accepted_and_ignored(make_function: FunctionFactory) -> None:
    r = make_function().post({**CE, "content-type": "text/plain"}, b"just words")
    assert (r.status_code, r.headers[TYPE]) == (202, "none")


def test_any_cloudevent_carrying_a_kubernetes_object_works(
    make_function: FunctionFactory, agent: A2AAgentServer
) -> None:
    """A curl user's event: not from an ApiServerSource, judged by the object itself."""
    fn = make_function()
    obj = core_event("BackOff", "Back-off restarting failed container app", count=3)
    r = fn.post({**CE, "ce-type": "com.example.test"}, json.dumps(obj).encode())
    assert r.headers[TYPE] == "pod-restart"
    assert r.headers[OUTCOME] == outcome(fired=1)


def test_a_classified_event_no_hook_wants(make_function: FunctionFactory) -> None:
    obj = sample_object("pod-restart-backoff-event")
    obj["metadata"]["namespace"] = obj["involvedObject"]["namespace"] = "nobody-home"
    r = make_function().post(*binary(apiserver_event(obj)))
    assert (r.status_code, r.headers[TYPE]) == (202, "pod-restart")
    assert r.headers[OUTCOME] == outcome()


def test_health_and_readiness(make_function: FunctionFactory) -> None:
    fn = make_function()
    assert fn.get("/healthz").status_code == 200
    ready = fn.get("/readyz")
    assert ready.status_code == 200 and ready.json()["hooks"] == 3


def test_get_on_the_event_path_is_405(make_function: FunctionFactory) -> None:
    r = make_function().get("/")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_unready_function_answers_503_not_500(make_function: FunctionFactory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("")
    fn = make_function(dedup=f"tinydb:{blocker}/sub/dedup.json")  # cannot create a directory
    assert fn.get("/readyz").status_code == 503
    r = fn.post(*binary(apiserver_event(oom_pod())))
    assert r.status_code == 503 and "cannot start" in r.json()["error"]
