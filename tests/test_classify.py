"""The classification table: the Go khook's pairs, what it got wrong, and state signals."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from khook.cli.validate import validate
from khook.core.classify import classify, event_types
from khook.core.events import Action, ClusterEvent, NotOfInterest, decode_object
from khook.core.patterns import SEARCH_LIMIT, MessagePattern, backtracking_risk
from khook.core.rules import RulesError, parse_rules
from khook.core.signals import Signal, SignalKind, Source
from khook.files import builtin_rules, load_rules
from tests.support.events import HOOKS, core_event, oom_status, pod, sample_object

NOW = datetime(2026, 11, 23, 9, 20, 10, tzinfo=UTC)
TABLE = builtin_rules()


def types_of(obj: dict[str, Any], table: Any = TABLE) -> list[str]:
    event = decode_object(obj, action=Action.UPDATE, observed_at=NOW)
    if isinstance(event, NotOfInterest):
        return []
    assert isinstance(event, ClusterEvent)
    return event_types(classify(event, table))


# The Go khook's classification of Event reasons (its mapping of kubelet reasons), reproduced.
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


# ---- message patterns run with RE2: linear in the message ------------------------------------


def one_rule(message: Any, event_type: str = "x") -> dict[str, Any]:
    return {"rules": [{"eventType": event_type, "source": "event", "message": message}]}


def test_a_catastrophic_pattern_cannot_stall_classification() -> None:
    # Python's re took 19 s on this 29-character message; it grows 2x per character.
    table = parse_rules(one_rule(r"^(\w+\s?)*$", "slow"), "ops.yaml").then(TABLE)
    started = time.monotonic()
    for message in ("a" * 28 + "!", "word " * 800 + "!"):
        assert types_of(core_event("Anything", message), table) == []
    types_of(core_event("Anything", "a " * 100_000 + "!"), table)  # cut at SEARCH_LIMIT
    assert time.monotonic() - started < 5
    assert types_of(core_event("Anything", "all words here"), table) == ["slow"]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        (r"oom(?=kill)", "invalid perl operator: (?="),
        (r"(?<!no )oom", "invalid perl operator: (?<"),
        (r"oom\Z", r"invalid escape sequence: \Z"),
        ("(", "missing ): ("),
    ],
)
def test_patterns_re2_cannot_run_are_rules_errors(pattern: str, why: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(one_rule(pattern, "disk-full"), "ops.yaml")
    (problem,) = err.value.problems
    assert problem.startswith(f"rules[0] (eventType 'disk-full'): message '{pattern}' is not")
    assert "RE2" in problem and why in problem


def test_pattern_limits() -> None:
    with pytest.raises(RulesError, match="1001 characters long; the limit is 1000"):
        parse_rules(one_rule("a" * 1001), "ops.yaml")
    with pytest.raises(RulesError, match="must be a non-empty regular expression"):
        parse_rules(one_rule(["oom"]), "ops.yaml")
    table = parse_rules(one_rule("needle"), "ops.yaml")
    # Only the first SEARCH_LIMIT characters of a message are searched.
    near, far = "x" * (SEARCH_LIMIT - 6) + "NEEDLE", "x" * SEARCH_LIMIT + "needle"
    assert types_of(core_event("Any", near), table) == ["x"]  # case-insensitive
    assert types_of(core_event("Any", far), table) == []


@pytest.mark.parametrize(
    ("pattern", "risky"),
    [
        (r"^(\w+\s?)*$", True),
        (r"(a+)+", True),
        (r"(?:a*)*b", True),
        (r"((ab)*c)+", True),
        (r"(a{1,5})*", True),
        (r"(x+x+)+y", True),
        (r"(?P<word>\w+,?){2,}", True),
        (r"(\d+\.){3}\d+", False),  # bounded
        (r"[(+*)]+", False),  # a character class
        (r"\(a+\)+", False),  # escaped parentheses
        (r"a*b*c*", False),
        (r"(abc)+", False),
        (r"(a|b)*", False),
        (r"oom|out of memory", False),
        (r"a*?(b)+", False),
    ],
)
def test_catastrophic_patterns_are_flagged(pattern: str, risky: bool) -> None:
    assert (backtracking_risk(pattern) is not None) is risky
    table = parse_rules(one_rule(pattern), "ops.yaml")
    assert bool(table.warnings) is risky
    if risky:
        assert table.warnings[0].startswith(f"ops.yaml: rules[0].message '{pattern}' (eventType x)")
        assert "khook runs it with RE2, in time linear in the message" in table.warnings[0]


def test_the_builtin_table_runs_on_re2_and_warns_of_nothing() -> None:
    assert TABLE.warnings == ()
    patterns = [r.message for r in TABLE.rules if r.message is not None]
    assert patterns and all(isinstance(p, MessagePattern) for p in patterns)


def test_hostile_rules_are_errors_not_crashes() -> None:
    doc = {
        "rules": [1, [2], {"eventType": {"a": "b"}}, {1: 2, None: 3}, {"eventType": "x" * 10**6}]
    }
    with pytest.raises(RulesError) as err:
        parse_rules(doc, "ops.yaml")
    assert len(err.value.problems) == 5
    assert all(len(p) < 500 for p in err.value.problems)


def test_validate_warns_of_catastrophic_patterns_and_fails_re2_incompatible_ones(
    tmp_path: Path,
) -> None:
    risky = tmp_path / "risky.yaml"
    risky.write_text(
        "rules:\n  - {eventType: slow, source: event, message: '^(\\w+\\s?)*$'}\n"
        "  - {eventType: fine, source: event, message: 'out of memory'}\n"
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules:\n  - {eventType: back, source: event, message: '(a)\\1'}\n")
    for files, rules in (([risky], None), ([HOOKS], [str(risky)])):  # a document, --rules
        lines: list[str] = []
        assert validate(files, {"rules": rules}, out=lines.append) == 0
        (warning,) = [line for line in lines if line.startswith("warn ")]
        assert warning.startswith(f"warn rules {risky}: rules[0].message '^(\\w+\\s?)*$'")
        assert "in time linear in the message" in warning
    for files, rules in (([broken], None), ([HOOKS], [str(broken)])):
        lines = []
        assert validate(files, {"rules": rules}, out=lines.append) == 1
        assert any(
            line.startswith("FAIL ") and "rules[0] (eventType 'back')" in line and "RE2" in line
            for line in lines
        )


def test_the_rule_index_finds_what_a_scan_of_the_table_finds() -> None:
    """first_match tries only the rules a signal's source and reason allow; the answer must be
    the scan's, in table order, whatever the reason (known, unknown, another case)."""
    rules = parse_rules(
        {
            "rules": [
                {"eventType": "first", "source": "event", "message": "disk"},
                {"eventType": "second", "source": "event", "reasons": ["BackOff"]},
                {"eventType": "third", "source": "event", "reasons": ["backoff", "Failed"]},
                {"eventType": "fourth", "source": "pod", "signals": ["containerWaiting"]},
            ]
        },
        "test",
    ).then(TABLE)
    reasons = {r for rule in rules.rules for r in rule.reasons} | {"Nope", "BACKOFF", ""}
    for source in Source:
        for kind in SignalKind:
            for reason in sorted(reasons):
                for message in ("disk full", "other"):
                    signal = Signal(source, kind, reason, message, "o", None, kind="Pod")
                    scanned = next((r for r in rules.rules if r.matches(signal)), None)
                    assert rules.first_match(signal) == scanned, (source, kind, reason, message)
