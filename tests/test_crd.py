"""The Hook CRD: structural, compatible with the Go khook, and agreeing with khook's parser."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from khook.core.hooks import HookInvalid, parse_hook
from khook.files import builtin_rules, read_documents
from tests.support.events import ROOT

CRD = yaml.safe_load((ROOT / "config" / "crd" / "hooks.kagent.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def sample_hooks() -> list[tuple[str, dict[str, Any]]]:
    docs = read_documents(ROOT / "config" / "samples")
    return [(d.origin, d.body) for d in docs if d.body.get("kind") == "Hook"]


def errors(doc: dict[str, Any]) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(doc)]


def test_crd_identity() -> None:
    assert CRD["metadata"]["name"] == "hooks.kagent.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert VERSION["name"] == "v1alpha2" and VERSION["served"] and VERSION["storage"]
    assert VERSION["subresources"] == {"status": {}}
    assert CRD["spec"]["names"]["shortNames"]
    columns = {c["name"] for c in VERSION["additionalPrinterColumns"]}
    assert {"Event Types", "Firing", "Ready", "Age"} <= columns


@pytest.mark.parametrize(("origin", "doc"), sample_hooks(), ids=lambda v: str(v)[-40:])
def test_every_sample_hook_validates(origin: str, doc: dict[str, Any]) -> None:
    assert errors(doc) == [], origin
    parse_hook(doc, known_types=builtin_rules().event_types, control_namespace="khook-system")


def test_the_go_khook_sample_applies_unchanged() -> None:
    go_sample = {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": "hook-sample", "namespace": "default"},
        "spec": {
            "eventConfigurations": [
                {
                    "eventType": "pod-restart",
                    "agentRef": {"name": "k8s-agent"},
                    "prompt": "A pod has restarted: {{.ResourceName}}",
                },
                {"eventType": "oom-kill", "agentId": "kagent/memory-agent", "prompt": "OOM"},
            ]
        },
    }
    assert errors(go_sample) == []


GOOD = {
    "apiVersion": "kagent.dev/v1alpha2",
    "kind": "Hook",
    "metadata": {"name": "h", "namespace": "default"},
    "spec": {
        "eventConfigurations": [{"eventType": "oom-kill", "agentRef": {"name": "a"}, "prompt": "p"}]
    },
}


def broken(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    target: Any = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.eventConfigurations", []),
        ("spec.eventConfigurations.0.eventType", "Not_A_Type"),
        ("spec.eventConfigurations.0.agentRef", {"name": ""}),
        ("spec.eventConfigurations.0.agentRef", {"namespace": "kagent"}),
        ("spec.eventConfigurations.0.prompt", ""),
        ("spec.eventConfigurations.0.prompt", "x" * 10_001),
        ("spec.eventConfigurations.0.cooldown", "ten minutes"),
        ("spec.eventConfigurations.0.groupBy", "pod"),
        ("spec.eventConfigurations.0.prompt", _DELETE),
        ("spec.selector", {"namespaces": "all"}),
        ("spec", _DELETE),
    ],
)
def test_broken_hooks_are_rejected(path: str, value: Any) -> None:
    assert errors(broken(path, value))


def test_status_shape_matches_what_khook_writes() -> None:
    from datetime import UTC, datetime, timedelta

    from khook.core.dedup import DedupKey, Record
    from khook.core.status import active_events, readiness, ready_condition, status_patch

    now = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
    record = Record(
        DedupKey("default/h", "oom-kill", "default", "Deployment/web"),
        now,
        now,
        now,
        timedelta(minutes=10),
        3,
        "t",
        confirmed=True,
        resources=("Pod/web-1",),
        task_id="task-1",
        context_id="ctx-1",
    )
    condition = ready_condition(readiness([], [], []), 2, now)
    doc = copy.deepcopy(GOOD)
    doc.update(status_patch(active_events([record], now), condition, 2, now))
    assert errors(doc) == []
    assert doc["status"]["activeEvents"][0]["resourceName"] == "web-1"


AGENTS = [
    ({"name": "k8s-agent"}, True),
    ({"name": "k8s-agent", "namespace": "kagent"}, True),
    ({"name": "a" * 63, "namespace": "b" * 63}, True),
    ({"name": "../../../api/sessions?x="}, False),
    ({"name": "k8s-agent", "namespace": "../other"}, False),
    ({"name": "K8s"}, False),
    ({"name": "a.b"}, False),
    ({"name": "a" * 64}, False),
    ({"name": "a", "namespace": ""}, False),
    ({"name": "a", "namespace": "-a"}, False),
]
AGENT_IDS = [
    ("kagent/memory-agent", True),
    ("memory-agent", True),
    ("kagent/a.b", False),
    ("kagent/../x", False),
    ("Kagent/x", False),
    ("/x", False),
    ("a/b/c", False),
    ("x?y=1", False),
    (f"{'a' * 64}/b", False),
]


def parses(doc: dict[str, Any]) -> bool:
    try:
        parse_hook(doc, known_types=builtin_rules().event_types, control_namespace="khook-system")
    except HookInvalid:
        return False
    return True


@pytest.mark.parametrize(("agent_ref", "valid"), AGENTS, ids=str)
def test_the_crd_and_the_parser_agree_on_agent_refs(agent_ref: dict[str, Any], valid: bool) -> None:
    doc = broken("spec.eventConfigurations.0.agentRef", agent_ref)
    assert (errors(doc) == []) is valid
    assert parses(doc) is valid


@pytest.mark.parametrize(("agent_id", "valid"), AGENT_IDS)
def test_the_crd_and_the_parser_agree_on_agent_ids(agent_id: str, valid: bool) -> None:
    doc = broken("spec.eventConfigurations.0.agentRef", _DELETE)
    doc["spec"]["eventConfigurations"][0]["agentId"] = agent_id
    assert (errors(doc) == []) is valid
    assert parses(doc) is valid


def test_the_crd_bounds_selector_lists() -> None:
    assert errors(broken("spec.selector", {"namespaces": [f"n{i}" for i in range(1001)]}))
    assert errors(broken("spec.selector", {"exclude": {"reasons": ["r" * 254]}}))
    assert errors(broken("spec.selector", {"exclude": {"namespaces": ["a"] * 999}})) == []
