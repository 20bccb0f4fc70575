"""GET /metrics on a running function: every counter moves by exactly what the test sent.

The function runs on a real HTTP port in this process (tests.support.function), so its clock is
the test's; metrics are the process's, so each test compares a scrape after with one before,
and its Hooks and agents have names no other test uses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer, Fault
from tests.support.clock import FakeClock
from tests.support.events import (
    ROOT,
    apiserver_event,
    binary,
    core_event,
    oom_status,
    outcome,
    pod,
)
from tests.support.metrics import Scrape, as_labels, scrape

OUTCOME = "X-Khook-Outcome"
HOOK = {"hook_namespace": "default", "hook_name": "metrics-hook"}
BY_HOOK = ("metrics-hook", "default")  # its label values, in label-name order

HOOKS = """
apiVersion: kagent.dev/v1alpha2
kind: Hook
metadata: {name: metrics-hook, namespace: default}
spec:
  eventConfigurations:
    - eventType: oom-kill
      agentRef: {name: memory-agent, namespace: kagent}
      prompt: "{{.ResourceName}} was OOM-killed."
    - eventType: pod-restart
      agentRef: {name: memory-agent, namespace: kagent}
      prompt: "{{.ResourceName}} restarts."
---
apiVersion: kagent.dev/v1alpha2
kind: Hook
metadata: {name: metrics-elsewhere, namespace: default}
spec:
  eventConfigurations:
    - eventType: oom-kill
      agentRef: {name: k8s-agent, namespace: not-allowed}
      prompt: "an agent this namespace may not call"
---
apiVersion: kagent.dev/v1alpha2
kind: Hook
metadata: {name: metrics-broken, namespace: default}
spec:
  eventConfigurations:
    - eventType: oom-kill
      agentRef: {name: Not_A_DNS_Label, namespace: kagent}
      prompt: "an agent name that is not a DNS label"
