"""Hook parsing and validation, compatible with Hooks written for the Go khook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.hooks import AgentRef, GroupBy, HookInvalid, parse_hook, read_hook
from khook.core.prompt import compile_prompt
from khook.core.tenancy import is_dns_label
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


# ---- agents: DNS-1123 labels only, so the agent's URL is built from validated parts ---------


@pytest.mark.parametrize(
    ("cfg", "fragment"),
    [
        (
            config(agentRef={"name": "../../../api/sessions?x="}),
            "spec.eventConfigurations[0].agentRef.name '../../../api/sessions?x=' must be a "
            "DNS-1123 label",
        ),
        (config(agentRef={"name": "A"}), "agentRef.name 'A' must be a DNS-1123 label"),
        (config(agentRef={"name": 7}), "agentRef.name 7 must be a DNS-1123 label"),
        (config(agentRef={"name": "a" * 64}), "agentRef.name 'aaaa"),
        (
            config(agentRef={"name": "a", "namespace": "x/../../y"}),
            "spec.eventConfigurations[0].agentRef.namespace 'x/../../y' must be a DNS-1123 label",
        ),
        (config(agentRef={"name": "a", "namespace": ""}), "agentRef.namespace '' must be"),
        (config(agentRef={"name": "a", "namespace": ["kagent"]}), "namespace a list must be"),
        (config(agentRef=None, agentId="kagent/../x"), "must be 'namespace/name' or 'name'"),
        (config(agentRef=None, agentId="/x"), "must be 'namespace/name' or 'name'"),
        (
            config(agentRef=None, agentId="kagent/a.b"),
            "spec.eventConfigurations[0].agentId 'kagent/a.b': the name 'a.b' must be",
        ),
        (config(agentRef=None, agentId="Kagent/x"), "the namespace 'Kagent' must be"),
        (config(agentRef=None, agentId="x?y=1"), "the name 'x?y=1' must be"),
    ],
)
def test_agent_names_are_dns_labels(cfg: dict[str, Any], fragment: str) -> None:
    assert fragment in problems(hook(cfg))


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("namespace", "../x", "metadata.namespace '../x' must be a DNS-1123 label"),
        ("namespace", "Team", "metadata.namespace 'Team'"),
        ("name", "Bad Name", "metadata.name 'Bad Name' must be a DNS-1123 subdomain"),
        ("name", "a" * 254, "metadata.name 'aaa"),
    ],
)
def test_the_hooks_identity_is_checked(field: str, value: str, fragment: str) -> None:
    # A file-mode Hook's namespace is the default agent namespace: it must be a label too.
    doc = hook(config())
    doc["metadata"][field] = value
    assert fragment in problems(doc)


@given(name=st.text(max_size=70), namespace=st.one_of(st.none(), st.text(max_size=70)))
@settings(max_examples=300, deadline=None)
def test_any_agent_that_parses_has_label_parts(name: str, namespace: str | None) -> None:
    ref = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    try:
        h = parse(hook(config(agentRef=ref)))
    except HookInvalid:
        return
    agent = h.configurations[0].agent
    assert is_dns_label(agent.namespace) and is_dns_label(agent.name)


def test_the_go_khook_forms_still_parse() -> None:
    h = parse(
        hook(
            config(agentRef=None, agentId="kagent/pod-restart-agent"),
            config(eventType="oom-kill", agentRef={"name": "memory-agent", "namespace": "kagent"}),
            config(eventType="pod-pending", agentRef={"name": "k8s-agent"}),
        )
    )
    assert [c.agent.id for c in h.configurations] == [
        "kagent/pod-restart-agent",
        "kagent/memory-agent",
        "shop/k8s-agent",
    ]


# ---- hostile documents: a HookInvalid with bounded problems, never anything else --------------


def deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = [value]
    return value


HOSTILE_VALUES = [deep(100_000), {"a": deep(100_000)}, "x" * 5_000_000, 10**400, 1.5, True, None]


@pytest.mark.parametrize("doc", [[], "a Hook", 42, None, deep(100_000), b"bytes"])
def test_a_document_that_is_not_a_mapping(doc: Any) -> None:
    with pytest.raises(HookInvalid) as err:
        parse(doc)
    assert err.value.problems == ["a Hook is a mapping"]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize(
    "place",
    [
        "apiVersion",
        "kind",
        "metadata",
        "metadata.name",
        "metadata.namespace",
        "spec",
        "spec.selector",
        "spec.selector.namespaces",
        "spec.eventConfigurations",
        "spec.eventConfigurations.0",
        "spec.eventConfigurations.0.eventType",
        "spec.eventConfigurations.0.agentRef",
        "spec.eventConfigurations.0.agentRef.name",
        "spec.eventConfigurations.0.agentId",
        "spec.eventConfigurations.0.prompt",
        "spec.eventConfigurations.0.cooldown",
        "spec.eventConfigurations.0.groupBy",
    ],
)
def test_hostile_values_anywhere(place: str, value: Any) -> None:
    doc = hook(config(), selector={"namespaces": ["a"]})
    target: Any = doc
    *parents, last = place.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    try:
        parse(doc)
    except HookInvalid as exc:
        assert exc.problems and all(len(p) < 2_000 for p in exc.problems)


def test_keys_of_any_type_are_reported() -> None:
    doc = hook(config())
    doc["spec"].update({1: "x", None: "y", ("t",): "z", "b" * 1000: 1})
    text = problems(doc)
    assert "spec: unknown field(s) [" in text and len(text) < 2_000


def test_limits() -> None:
    many = [config(eventType=t) for t in sorted(KNOWN)] * 8
    assert f"has {len(many)} entries; the limit is 64" in problems(hook(*many))
    assert "between 10s and 7d" in problems(hook(config(cooldown="99999999999999d")))
    huge = {"namespaces": [f"ns{i}" for i in range(1001)]}
    assert "at most 1000 entries" in problems(hook(config(), selector=huge))


# ---- two steps: the shape first, the prompts only when asked --------------------------------


def test_reading_a_valid_hook_compiles_nothing() -> None:
    compiled: list[str] = []

    def compiler(source: str) -> Any:
        compiled.append(source)
        return compile_prompt(source)

    draft = read_hook(hook(config()), known_types=KNOWN, control_namespace="x", compiler=compiler)
    assert compiled == [] and draft.configurations[0].prompt == "{{.ResourceName}} restarted"
    assert draft.compile(compiler).configurations[0].prompt.source == draft.configurations[0].prompt
    assert compiled == ["{{.ResourceName}} restarted"]


def test_an_invalid_shape_still_reports_the_prompts() -> None:
    with pytest.raises(HookInvalid) as err:
        read_hook(
            hook(config(eventType="nope", prompt="{{.Oops}}")),
            known_types=KNOWN,
            control_namespace="x",
        )
    text = "\n".join(err.value.problems)
    assert "not a known event type" in text and "{{.Oops}}" in text
    assert err.value.reason == "InvalidConfiguration"


def test_a_compiler_that_fails_badly_costs_only_its_hook() -> None:
    def explode(source: str) -> Any:
        raise MemoryError("folded 2**30000000")

    draft = read_hook(hook(config()), known_types=KNOWN, control_namespace="x")
    with pytest.raises(HookInvalid) as err:
        draft.compile(explode)
    assert err.value.problems == [
        "spec.eventConfigurations[0].prompt: prompt cannot be compiled: MemoryError: "
        "folded 2**30000000"
    ]
