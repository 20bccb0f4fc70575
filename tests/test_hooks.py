"""Hook parsing and validation, compatible with Hooks written for the Go khook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from khook.core.hooks import AgentRef, GroupBy, HookInvalid, parse_hook
from khook.files import builtin_rules

KNOWN = builtin_rules().event_types


def hook(*configs: dict[str, Any], namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": "h", "namespace": namespace, "generation": 3, "uid": "u-1"},
        "spec": {"eventConfigurations": list(configs), **spec},
    }


def config(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventType": "pod-restart",
        "agentRef": {"name": "k8s-agent"},
        "prompt": "{{.ResourceName}} restarted",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def parse(doc: dict[str, Any], control: str = "khook-system") -> Any:
    return parse_hook(doc, known_types=KNOWN, control_namespace=control)


def problems(doc: dict[str, Any]) -> str:
    with pytest.raises(HookInvalid) as err:
        parse(doc)
    return "\n".join(err.value.problems)


def test_defaults() -> None:
    h = parse(hook(config()))
    (c,) = h.configurations
    assert h.key == "shop/h" and h.generation == 3 and h.uid == "u-1"
    assert c.agent == AgentRef("shop", "k8s-agent")  # the Hook's namespace by default
    assert c.cooldown == timedelta(minutes=10)
    assert c.group_by is GroupBy.OWNER


def test_extensions() -> None:
    h = parse(
        hook(
            config(
                cooldown="1h30m", groupBy="resource", agentRef={"name": "a", "namespace": "kagent"}
            )
        )
    )
    (c,) = h.configurations
    assert c.agent == AgentRef("kagent", "a")
    assert c.cooldown == timedelta(hours=1, minutes=30)
    assert c.group_by is GroupBy.RESOURCE


@pytest.mark.parametrize(
    ("agent_id", "expected"),
    [
        ("kagent/pod-restart-agent", AgentRef("kagent", "pod-restart-agent")),
        ("local-agent", AgentRef("shop", "local-agent")),
    ],
)
def test_legacy_agent_id(agent_id: str, expected: AgentRef) -> None:
    (c,) = parse(hook(config(agentRef=None, agentId=agent_id))).configurations
    assert c.agent == expected


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        (config(eventType="pod-explode"), "not a known event type"),
        (config(prompt=""), "prompt: prompt is empty"),
        (config(prompt="{{.Nope}}"), "unknown placeholder"),
        (config(prompt="{% for %}"), "template error"),
        (config(agentRef=None), "agentRef is required"),
        (config(agentRef={"name": ""}), "agentRef.name is required"),
        (config(agentId="a/b/c", agentRef=None), "must be 'namespace/name'"),
        (config(agentId="x/y"), "not both"),
        (config(cooldown="soon"), "invalid duration"),
        (config(cooldown="1s"), "between 10s and 7d"),
        (config(groupBy="pod"), "groupBy must be one of"),
        (config(evenType="typo"), "unknown field(s) ['evenType']"),
    ],
)
def test_invalid_configuration(cfg: dict[str, Any], fragment: str) -> None:
    assert fragment in problems(hook(cfg))


def test_duplicate_event_type() -> None:
    text = problems(hook(config(), config(prompt="again")))
    assert "already configured at spec.eventConfigurations[0]" in text


def test_every_problem_is_reported_at_once() -> None:
    doc = hook(config(eventType="nope", prompt=""), config(groupBy="x"))
    doc["apiVersion"] = "kagent.dev/v1alpha1"
    with pytest.raises(HookInvalid) as err:
        parse(doc)
    assert len(err.value.problems) == 4


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d.pop("spec"), "spec is required"),
        (lambda d: d["spec"].update(eventConfigurations=[]), "non-empty list"),
        (lambda d: d["metadata"].pop("name"), "metadata.name is required"),
        (lambda d: d.update(kind="Hooks"), "kind must be Hook"),
        (lambda d: d["spec"].update(selector={"namespaces": "all"}), "list of non-empty strings"),
    ],
)
def test_invalid_hook(mutate: Any, fragment: str) -> None:
    doc = hook(config())
    mutate(doc)
    assert fragment in problems(doc)


def test_selector_namespaces_outside_the_control_namespace_is_a_warning() -> None:
    h = parse(hook(config(), selector={"namespaces": ["other"]}))
    assert h.warnings and "control namespace" in h.warnings[0]
    assert not parse(
        hook(config(), namespace="khook-system", selector={"namespaces": ["other"]})
    ).warnings
