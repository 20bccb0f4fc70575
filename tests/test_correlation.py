"""The correlation table: the built-in entries, family(), holds, node consequences, causes
named in messages, validation with paths, and how a --rules file extends or overrides it."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from khook.core._correlation_read import MAX_CAUSES, MAX_CHAINS, MAX_PULL_ERRORS
from khook.core.correlation import (
    CorrelationError,
    CorrelationTable,
    HoldRule,
    parse_correlation,
)
from khook.core.patterns import MAX_PATTERN_LENGTH
from khook.core.registry import classify_pull
from khook.files import FileError, builtin_correlation, load_correlation

TABLE = builtin_correlation()
POD_TYPES = ["oom-kill", "pod-restart", "probe-failed", "image-pull-failed", "pod-pending"]

# plugin/pkg/admission/resourcequota/controller.go, as the ReplicaSet controller reports it
# (pkg/controller/controller_utils.go: FailedCreate "Error creating: %v").
QUOTA = (
    'Error creating: pods "web-66b6c48dd5-" is forbidden: exceeded quota: compute-resources, '
    "requested: limits.cpu=2, used: limits.cpu=8, limited: limits.cpu=8"
)


def table(body: dict[str, Any]) -> CorrelationTable:
    return parse_correlation({"correlation": body}, "test.yaml")


def problems(body: Any) -> list[str]:
    with pytest.raises(CorrelationError) as caught:
        parse_correlation({"correlation": body}, "test.yaml")
    assert caught.value.origin == "test.yaml"
    return caught.value.problems


# ---- the built-in table ---------------------------------------------------------------------


def test_builtin_table() -> None:
    assert TABLE.precedence == (
        ("oom-kill", "pod-restart", "probe-failed"),
        ("image-pull-failed", "pod-pending"),
        ("node-not-ready", "evicted"),
    )
    two_minutes = timedelta(minutes=2)
    assert dict(TABLE.holds) == {
        "probe-failed": HoldRule(3, two_minutes),
        "pod-restart": HoldRule(3, two_minutes),
        "pod-pending": HoldRule(3, two_minutes),
        "image-pull-failed": HoldRule(3, two_minutes, transient_only=True),
    }
    for fires_at_once in ("oom-kill", "node-not-ready", "evicted", "failed-mount", "job-failed"):
        assert TABLE.hold(fires_at_once) is None
    assert TABLE.warnings == ()  # no pattern a backtracking engine would choke on
    assert {r.pull_class for r in TABLE.pull_errors if r.transient} == {
        "rate-limited",
        "node-throttled",
        "server-error",
        "dns",
        "timeout",
        "tls",
        "network",
    }
    assert {r.pull_class for r in TABLE.pull_errors if not r.transient} == {
        "unauthorized",
        "platform-mismatch",
        "not-found",
        "invalid-name",
        "signature-invalid",
        "never-pull",
    }


def test_builtin_table_is_parsed_once() -> None:
    assert builtin_correlation() is TABLE


# ---- family and chain -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "listed", "family"),
    [
        # A Hook written for the Go khook that lists only the consequence keys as before.
        ("pod-restart", ["pod-restart"], "pod-restart"),
        ("probe-failed", ["probe-failed"], "probe-failed"),
        # When the Hook lists the cause, the consequences are counted under it.
        ("pod-restart", POD_TYPES, "oom-kill"),
        ("probe-failed", POD_TYPES, "oom-kill"),
        ("probe-failed", ["pod-restart", "probe-failed"], "pod-restart"),
        ("pod-pending", POD_TYPES, "image-pull-failed"),
        ("evicted", ["evicted", "node-not-ready"], "node-not-ready"),
        # Never a type below the event's own.
        ("oom-kill", ["pod-restart", "probe-failed"], "oom-kill"),
        ("image-pull-failed", ["pod-pending"], "image-pull-failed"),
        # A type in no chain is its own family.
        ("failed-mount", [*POD_TYPES, "failed-mount"], "failed-mount"),
        ("disk-full", [], "disk-full"),
    ],
)
def test_family(event_type: str, listed: list[str], family: str) -> None:
    assert TABLE.family(event_type, listed) == family


def test_chain() -> None:
    assert TABLE.chain("pod-restart") == ("oom-kill", "pod-restart", "probe-failed")
    assert TABLE.chain("failed-mount") == ("failed-mount",)


# ---- node consequences ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message", "expected"),
    [
        # controller/util/node/controller_utils.go MarkPodsNotReady.
        ("NodeNotReady", "Node is not ready", True),
        ("nodenotready", "", True),  # reasons compare case-insensitively
        # The Ready condition MarkPodsNotReady sets to False, read by khook.core.signals.
        ("ReadyFalse", "Pod condition Ready is False", True),
        # controller/tainteviction/taint_eviction.go.
        ("TaintManagerEviction", "Marking for deletion Pod shop/web-66b6c48dd5-x7k2p", True),
        ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint", True),
        # controller_utils.go SetPodTerminationReason, pkg/util/node.
        ("NodeLost", "Node worker-1 which was running pod db-0 is unresponsive", True),
        # kubelet eviction/helpers.go: node-pressure evictions.
        ("Evicted", "The node was low on resource: memory. Threshold quantity: 100Mi.", True),
        ("Evicted", "The node had condition: [DiskPressure]. ", True),
        # An eviction for the pod's own doing is not the node's.
        ("Evicted", 'Usage of EmptyDir volume "cache" exceeds the limit "1Gi". ', False),
        (
            "Evicted",
            "Pod ephemeral local storage usage exceeds the total limit of containers",
            False,
        ),
        # The pressure text under another reason is not an eviction.
        ("Unhealthy", "The node was low on resource: memory.", False),
        ("BackOff", "Back-off restarting failed container", False),
        ("", "", False),
    ],
)
def test_node_consequence(reason: str, message: str, expected: bool) -> None:
    assert TABLE.node_consequence(reason, message) is expected


# ---- causes named in a message -----------------------------------------------------------------


def test_quota_is_one_incident_per_quota_and_namespace() -> None:
    assert TABLE.cause_group("quota-exceeded", QUOTA) == (
        "ResourceQuota/compute-resources",
        "namespace",
    )
    # The older admission plugin's capital "Exceeded quota:" reads the same.
    assert TABLE.cause_group("quota-exceeded", "Exceeded quota: compute, requested: x") == (
        "ResourceQuota/compute",
        "namespace",
    )
    assert TABLE.cause_group("pod-pending", QUOTA) is None  # the rule names its types
    assert TABLE.cause_group("quota-exceeded", "no quota here") is None


def test_a_captured_value_that_is_not_a_dns_name_does_not_apply() -> None:
    rules = table(
        {
            "causes": [
                {"eventTypes": ["t"], "message": "vol (?P<v>\\S+)", "group": "Volume/{v}"},
                {"eventTypes": ["t"], "message": "vol", "group": "Volume/any", "scope": "cluster"},
            ]
        }
    )
    assert rules.cause_group("t", "vol data-0") == ("Volume/data-0", "namespace")
    # Capitals, a slash, 254 characters: the first rule does not apply, the next one does.
    for bad in ("Data", "a/b", "x" * 254, "-lead", "trail-", "a..b"):
        assert rules.cause_group("t", f"vol {bad}") == ("Volume/any", "cluster"), bad


def test_an_optional_group_that_did_not_match_does_not_apply() -> None:
    rules = table(
        {"causes": [{"eventTypes": ["t"], "message": "q(?P<n> [a-z]+)?", "group": "Q/{n}"}]}
    )
    assert rules.cause_group("t", "q") is None


def test_cause_group_on_hostile_text() -> None:
    for text in (
        "\ud800exceeded quota: a",
        "\x00" * 100_000,
        "",
        "exceeded quota: " + "a" * 10_000,
    ):
        TABLE.cause_group("quota-exceeded", text)  # never raises
    assert TABLE.cause_group("quota-exceeded", "\ud800 exceeded quota: ab, requested") == (
        "ResourceQuota/ab",
        "namespace",
    )
    late = "x" * 4_096 + QUOTA  # past the 4,096 characters searched
    assert TABLE.cause_group("quota-exceeded", late) is None


# ---- merging: a --rules file's table, then the built-in one ---------------------------------


def test_a_users_chain_takes_its_types_out_of_the_builtin_chains() -> None:
    merged = table({"precedence": [["pod-restart", "app-crash"]]}).then(TABLE)
    assert merged.chain("pod-restart") == ("pod-restart", "app-crash")
    assert merged.chain("oom-kill") == ("oom-kill", "probe-failed")
    assert merged.family("app-crash", ["pod-restart", "app-crash"]) == "pod-restart"
    assert merged.family("probe-failed", POD_TYPES) == "oom-kill"


def test_a_one_type_chain_makes_a_type_stand_alone() -> None:
    merged = table({"precedence": [["pod-pending"]]}).then(TABLE)
    assert merged.family("pod-pending", POD_TYPES) == "pod-pending"
    # ("image-pull-failed",) alone is no chain any more: dropped.
    assert ("image-pull-failed",) not in merged.precedence
    assert merged.chain("image-pull-failed") == ("image-pull-failed",)


def test_holds_are_replaced_per_type() -> None:
    merged = table(
        {"holds": {"probe-failed": {"minCount": 1}, "disk-full": {"minCount": 5, "for": "10m"}}}
    ).then(TABLE)
    assert merged.hold("probe-failed") == HoldRule(1, timedelta(0))
    assert merged.hold("disk-full") == HoldRule(5, timedelta(minutes=10))
    assert merged.hold("pod-restart") == HoldRule(3, timedelta(minutes=2))


def test_a_users_pull_errors_come_first() -> None:
    message = 'Failed to pull image "quay.io/a/b:1": 429 Too Many Requests'
    assert classify_pull(message, TABLE).pull_class == "rate-limited"  # type: ignore[union-attr]
    # A registry whose 429 means "your plan ran out" rather than "wait a minute".
    user = table(
        {"pullErrors": [{"class": "quota", "transient": False, "message": "429 Too Many"}]}
    )
    failure = classify_pull(message, user.then(TABLE))
    assert failure is not None and (failure.pull_class, failure.transient) == ("quota", False)


def test_node_reasons_are_unioned_and_the_eviction_message_overridden() -> None:
    user = table(
        {
            "nodeConsequences": {
                "reasons": ["NodeShutdown"],
                "evictionMessage": "evicted by the node",
            }
        }
    )
    merged = user.then(TABLE)
    assert merged.node_consequence("NodeShutdown", "")
    assert merged.node_consequence("NodeNotReady", "")
    assert merged.node_consequence("Evicted", "evicted by the node")
    assert not merged.node_consequence("Evicted", "The node was low on resource: memory.")
    # Without an evictionMessage of its own, the built-in one stays.
    assert (
        table({"nodeConsequences": {"reasons": ["X"]}})
        .then(TABLE)
        .node_consequence("Evicted", "The node was low on resource: memory.")
    )


def test_a_users_causes_come_first() -> None:
    user = table(
        {
            "causes": [
                {
                    "eventTypes": ["quota-exceeded"],
                    "message": "exceeded quota",
                    "group": "Namespace/quota",
                    "scope": "namespace",
                }
            ]
        }
    )
    assert user.then(TABLE).cause_group("quota-exceeded", QUOTA) == ("Namespace/quota", "namespace")


def test_then_keeps_warnings_and_an_empty_table_changes_nothing() -> None:
    risky = table({"pullWithoutCause": ["^(\\w+\\s?)*$"]})
    assert len(risky.warnings) == 1 and "nested quantifiers" in risky.warnings[0]
    merged = CorrelationTable().then(risky).then(TABLE)
    assert merged.warnings == risky.warnings
    plain = CorrelationTable().then(TABLE)
    assert plain.precedence == TABLE.precedence
    assert dict(plain.holds) == dict(TABLE.holds)
    assert plain.pull_errors == TABLE.pull_errors


# ---- load_correlation: --rules files ---------------------------------------------------------


def test_load_correlation_reads_rules_files_in_order(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(
        "rules:\n"
        "  - {eventType: quota-exceeded, source: event, reasons: [FailedCreate], message: quota}\n"
        "correlation:\n"
        "  holds:\n"
        "    probe-failed: {minCount: 5, for: 5m}\n"
        "---\n"
        "rules: []\n"  # a document with rules only: skipped here
    )
    second = tmp_path / "b.yaml"
    second.write_text(
        "correlation:\n  holds:\n    probe-failed: {minCount: 9, for: 9m}\n"
        "    pod-restart: {minCount: 1}\n"
    )
    merged = load_correlation([first, second])
    assert merged.hold("probe-failed") == HoldRule(5, timedelta(minutes=5))  # the first file wins
    assert merged.hold("pod-restart") == HoldRule(1, timedelta(0))
    assert merged.hold("pod-pending") == HoldRule(3, timedelta(minutes=2))  # built in
    assert load_correlation([]).precedence == TABLE.precedence


def test_load_correlation_reports_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("correlation:\n  holds:\n    probe-failed: {minCount: 0}\n")
    with pytest.raises(CorrelationError) as caught:
        load_correlation([bad])
    assert caught.value.origin == str(bad)
    assert caught.value.problems == [
        "correlation.holds.probe-failed.minCount: must be a whole number from 1 to 1000, not 0"
    ]
    with pytest.raises(FileError):
        load_correlation([tmp_path / "missing.yaml"])


# ---- validation: every problem, with its path ----------------------------------------------


def test_document_shapes() -> None:
    for document in (
        None,
        [],
        "correlation",
        {"rules": []},
        {"correlation": []},
        {"correlation": None},
    ):
        with pytest.raises(CorrelationError, match="mapping with a 'correlation' mapping"):
            parse_correlation(document, "x")


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    found = problems(
        {
            "precedence": [["oom-kill", "Pod_Restart"], ["oom-kill"], "probe-failed", []],
            "holds": {
                "probe-failed": {"minCount": True, "for": "2m"},
                "pod-restart": {"minCount": 3},
                "pod-pending": {"minCount": 3, "for": "forever"},
                "evicted": {"minCount": 3, "for": "25h", "transientOnly": "yes"},
                "oom-kill": {"minCount": 2, "for": "1m", "extra": 1},
                "job-failed": "3",
                "Bad Type": {"minCount": 1},
            },
            "pullErrors": [
                {"class": "Rate Limited", "transient": True, "message": "429"},
                {"class": "x", "message": "(a)\\1"},
                {"class": "y", "transient": False, "message": "a" * (MAX_PATTERN_LENGTH + 1)},
                "not a mapping",
            ],
            "pullWithoutCause": ["", 7],
            "nodeConsequences": {"reasons": ["ok", "", 5, "x" * 200], "evictionMessage": "("},
            "causes": [
                {"eventTypes": [], "message": "m", "group": "G/x"},
                {"eventTypes": ["t"], "message": "(?P<n>a)", "group": "Quota/{name}"},
                {"eventTypes": ["t"], "message": "a", "group": "has space/{x}", "scope": "world"},
                {"eventTypes": ["t"], "message": "(?P<a>x)", "group": "x" * 254},
                {"eventTypes": ["t"], "message": "(?P<a>x)", "group": "K/{a}{a}{a}{a}{a}"},
            ],
            "clustering": {},
        }
    )
    expected = [
        "correlation: unknown field(s) ['clustering']",
        "correlation.precedence[0][1]: 'Pod_Restart' must be an event type",
        "correlation.precedence[1][0]: 'oom-kill' is already in correlation.precedence[0]",
        "correlation.precedence[2]: must be a non-empty list of event types, not 'probe-failed'",
        "correlation.precedence[3]: must be a non-empty list of event types",
        "correlation.holds.probe-failed.minCount: must be a whole number from 1 to 1000, not True",
        "correlation.holds.pod-restart.for: is required with a minCount above 1",
        "correlation.holds.pod-pending.for: 'forever' must be a duration such as 2m or 90s",
        "correlation.holds.evicted.for: '25h' must be more than 0s and at most 24h",
        "correlation.holds.evicted.transientOnly: must be true or false, not 'yes'",
        "correlation.holds.oom-kill: unknown field(s) ['extra']",
        "correlation.holds.job-failed: must be a mapping, not '3'",
        "correlation.holds.Bad Type: 'Bad Type' must be an event type",
        "correlation.pullErrors[0].class: 'Rate Limited' must be a lowercase DNS label",
        "correlation.pullErrors[1].transient: must be true or false, not None",
        "correlation.pullErrors[1].message: '(a)\\\\1' is not a regular expression RE2 can run",
        "correlation.pullErrors[2].message: 'aaaa",
        "correlation.pullErrors[3]: must be a mapping, not 'not a mapping'",
        "correlation.pullWithoutCause[0]: '' must be a non-empty regular expression",
        "correlation.pullWithoutCause[1]: 7 must be a non-empty regular expression",
        "correlation.nodeConsequences.reasons[1]: '' must be a reason",
        "correlation.nodeConsequences.reasons[2]: 5 must be a reason",
        "correlation.nodeConsequences.reasons[3]: 'xxxx",
        "correlation.nodeConsequences.evictionMessage: '(' is not a regular expression RE2 can run",
        "correlation.causes[0].eventTypes: must be a non-empty list of event types",
        "correlation.causes[1].group: names ['name'], which the message pattern does not capture",
        "correlation.causes[2].group: 'has space/{x}' must be at most 253 characters",
        "correlation.causes[2].scope: must be one of ['namespace', 'cluster'], not 'world'",
        "correlation.causes[3].group: 'xxxx",
        "correlation.causes[4].group: has 5 placeholders; at most 4",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in found), (want, found)
    assert len(found) == len(expected), found


def test_pattern_length_problem_says_the_limit() -> None:
    found = problems({"pullWithoutCause": ["a" * (MAX_PATTERN_LENGTH + 1)]})
    shown = "'" + "a" * 79 + "…'"  # cut short, as every value shown in a problem
    assert found == [
        f"correlation.pullWithoutCause[0]: {shown} "
        f"is {MAX_PATTERN_LENGTH + 1} characters long; the limit is {MAX_PATTERN_LENGTH}"
    ]


def _entries(key: str, count: int) -> list[Any]:
    if key == "precedence":
        return [[f"t{i}"] for i in range(count)]
    if key == "pullErrors":
        return [{"class": "x", "transient": True, "message": "x"}] * count
    return [{"eventTypes": ["t"], "message": "x", "group": "K/x"}] * count


@pytest.mark.parametrize(
    ("key", "limit"),
    [("precedence", MAX_CHAINS), ("pullErrors", MAX_PULL_ERRORS), ("causes", MAX_CAUSES)],
)
def test_lists_are_bounded_before_they_are_read(key: str, limit: int) -> None:
    assert len(getattr(table({key: _entries(key, limit)}), _FIELDS[key])) == limit
    found = problems({key: _entries(key, 1_000_000)})
    assert found == [f"correlation.{key}: holds 1000000 entries; at most {limit} are allowed"]


_FIELDS = {"precedence": "precedence", "pullErrors": "pull_errors", "causes": "causes"}


def test_a_chain_and_a_hold_table_are_bounded() -> None:
    assert problems({"precedence": [[f"t{i}" for i in range(17)]]}) == [
        "correlation.precedence[0]: holds 17 types; at most 16"
    ]
    holds = {f"t{i}": {"minCount": 1} for i in range(257)}
    assert problems({"holds": holds}) == ["correlation.holds: holds 257 types; at most 256"]


def test_hostile_values_are_shown_short() -> None:
    found = problems(
        {
            "holds": {"x" * 10_000: {"minCount": "y" * 10_000}},
            "causes": [{"eventTypes": [{"deep": [[[[]]]]}], "message": "m", "group": "K/x"}],
        }
    )
    assert all(len(p) < 400 for p in found), found
    assert any("a dict must be an event type" in p for p in found)


def test_a_valid_document_of_every_key() -> None:
    parsed = table(
        {
            "precedence": [["disk-full", "slow-io"]],
            "holds": {"slow-io": {"minCount": 2, "for": "90s", "transientOnly": False}},
            "pullErrors": [
                {"class": "mirror-down", "transient": True, "message": "mirror .* down"}
            ],
            "pullWithoutCause": ["^Waiting for mirror$"],
            "nodeConsequences": {"reasons": ["NodeShutdown"], "evictionMessage": "node drained"},
            "causes": [
                {
                    "eventTypes": ["slow-io"],
                    "message": "volume (?P<volume>[a-z0-9-]+) on (?P<node>[a-z0-9.-]+)",
                    "group": "Volume/{node}/{volume}",
                    "scope": "cluster",
                }
            ],
        }
    )
    assert parsed.family("slow-io", ["disk-full", "slow-io"]) == "disk-full"
    assert parsed.hold("slow-io") == HoldRule(2, timedelta(seconds=90))
    assert classify_pull("Waiting for mirror", parsed) is None
    failure = classify_pull("the mirror at x is down", parsed)
    assert failure is not None and failure.pull_class == "mirror-down" and failure.transient
    assert parsed.node_consequence("nodeshutdown", "")
    assert parsed.cause_group("slow-io", "volume data-0 on worker-1.example") == (
        "Volume/worker-1.example/data-0",
        "cluster",
    )