"""


def oom(workload: str, finished: str = "2026-11-23T09:19:59Z") -> dict:  # type: ignore[type-arg]
    return pod(
        f"{workload}-7d4b9c8f5-x2x9z",
        owner=f"{workload}-7d4b9c8f5",
        container_statuses=[oom_status(finished=finished)],
    )


@pytest.fixture
def hooks(tmp_path: Path) -> Path:
    path = tmp_path / "hooks.yaml"
    path.write_text(HOOKS)
    return path


@pytest.mark.parametrize("store", ["tinydb", "memory"])
def test_each_counter_moves_by_what_was_sent(
    make_function: FunctionFactory,
    agent: A2AAgentServer,
    clock: FakeClock,
    hooks: Path,
    store: str,
) -> None:
    # With the memory store the duplicate, held and stale sightings are decided on the event
    # loop (Pipeline.finish_now); the firings, declined there, are decided (and counted) once.
    extra = {"dedup": "memory"} if store == "memory" else {}
    fn = make_function(hooks=(str(hooks),), max_body_bytes=16384, **extra)
    before = scrape(fn.get)
    sent: list[bytes] = []

    def post(request: tuple[dict[str, str], bytes], expected: str | None = None) -> httpx.Response:
        sent.append(request[1])
        r = fn.post(*request)
        if expected is not None:
            assert r.headers[OUTCOME] == expected
        return r

    post(binary(apiserver_event(oom("web"))), outcome(fired=1))
    post(binary(apiserver_event(oom("web"))), outcome(duplicate=1))
    backoff = core_event("BackOff", "Back-off restarting failed container app in pod web-1")
    post(binary(apiserver_event(backoff, action="add")), outcome(held=1))
    # Observed 20 minutes after it happened: older than KHOOK_MAX_SIGNAL_AGE (15m).
    post(binary(apiserver_event(oom("api"), time="2026-11-23T09:40:00Z")), outcome(stale=1))
    started = core_event("Started", "Started container app", type_="Normal")
    post(binary(apiserver_event(started, action="add")), outcome())  # no rule: ignored
    post(binary(apiserver_event(oom("gone"), action="delete")), outcome())  # deleted: ignored
    probe = core_event("Unhealthy", "Readiness probe failed: connection refused")
    post(binary(apiserver_event(probe, action="add")), outcome())  # no Hook wants probe-failed
    agent.fail_next(Fault(404))
    post(binary(apiserver_event(oom("db"))), outcome(failed=1))
    assert post(({"content-type": "application/json"}, b'{"no": "ce"}')).status_code == 400
    too_large = fn.post({"content-type": "application/json"}, b"x" * 20000)  # never read
    assert too_large.status_code == 413

    after = scrape(fn.get)
    assert as_labels(after.moved(before, "khook_requests_total")) == {
        ("fired", "2xx"): 1,
        ("duplicate", "2xx"): 1,
        ("held", "2xx"): 1,
        ("stale", "2xx"): 1,
        ("no-rule", "2xx"): 1,
        ("deleted", "2xx"): 1,
        ("no-hook", "2xx"): 1,
        ("failed", "2xx"): 1,
        ("invalid-cloudevent", "4xx"): 1,
        ("too-large", "4xx"): 1,
    }
    # (event_type, outcome, reason)
    assert as_labels(after.moved(before, "khook_events_total")) == {
        ("oom-kill", "fired", ""): 1,
        ("oom-kill", "duplicate", ""): 1,
        ("pod-restart", "held", ""): 1,
        ("oom-kill", "stale", ""): 1,
        ("none", "ignored", "no-rule"): 1,
        ("none", "ignored", "deleted"): 1,
        ("probe-failed", "ignored", "no-hook"): 1,
        ("oom-kill", "failed", "http"): 1,
    }
    assert as_labels(after.moved(before, "kagent_hook_events_total")) == {
        ("oom-kill",): 4,
        ("pod-restart",): 1,
        ("none",): 2,
        ("probe-failed",): 1,
    }
    # One session opened, one call refused with a 404: two calls, one error of kind http.
    assert as_labels(after.moved(before, "khook_sessions_opened_total")) == {BY_HOOK: 1}
    assert as_labels(after.moved(before, "kagent_hook_api_calls_total")) == {
        ("memory-agent", "kagent", "success"): 1,
        ("memory-agent", "kagent", "error"): 1,
    }
    assert as_labels(after.moved(before, "khook_agent_call_duration_seconds_count")) == {
        ("0.3", "success"): 1,
        ("0.3", "error"): 1,
    }
    assert as_labels(after.moved(before, "kagent_hook_api_call_duration_seconds_count")) == {
        ("memory-agent", "kagent"): 2
    }
    assert as_labels(after.moved(before, "khook_agent_errors_total")) == {
        ("0.3", "memory-agent", "kagent", "http"): 1
    }
    # Store decisions (read-modify-writes): a firing claims, counts the Hook's session budget
    # and confirms (3); a failed one claims, counts and releases (3); a duplicate, a held
    # sighting and a stale one are each one claim that decides.
    assert as_labels(after.moved(before, "khook_store_decision_seconds_count")) == {(store,): 9}
    assert after.moved(before, "khook_store_errors_total") == {}
    # Every body read whole (not the 413's): how many, and exactly how many bytes.
    assert after.value("khook_request_body_bytes_count") - before.value(
        "khook_request_body_bytes_count"
    ) == len(sent)
    assert after.value("khook_request_body_bytes_sum") - before.value(
        "khook_request_body_bytes_sum"
    ) == sum(len(body) for body in sent)
    assert after.value("khook_hooks_in_force") == 1
    assert after.value("khook_hooks_not_in_force", reason="AgentNotAllowed") == 1
    assert after.value("khook_hooks_not_in_force", reason="InvalidConfiguration") == 1
    assert after.value("khook_hooks_not_in_force", reason="TooManyHooks") == 0
    assert after.total("khook_build_info", version="0.1.0", a2a_version="0.3") == 1

    # The sweep counts the incidents firing per Hook: the session opened above. Once the
    # window has passed, it resolves it and tells the session: a follow-up, a third call.
    assert fn.pipeline is not None
    fn.pipeline.sweep()
    assert scrape(fn.get).value("kagent_hook_active_events", **HOOK) == 1
    clock.advance(timedelta(minutes=11))
    fn.pipeline.sweep()
    swept = scrape(fn.get)
    assert swept.value("kagent_hook_active_events", **HOOK) == 0
    assert as_labels(swept.moved(after, "khook_followups_sent_total")) == {BY_HOOK: 1}
    assert as_labels(swept.moved(after, "kagent_hook_api_calls_total")) == {
        ("memory-agent", "kagent", "success"): 1
    }
    assert swept.moved(after, "khook_events_total") == {}, "a sweep is not an event"


def test_the_breaker_state_and_its_refusals(
    make_function: FunctionFactory, agent: A2AAgentServer, clock: FakeClock, hooks: Path
) -> None:
    fn = make_function(hooks=(str(hooks),), agent_attempts=1)
    memory = {"agent_namespace": "kagent", "agent_name": "memory-agent"}
    request = binary(apiserver_event(oom("cache")))
    before = scrape(fn.get)
    agent.fail_next(*[Fault(503)] * 5)
    for _ in range(5):  # 5 retryable failures in a row open the circuit
        assert fn.post(*request).status_code == 503
    opened = scrape(fn.get)
    assert opened.value("khook_agent_circuit_state", **memory) == 1
    assert as_labels(opened.moved(before, "khook_agent_circuit_opens_total")) == {
        ("memory-agent", "kagent"): 1
    }
    assert fn.post(*request).status_code == 503  # refused by the breaker: no call
    refused = scrape(fn.get)
    assert as_labels(refused.moved(opened, "khook_events_total")) == {
        ("oom-kill", "failed", "circuit-open"): 1
    }
    assert as_labels(refused.moved(opened, "khook_agent_errors_total")) == {
        ("0.3", "memory-agent", "kagent", "circuit-open"): 1
    }
    assert refused.moved(opened, "kagent_hook_api_calls_total") == {}
    assert as_labels(refused.moved(before, "khook_requests_total")) == {
        ("agent-unavailable", "5xx"): 6
    }

    # After the pause, one trial call: half-open while it is under way (scraped from the
    # agent as the call arrives), closed once it succeeded.
    during: list[float] = []
    clock.advance(timedelta(seconds=31))
    agent.fail_next(
        Fault(
            0,
            on_arrival=lambda: during.append(
                scrape(fn.get).value("khook_agent_circuit_state", **memory)
            ),
        )
    )
    assert fn.post(*request).headers[OUTCOME] == outcome(fired=1)
    assert during == [2]
    assert scrape(fn.get).value("khook_agent_circuit_state", **memory) == 0


def test_metrics_are_not_events_and_need_no_pipeline(make_function: FunctionFactory) -> None:
    fn = make_function(agent_url="", hooks=())
    before = scrape(fn.get)
    assert fn.get("/healthz").status_code == 200
    assert fn.http.post("/metrics", content=b"").status_code == 405
    after = scrape(fn.get)
    assert after.moved(before, "khook_requests_total") == {}
    assert after.types["khook_events"] == "counter"
    assert after.types["khook_agent_circuit_state"] == "gauge"
    assert after.types["kagent_hook_api_call_duration_seconds"] == "histogram"


def test_store_failures_are_counted(
    make_function: FunctionFactory, tmp_path: Path, hooks: Path
) -> None:
    parent = tmp_path / "state"
    fn = make_function(hooks=(str(hooks),), dedup=f"tinydb:{parent}/dedup")
    before = scrape(fn.get)
    shutil.rmtree(parent)
    parent.write_text("")  # a file where the store's parent directory must be: it cannot work
    r = fn.post(*binary(apiserver_event(oom("store"))))
    assert (r.status_code, r.headers[OUTCOME]) == (503, outcome(failed=1))
    after = scrape(fn.get)
    assert as_labels(after.moved(before, "khook_store_errors_total")) == {("tinydb",): 1}
    assert as_labels(after.moved(before, "khook_events_total")) == {
        ("oom-kill", "failed", "store"): 1
    }
    assert as_labels(after.moved(before, "khook_requests_total")) == {
        ("store-unavailable", "5xx"): 1
    }


def test_importing_khook_does_not_import_prometheus_client() -> None:
    """gunicorn's master imports the app before it forks; prometheus-client must be imported
    only afterwards, in the workers, once PROMETHEUS_MULTIPROC_DIR is set (khook.metrics)."""
    code = (
        "import sys, khook.serving, khook.function, khook.cli, khook.runtime;"
        "print('prometheus_client' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_scrape_reads_prometheus_text(make_function: FunctionFactory) -> None:
    """The answer is what Prometheus parses (every family typed, no duplicate sample)."""
    text = make_function().get("/metrics").text
    families = Scrape(text).types
    assert {"kagent_hook_events", "kagent_hook_api_calls", "kagent_hook_active_events"} <= set(
        families
    )
