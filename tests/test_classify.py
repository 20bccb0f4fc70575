"""The classification table: the Go khook's pairs, what it got wrong, and state signals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from khook.core.classify import classify, event_types
from khook.core.events import Action, ClusterEvent, NotOfInterest, decode_object
from khook.core.rules import RulesError, parse_rules
from khook.files import builtin_rules, load_rules
from tests.support.events import core_event, oom_status, pod, sample_object

NOW = datetime(2026, 11, 23, 9, 20, 10, tzinfo=UTC)
TABLE = builtin_rules()


def types_of(obj: dict[str, Any], table: Any = TABLE) -> list[str]:
    event = decode_object(obj, action=Action.UPDATE, observed_at=NOW)
    if isinstance(event, NotOfInterest):
        return []
    assert isinstance(event, ClusterEvent)
    return event_types(classify(event, table))


# The Go khook's classification of Event reasons (REFERENCE section 6), reproduced.
KHOOK_PAIRS = [
    (
        "OOMKilling",
        "Memory cgroup out of memory: Killed process 4242",
        "Warning",
        "Pod",
        "oom-kill",
    ),
    ("OOMKilled", "Container app OOMKilled", "Warning", "Pod", "oom-kill"),
    ("Killing", "Container app was killed: out of memory", "Warning", "Pod", "oom-kill"),
    ("Killing", "Stopping container app, OOM", "Warning", "Pod", "oom-kill"),
    ("Killing", "Stopping container app", "Warning", "Pod", "pod-restart"),
    ("BackOff", "Back-off restarting failed container", "Warning", "Pod", "pod-restart"),
    ("Failed", "Error: failed to start container app", "Warning", "Pod", "pod-restart"),
    (
        "FailedScheduling",
        "0/1 nodes are available: 1 Insufficient memory",
        "Warning",
        "Pod",
        "pod-pending",
    ),
    (
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 500",
        "Warning",
        "Pod",
        "probe-failed",
    ),
    ("Unhealthy", "Readiness probe failed: connection refused", "Warning", "Pod", "probe-failed"),
    ("Unhealthy", "Startup probe failed: timeout", "Warning", "Pod", "probe-failed"),
    (
        "NodeNotReady",
        "Node worker-1 status is now: NodeNotReady",
        "Normal",
        "Node",
        "node-not-ready",
    ),
]


@pytest.mark.parametrize(("reason", "message", "type_", "kind", "expected"), KHOOK_PAIRS)
def test_khook_pairs(reason: str, message: str, type_: str, kind: str, expected: str) -> None:
    obj = core_event(reason, message, type_=type_, kind=kind)
    assert types_of(obj) == [expected]


@pytest.mark.parametrize(
    ("reason", "message", "type_", "kind"),
    [
        ("Created", "Created service web", "Normal", "Service"),
        ("Started", "Started container app", "Normal", "Pod"),
        ("Pulled", "Successfully pulled image", "Normal", "Pod"),
        ("Unhealthy", "something else entirely", "Warning", "Pod"),
        ("Failed", "no mention of the workload", "Warning", "Pod"),
        ("BackOff", "Back-off restarting failed container", "Normal", "Pod"),  # Warning only
        ("Killing", "Stopping container app", "Normal", "Pod"),
        ("FailedScheduling", "0/1 nodes are available", "Warning", "Service"),
    ],
)
def test_not_incidents(reason: str, message: str, type_: str, kind: str) -> None:
    assert types_of(core_event(reason, message, type_=type_, kind=kind)) == []


def test_backoff_pulling_image_is_an_image_problem_not_a_restart() -> None:
    obj = core_event("BackOff", 'Back-off pulling image "web:2"', type_="Normal")
    assert types_of(obj) == ["image-pull-failed"]


@pytest.mark.parametrize(
    "message",
    ['Failed to pull image "web:2": not found', "Error: ErrImagePull", "Error: ImagePullBackOff"],
)
def test_failed_pulls_are_image_problems(message: str) -> None:
    assert types_of(core_event("Failed", message)) == ["image-pull-failed"]


def test_events_k8s_io_v1_shape() -> None:
    assert types_of(sample_object("probe-failed-liveness-event")) == ["probe-failed"]


def test_oom_from_pod_last_state() -> None:
    assert types_of(pod(container_statuses=[oom_status()])) == ["oom-kill"]


def test_oom_from_pod_current_state() -> None:
    status = {
        "name": "app",
        "restartCount": 0,
        "state": {
            "terminated": {
                "reason": "OOMKilled",
                "exitCode": 137,
                "finishedAt": "2026-11-23T09:19:59Z",
            }
        },
    }
    assert types_of(pod(container_statuses=[status])) == ["oom-kill"]


def test_oom_from_state_reads_like_an_event() -> None:
    event = decode_object(
        pod(container_statuses=[oom_status(restarts=3)]), action=Action.UPDATE, observed_at=NOW
    )
    assert isinstance(event, ClusterEvent)
    (detection,) = classify(event, TABLE)
    assert detection.signal.reason == "OOMKilled"
    assert detection.signal.message == (
        "Container app was OOM-killed (exit code 137, restart count 3, "
        "finished at 2026-11-23T09:19:59Z)"
    )


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("CrashLoopBackOff", "pod-restart"),
        ("ImagePullBackOff", "image-pull-failed"),
        ("ErrImagePull", "image-pull-failed"),
        ("ContainerCreating", None),
    ],
)
def test_waiting_reasons(reason: str, expected: str | None) -> None:
    status = {"name": "app", "restartCount": 2, "state": {"waiting": {"reason": reason}}}
    assert types_of(pod(container_statuses=[status])) == ([expected] if expected else [])


def test_unschedulable_pod_is_pending() -> None:
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available",
        "lastTransitionTime": "2026-11-23T09:20:00Z",
    }
    assert types_of(pod(conditions=[cond])) == ["pod-pending"]


def test_node_ready_condition() -> None:
    node = sample_object("node-not-ready-node-status")
    assert types_of(node) == ["node-not-ready"]
    for cond in node["status"]["conditions"]:
        cond["status"] = "True" if cond["type"] == "Ready" else "False"
    assert types_of(node) == []


def test_healthy_running_pod_is_nothing() -> None:
    status = {"name": "app", "restartCount": 0, "state": {"running": {}}}
    assert types_of(pod(container_statuses=[status])) == []


def test_one_pod_can_show_two_incidents() -> None:
    status = oom_status()
    status["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    assert sorted(types_of(pod(container_statuses=[status]))) == ["oom-kill", "pod-restart"]


@pytest.mark.parametrize(
    "name",
    [p.stem for p in sorted((Path(__file__).parents[1] / "sources" / "samples").glob("*.json"))],
)
def test_every_sample_is_classified_as_its_name_says(name: str) -> None:
    obj = sample_object(name)
    if name.startswith("ignored-"):
        if "delete" in name:
            assert isinstance(
                decode_object(obj, action=Action.DELETE, observed_at=NOW), NotOfInterest
            )
        else:
            assert types_of(obj) == []
        return
    expected = next(
        t for t in sorted(TABLE.event_types, key=len, reverse=True) if name.startswith(t)
    )
    assert types_of(obj) == [expected]


def test_user_rules_add_a_type_and_come_first(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - eventType: disk-full\n"
        "    source: event\n"
        "    types: [Warning]\n"
        "    reasons: [FreeDiskSpaceFailed]\n"
        "  - eventType: oom-kill-critical\n"
        "    source: pod\n"
        "    reasons: [OOMKilled]\n"
    )
    table = load_rules([rules])
    assert {"disk-full", "oom-kill-critical", "oom-kill"} <= table.event_types
    assert types_of(core_event("FreeDiskSpaceFailed", "disk full", kind="Node"), table) == [
        "disk-full"
    ]
    assert types_of(pod(container_statuses=[oom_status()]), table) == ["oom-kill-critical"]


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ({}, "'rules' list"),
        ({"rules": [{"eventType": "Bad_Type", "source": "event", "reasons": ["X"]}]}, "DNS label"),
        ({"rules": [{"eventType": "x", "source": "service", "reasons": ["X"]}]}, "source must be"),
        ({"rules": [{"eventType": "x", "source": "event"}]}, "must narrow"),
        ({"rules": [{"eventType": "x", "source": "event", "message": "("}]}, "regular expression"),
        (
            {"rules": [{"eventType": "x", "source": "event", "reasons": ["X"], "colour": 1}]},
            "unknown keys",
        ),
        ({"rules": [{"eventType": "x", "source": "pod", "signals": ["vibes"]}]}, "unknown signals"),
    ],
)
def test_rules_errors_are_clear(doc: Any, fragment: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(doc, "rules.yaml")
    assert fragment in str(err.value)
