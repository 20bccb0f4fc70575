"""Hooks: a typed model of ``kagent.dev/v1alpha2`` Hook, compatible with the Go khook's CRD.

Parsing validates everything a user can get wrong and reports every problem at once, with the
path of the offending field, so ``khook validate`` and a Hook's ``Ready`` condition can say
exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from khook.core.durations import DurationError, parse_duration
from khook.core.prompt import PromptError, PromptTemplate, compile_prompt

API_VERSION = "kagent.dev/v1alpha2"
KIND = "Hook"
DEFAULT_COOLDOWN = timedelta(minutes=10)
MIN_COOLDOWN = timedelta(seconds=10)
MAX_COOLDOWN = timedelta(days=7)
ALL_NAMESPACES = "*"

_CONFIG_KEYS = {"eventType", "agentRef", "agentId", "prompt", "cooldown", "groupBy"}
_SPEC_KEYS = {"eventConfigurations", "selector"}
_SELECTOR_KEYS = {"namespaces", "exclude"}
_EXCLUDE_KEYS = {"namespaces", "reasons"}


class GroupBy(StrEnum):
    OWNER = "owner"
    RESOURCE = "resource"


class HookInvalid(ValueError):
    """A Hook that cannot be used; ``problems`` says why, one line per problem."""

    def __init__(self, namespace: str, name: str, problems: Sequence[str]) -> None:
        self.namespace = namespace
        self.name = name
        self.problems = list(problems)
        super().__init__(f"Hook {namespace}/{name}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class AgentRef:
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EventConfiguration:
    event_type: str
    agent: AgentRef
    prompt: PromptTemplate
    cooldown: timedelta = DEFAULT_COOLDOWN
    group_by: GroupBy = GroupBy.OWNER


@dataclass(frozen=True)
class Selector:
    namespaces: frozenset[str] = frozenset()
    exclude_namespaces: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Hook:
    namespace: str
    name: str
    configurations: tuple[EventConfiguration, ...]
    selector: Selector = field(default_factory=Selector)
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    origin: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def event_types(self) -> list[str]:
        return [c.event_type for c in self.configurations]


def hook_identity(doc: Any, default_namespace: str) -> tuple[str, str]:
    meta = doc.get("metadata") if isinstance(doc, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else ""
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else ""
    return namespace or default_namespace, name or "(unnamed)"


def parse_hook(
    doc: Any,
    *,
    known_types: frozenset[str],
    control_namespace: str,
    default_namespace: str = "default",
    origin: str = "",
) -> Hook:
    namespace, name = hook_identity(doc, default_namespace)
    problems: list[str] = []
    if not isinstance(doc, Mapping):
        raise HookInvalid(namespace, name, ["a Hook is a mapping"])
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion must be {API_VERSION}, not {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind must be {KIND}, not {doc.get('kind')!r}")
    if name == "(unnamed)":
        problems.append("metadata.name is required")
    meta = _mapping(doc.get("metadata"))
    spec = doc.get("spec")
    configs: list[EventConfiguration] = []
    selector = Selector()
    if not isinstance(spec, Mapping):
        problems.append("spec is required")
    else:
        problems += _unknown(spec, _SPEC_KEYS, "spec")
        configs = _parse_configurations(
            spec.get("eventConfigurations"), namespace, known_types, problems
        )
        selector = _parse_selector(spec.get("selector"), problems)
    if problems:
        raise HookInvalid(namespace, name, problems)
    warnings = []
    if selector.namespaces and namespace != control_namespace:
        warnings.append(
            f"spec.selector.namespaces is honoured only for Hooks in the control namespace "
            f"{control_namespace!r}; this Hook sees only its own namespace {namespace!r}"
        )
    generation = meta.get("generation")
    return Hook(
        namespace=namespace,
        name=name,
        configurations=tuple(configs),
        selector=selector,
        uid=str(meta.get("uid") or ""),
        generation=generation if isinstance(generation, int) else 0,
        resource_version=str(meta.get("resourceVersion") or ""),
        origin=origin,
        warnings=tuple(warnings),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _unknown(obj: Mapping[str, Any], allowed: set[str], where: str) -> list[str]:
    extra = sorted(set(obj) - allowed)
    return [f"{where}: unknown field(s) {extra}; allowed: {sorted(allowed)}"] if extra else []


def _parse_configurations(
    raw: Any, namespace: str, known_types: frozenset[str], problems: list[str]
) -> list[EventConfiguration]:
    if not isinstance(raw, list) or not raw:
        problems.append("spec.eventConfigurations must be a non-empty list")
        return []
    configs = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f"spec.eventConfigurations[{index}]"
        before = len(problems)
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += _unknown(item, _CONFIG_KEYS, where)
        event_type = item.get("eventType")
        if not isinstance(event_type, str) or not event_type:
            problems.append(f"{where}.eventType is required")
        elif event_type not in known_types:
            problems.append(
                f"{where}.eventType {event_type!r} is not a known event type; known: "
                f"{', '.join(sorted(known_types))} (add more with a rules file)"
            )
        elif event_type in seen:
            problems.append(
                f"{where}.eventType {event_type!r} is already configured at "
                f"spec.eventConfigurations[{seen[event_type]}]"
            )
        else:
            seen[event_type] = index
        agent = _parse_agent(item, namespace, where, problems)
        prompt = None
        try:
            prompt = compile_prompt(item.get("prompt"))  # type: ignore[arg-type]
        except PromptError as exc:
            problems.append(f"{where}.prompt: {exc}")
        cooldown = _parse_cooldown(item.get("cooldown"), where, problems)
        group_by = GroupBy.OWNER
        if item.get("groupBy") is not None:
            try:
                group_by = GroupBy(str(item.get("groupBy")))
            except ValueError:
                problems.append(
                    f"{where}.groupBy must be one of {[g.value for g in GroupBy]}, "
                    f"not {item.get('groupBy')!r}"
                )
        if len(problems) == before and agent and prompt and isinstance(event_type, str):
            configs.append(EventConfiguration(event_type, agent, prompt, cooldown, group_by))
    return configs


def _parse_agent(
    item: Mapping[str, Any], namespace: str, where: str, problems: list[str]
) -> AgentRef | None:
    ref, legacy = item.get("agentRef"), item.get("agentId")
    if ref is not None and legacy is not None:
        problems.append(f"{where}: set agentRef or the legacy agentId, not both")
        return None
    if ref is not None:
        if not isinstance(ref, Mapping):
            problems.append(f"{where}.agentRef must be a mapping with a name")
            return None
        problems += _unknown(ref, {"name", "namespace"}, f"{where}.agentRef")
        name, agent_ns = ref.get("name"), ref.get("namespace")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.agentRef.name is required")
            return None
        if agent_ns is not None and (not isinstance(agent_ns, str) or not agent_ns):
            problems.append(f"{where}.agentRef.namespace must be a non-empty string")
            return None
        return AgentRef(agent_ns or namespace, name)
    if legacy is not None:
        if not isinstance(legacy, str) or not legacy.strip():
            problems.append(f"{where}.agentId must be a string 'namespace/name' or 'name'")
            return None
        agent_ns, _, name = legacy.strip().rpartition("/")
        if not name or "/" in agent_ns:
            problems.append(f"{where}.agentId {legacy!r} must be 'namespace/name' or 'name'")
            return None
        return AgentRef(agent_ns or namespace, name)
    problems.append(f"{where}.agentRef is required (agentRef: {{name: my-agent}})")
    return None


def _parse_cooldown(raw: Any, where: str, problems: list[str]) -> timedelta:
    if raw is None:
        return DEFAULT_COOLDOWN
    try:
        value = parse_duration(str(raw))
    except DurationError as exc:
        problems.append(f"{where}.cooldown: {exc}")
        return DEFAULT_COOLDOWN
    if not MIN_COOLDOWN <= value <= MAX_COOLDOWN:
        problems.append(f"{where}.cooldown {raw!r} must be between 10s and 7d")
    return value


def _parse_selector(raw: Any, problems: list[str]) -> Selector:
    if raw is None:
        return Selector()
    if not isinstance(raw, Mapping):
        problems.append("spec.selector must be a mapping")
        return Selector()
    problems += _unknown(raw, _SELECTOR_KEYS, "spec.selector")
    exclude = raw.get("exclude") or {}
    if not isinstance(exclude, Mapping):
        problems.append("spec.selector.exclude must be a mapping")
        exclude = {}
    problems += _unknown(exclude, _EXCLUDE_KEYS, "spec.selector.exclude")
    return Selector(
        namespaces=_names(raw.get("namespaces"), "spec.selector.namespaces", problems),
        exclude_namespaces=_names(
            exclude.get("namespaces"), "spec.selector.exclude.namespaces", problems
        ),
        exclude_reasons=_names(exclude.get("reasons"), "spec.selector.exclude.reasons", problems),
    )


def _names(raw: Any, where: str, problems: list[str]) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        problems.append(f"{where} must be a list of non-empty strings")
        return frozenset()
    return frozenset(raw)
