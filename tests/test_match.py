"""Matching and tenant isolation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from khook.core.classify import classify
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.hooks import GroupBy, parse_hook
from khook.core.match import incident_group, match
from khook.files import builtin_rules
from tests.support.events import core_event, oom_status, pod

TABLE = builtin_rules()
NOW = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
CONTROL = "khook-system"


def make_hook(namespace: str, *types: str, **spec: Any) -> Any:
    doc = {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": f"h-{namespace}", "namespace": namespace},
        "spec": {
            "eventConfigurations": [
                {"eventType": t, "agentRef": {"name": "a"}, "prompt": "p"} for t in types
            ],
            **spec,
        },
    }
    return parse_hook(doc, known_types=TABLE.event_types, control_namespace=CONTROL)


def matched(obj: dict[str, Any], *hooks: Any) -> list[str]:
    event = decode_object(obj, action=Action.UPDATE, observed_at=NOW)
    assert isinstance(event, ClusterEvent)
    return [m.hook.key for m in match(event, classify(event, TABLE), hooks, CONTROL)]


OOM_IN_SHOP = pod(namespace="shop", container_statuses=[oom_status()])
NODE_DOWN = core_event("NodeNotReady", "Node n1 is not ready", type_="Normal", kind="Node")


def test_a_hook_sees_its_own_namespace_only() -> None:
    shop, other = make_hook("shop", "oom-kill"), make_hook("other", "oom-kill")
    assert matched(OOM_IN_SHOP, shop, other) == ["shop/h-shop"]


def test_only_configured_types_match() -> None:
    assert matched(OOM_IN_SHOP, make_hook("shop", "pod-restart")) == []


def test_nodes_only_for_the_control_namespace() -> None:
    tenant, control = make_hook("default", "node-not-ready"), make_hook(CONTROL, "node-not-ready")
    assert matched(NODE_DOWN, tenant, control) == [f"{CONTROL}/h-{CONTROL}"]


def test_a_tenant_cannot_select_other_namespaces() -> None:
    tenant = make_hook("other", "oom-kill", selector={"namespaces": ["shop", "*"]})
    assert matched(OOM_IN_SHOP, tenant) == []


@pytest.mark.parametrize(
    ("selector", "sees"),
    [
        (None, False),
        ({"namespaces": ["shop"]}, True),
        ({"namespaces": ["*"]}, True),
        ({"namespaces": ["*"], "exclude": {"namespaces": ["shop"]}}, False),
        ({"namespaces": ["*"], "exclude": {"reasons": ["oomkilled"]}}, False),
    ],
)
def test_control_namespace_selector(selector: Any, sees: bool) -> None:
    spec = {"selector": selector} if selector else {}
    control = make_hook(CONTROL, "oom-kill", **spec)
    assert matched(OOM_IN_SHOP, control) == ([control.key] if sees else [])


def test_exclude_reasons_is_reverse_selection() -> None:
    h = make_hook("default", "pod-restart", selector={"exclude": {"reasons": ["BackOff"]}})
    assert matched(core_event("BackOff", "Back-off restarting failed container"), h) == []
    assert matched(core_event("Killing", "Stopping container app"), h) == [h.key]


def test_incident_groups() -> None:
    hook = make_hook("shop", "oom-kill")
    event = decode_object(OOM_IN_SHOP, action=Action.UPDATE, observed_at=NOW)
    assert isinstance(event, ClusterEvent)
    by_owner = hook.configurations[0]
    assert incident_group(event, by_owner) == "Deployment/web"
    by_resource = replace(by_owner, group_by=GroupBy.RESOURCE)
    assert incident_group(event, by_resource) == "Pod/web-7d4b9c8f5-x2x9z"
    orphan = decode_object(pod(owner=None), action=Action.UPDATE, observed_at=NOW)
    assert isinstance(orphan, ClusterEvent)
    assert incident_group(orphan, by_owner) == "Pod/web-7d4b9c8f5-x2x9z"
