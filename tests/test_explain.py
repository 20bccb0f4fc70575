"""Why khook did not act: the explanation must agree with the decision, Hook by Hook."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from khook.core.classify import classify
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.explain import why_no_hook, why_no_rule, why_not
from khook.core.match import match
from tests.support.events import core_event, oom_status, pod
from tests.test_match import CONTROL, NOW, TABLE
from tests.test_match import make_hook as hook_in

COUNT = iter(range(100))


def make_hook(namespace: str, *types: str, **spec: Any) -> Any:
    """A Hook with a name of its own, so that each Hook here has its own key."""
    hook = hook_in(namespace, *types, **spec)
    return replace(hook, name=f"{hook.name}-{next(COUNT)}")


HOOKS = [
    make_hook("shop", "oom-kill"),
    make_hook("shop", "pod-restart"),
    make_hook("other", "oom-kill"),
    make_hook(CONTROL, "oom-kill", "node-not-ready"),
    make_hook(CONTROL, "oom-kill", selector={"namespaces": ["*"]}),
    make_hook(CONTROL, "oom-kill", selector={"namespaces": ["payments"]}),
    make_hook(CONTROL, "node-not-ready", selector={"exclude": {"namespaces": ["default"]}}),
    make_hook("shop", "pod-restart", selector={"exclude": {"reasons": ["backoff"]}}),
    make_hook("default", "node-not-ready"),
]
OBJECTS = {
    "oom in shop": pod(namespace="shop", container_statuses=[oom_status()]),
    "backoff in shop": core_event(
        "BackOff", "Back-off restarting failed container", namespace="shop"
    ),
    "node down": core_event("NodeNotReady", "Node n1 is not ready", type_="Normal", kind="Node"),
}


def decoded(obj: dict[str, Any]) -> ClusterEvent:
    event = decode_object(obj, action=Action.UPDATE, observed_at=NOW)
    assert isinstance(event, ClusterEvent)
    return event


@pytest.mark.parametrize("name", list(OBJECTS))
def test_the_explanation_agrees_with_matching(name: str) -> None:
    event = decoded(OBJECTS[name])
    detections = classify(event, TABLE)
    assert detections
    acting = {m.hook.key for m in match(event, detections, HOOKS, CONTROL)}
    for hook in HOOKS:
        why = why_not(hook, event, detections, CONTROL)
        assert (why == "") == (hook.key in acting), (hook.key, why)


def test_what_each_refusal_says() -> None:
    oom = decoded(OBJECTS["oom in shop"])
    found = classify(oom, TABLE)
    assert why_not(HOOKS[1], oom, found, CONTROL) == "it configures pod-restart, not oom-kill"
    assert why_not(HOOKS[2], oom, found, CONTROL).startswith(
        "the object is in namespace shop: a Hook sees only its own namespace"
    )
    assert why_not(HOOKS[5], oom, found, CONTROL) == "spec.selector.namespaces does not list shop"
    node = decoded(OBJECTS["node down"])
    assert "cluster-scoped" in why_not(HOOKS[8], node, classify(node, TABLE), CONTROL)
    backoff = decoded(OBJECTS["backoff in shop"])
    assert (
        why_not(HOOKS[7], backoff, classify(backoff, TABLE), CONTROL)
        == "spec.selector.exclude.reasons lists BackOff"
    )


def test_no_hook_names_at_most_three() -> None:
    oom = decoded(OBJECTS["oom in shop"])
    text = why_no_hook(oom, classify(oom, TABLE), [HOOKS[1]] * 5, CONTROL)
    assert text.count("shop/h-shop-1:") == 3 and text.endswith("; and 2 more)")
    assert why_no_hook(oom, classify(oom, TABLE), [], CONTROL) == (
        "oom-kill on Pod shop/web-7d4b9c8f5-x2x9z: no Hook in force in shop "
        f"or in the control namespace {CONTROL}"
    )


def test_no_rule_says_what_the_object_showed() -> None:
    started = decoded(core_event("Started", "Started container app", type_="Normal"))
    assert why_no_rule(started) == (
        "Event default/web-1.started: Normal 'Started' about Pod default/web-1: "
        "no classification rule matched"
    )
    typo = core_event("BackOff", "x")
    del typo["reason"]
    assert why_no_rule(decoded(typo)) == (
        "Event default/web-1.backoff has no reason: no classification rule can match it"
    )
