"""Agent boundaries per tenant and the Hook quota: pure policy, decided alike by every replica."""

from __future__ import annotations

import random

import pytest

from khook.core.tenancy import (
    AgentPolicy,
    PolicyError,
    in_quota,
    is_dns_label,
    parse_grants,
    quota_order,
)

CONTROL = "khook-system"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("k8s-agent", True),
        ("a", True),
        ("0day", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("-a", False),
        ("a-", False),
        ("A", False),
        ("a.b", False),
        ("a/b", False),
        ("../../../api/sessions?x=", False),
        ("kagent\n", False),
        (7, False),
        (None, False),
    ],
)
def test_dns_labels(value: object, ok: bool) -> None:
    assert is_dns_label(value) is ok


def test_grants_parse() -> None:
    grants = parse_grants(" team-a = ml-agents, shared ; team-b=ml-agents;;team-a=extra ")
    assert grants == {
        "team-a": frozenset({"ml-agents", "shared", "extra"}),  # named twice: the union
        "team-b": frozenset({"ml-agents"}),
    }
    assert parse_grants("") == {}
    assert parse_grants("*=shared;ops=*") == {"*": {"shared"}, "ops": {"*"}}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("team-a", "entry 1 'team-a': expected 'hook-namespace=agent-namespace"),
        ("team-a=ok;team-b", "entry 2 'team-b'"),
        ("team-a=", "names no agent namespace"),
        ("=ml", "'' is not '*' or a DNS-1123 label"),
        ("team-a=ML_Agents", "'ML_Agents' is not '*' or a DNS-1123 label"),
        ("team_a=ml", "'team_a' is not"),
    ],
)
def test_grant_errors_are_clear(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as err:
        parse_grants(text)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)  # what the lead turns into a start-up error


def test_a_bad_shared_namespace_is_refused() -> None:
    with pytest.raises(PolicyError, match="agent namespaces: 'Kagent'"):
        AgentPolicy.build(CONTROL, ("Kagent",))


def test_the_default_policy() -> None:
    policy = AgentPolicy.build(CONTROL)
    assert policy.allows("team-a", "team-a")  # its own namespace
    assert policy.allows("team-a", "kagent")  # Kagent's
    assert not policy.allows("team-a", "team-b")
    assert policy.allows(CONTROL, "team-b")  # the platform team's Hooks call anywhere
    assert policy.describe("team-a") == "'kagent', 'team-a'"
    assert policy.describe(CONTROL) == "any namespace"


def test_grants_widen_one_namespace_only() -> None:
    policy = AgentPolicy.build(CONTROL, ("kagent",), "team-a=ml-agents,shared;team-b=ml-agents")
    assert policy.allows("team-a", "shared") and policy.allows("team-b", "ml-agents")
    assert not policy.allows("team-b", "shared")
    assert not policy.allows("team-c", "ml-agents")


def test_stars() -> None:
    everyone = AgentPolicy.build(CONTROL, ("kagent",), "*=shared;ops=*")
    assert everyone.allows("team-c", "shared")  # '*' on the left: every namespace
    assert everyone.allows("ops", "anything")  # '*' on the right: any agent namespace
    assert not everyone.allows("team-c", "ops")
    assert everyone.describe("ops") == "any namespace"
    assert AgentPolicy.build(CONTROL, ("*",)).allows("team-c", "team-d")


def test_refusals_name_the_field_and_the_allowance() -> None:
    policy = AgentPolicy.build(CONTROL, ("kagent",), "team-a=shared")
    problems = policy.check_agents(
        "team-a",
        [
            ("spec.eventConfigurations[0].agentRef.namespace", "other-team"),
            ("spec.eventConfigurations[1].agentRef.namespace", "shared"),
            ("spec.eventConfigurations[2].agentId", "kagent"),
        ],
    )
    assert problems == [
        "spec.eventConfigurations[0].agentRef.namespace: a Hook in namespace 'team-a' may not "
        "call agents in namespace 'other-team'; it may call agents in 'kagent', 'shared', "
        "'team-a' (the platform team grants more with KHOOK_AGENT_GRANTS)"
    ]


def test_quota_keeps_the_oldest_then_by_name_whatever_the_order_seen() -> None:
    orders = {
        f"ns/h{i}": quota_order(f"2026-01-01T00:00:{i % 60:02d}Z", f"h{i}") for i in range(120)
    }
    orders["ns/late"] = quota_order("2027-01-01T00:00:00Z", "late")
    orders["ns/early"] = quota_order("2025-01-01T00:00:00Z", "early")
    keys = list(orders)
    first = in_quota(orders, 50)
    for _ in range(5):
        random.shuffle(keys)
        assert in_quota({k: orders[k] for k in keys}, 50) == first  # every replica agrees
    assert len(first) == 50
    assert "ns/early" in first and "ns/late" not in first
    # Same second: by name (h0 and h60 were created at :00, h1 and h61 at :01, ...).
    assert {"ns/h0", "ns/h60", "ns/h1", "ns/h61"} <= first
    assert in_quota(orders, 0) == frozenset()


def test_a_missing_timestamp_sorts_by_name() -> None:
    assert quota_order(None, "b") < quota_order("", "c")
    assert quota_order({"not": "a time"}, "a") == ("", "a")
