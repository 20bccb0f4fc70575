"""Hooks: a typed model of ``kagent.dev/v1alpha2`` Hook, compatible with the Go khook's CRD.

Parsing validates everything a user can get wrong and reports every problem at once, with the
path of the offending field, so ``khook validate`` and a Hook's ``Ready`` condition can say
exactly what to fix. It runs in two steps: :func:`read_hook` checks the document's shape (cheap,
no template is compiled) into a :class:`HookDraft`, and :meth:`HookDraft.compile` compiles its
prompts. Admission (:mod:`khook.admission`) puts the agent policy and the Hook quota between the
two, so a Hook that is not in force never costs a compilation. :func:`parse_hook` does both.

Every value in a Hook may come from a careless or hostile tenant: nothing here recurses into a
value, and a value shown in a problem is cut short.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from khook.core.hook_fields import (
    IncidentOptions,
    Selector,
    read_agent,
    read_choice,
    read_cooldown,
    read_incident_options,
    read_selector,
    show,
    unknown_fields,
)
from khook.core.prompt import PROMPT_LIMIT, PromptError, PromptTemplate, compile_prompt
from khook.core.tenancy import DNS_LABEL_RULE, is_dns_label

API_VERSION = "kagent.dev/v1alpha2"
KIND = "Hook"
DEFAULT_COOLDOWN = timedelta(minutes=10)
ALL_NAMESPACES = "*"
MAX_CONFIGURATIONS = 64  # as the CRD allows
MAX_NAME_LENGTH = 253

# The Go khook's keys, then khook's extensions.
_CONFIG_KEYS = {"eventType", "agentRef", "agentId", "prompt"} | {
    "cooldown",
    "groupBy",
    "minCount",
    "for",
    "followUps",
}
_SPEC_KEYS = {"eventConfigurations", "selector"}
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")

Compiler = Callable[[str], PromptTemplate]


class GroupBy(StrEnum):
    OWNER = "owner"
    RESOURCE = "resource"


class Reason(StrEnum):
    """Why a Hook is not in force: the reason of its ``Ready=False`` condition."""

    INVALID_CONFIGURATION = "InvalidConfiguration"
    AGENT_NOT_ALLOWED = "AgentNotAllowed"
    TOO_MANY_HOOKS = "TooManyHooks"
    PROMPT_RENDER_FAILED = "PromptRenderFailed"


class HookInvalid(ValueError):
    """A Hook that cannot be used; ``problems`` says why, one line per problem, and ``reason``
    is the condition reason (a :class:`Reason` value)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        problems: Sequence[str],
        reason: str = Reason.INVALID_CONFIGURATION,
        origin: str = "",
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.problems = list(problems)
        self.reason = str(reason)
        self.origin = origin
        super().__init__(f"Hook {namespace}/{name}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class AgentRef:
    """An agent, both parts DNS-1123 labels (checked when the Hook is read): the agent's URL is
    built from them."""

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
    incident: IncidentOptions = field(default_factory=IncidentOptions)


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

    def configuration(self, event_type: str) -> EventConfiguration | None:
        return next((c for c in self.configurations if c.event_type == event_type), None)


@dataclass(frozen=True)
class ConfigDraft:
    """One event configuration whose shape is valid; its prompt is not compiled yet."""

    index: int
    event_type: str
    agent: AgentRef
    agent_field: str  # the field that named the agent's namespace; "" when it is the Hook's
    prompt: str
    cooldown: timedelta = DEFAULT_COOLDOWN
    group_by: GroupBy = GroupBy.OWNER
    incident: IncidentOptions = field(default_factory=IncidentOptions)

    @property
    def path(self) -> str:
        return f"spec.eventConfigurations[{self.index}]"


@dataclass(frozen=True)
class HookDraft:
    """A Hook whose shape is valid, before its prompts are compiled."""

    namespace: str
    name: str
    configurations: tuple[ConfigDraft, ...]
    selector: Selector = field(default_factory=Selector)
    uid: str = ""
    generation: int = 0
    resource_version: str = ""
    created: str = ""  # metadata.creationTimestamp, for the Hook quota's order
    origin: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def invalid(self, problems: Sequence[str], reason: str) -> HookInvalid:
        return HookInvalid(self.namespace, self.name, problems, reason, self.origin)

    def compile(self, compiler: Compiler = compile_prompt) -> Hook:
        """The Hook, its prompts compiled; a HookInvalid names every prompt that fails."""
        problems: list[str] = []
        configs = []
        for c in self.configurations:
            prompt = compile_checked(c.prompt, compiler, f"{c.path}.prompt", problems)
            if prompt is not None:
                configs.append(
                    EventConfiguration(
                        c.event_type, c.agent, prompt, c.cooldown, c.group_by, c.incident
                    )
                )
        if problems:
            raise self.invalid(problems, Reason.INVALID_CONFIGURATION)
        return Hook(
            namespace=self.namespace,
            name=self.name,
            configurations=tuple(configs),
            selector=self.selector,
            uid=self.uid,
            generation=self.generation,
            resource_version=self.resource_version,
            origin=self.origin,
            warnings=self.warnings,
        )


def compile_checked(
    source: str, compiler: Compiler, where: str, problems: list[str]
) -> PromptTemplate | None:
    try:
        return compiler(source)
    except PromptError as exc:
        problems.append(f"{where}: {exc}"[:2000])
    except Exception as exc:  # a hostile template must cost its Hook, never the caller
        problems.append(f"{where}: prompt cannot be compiled: {type(exc).__name__}: {exc}"[:2000])
    return None


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
    compiler: Compiler = compile_prompt,
) -> Hook:
    """Read and compile a Hook; a HookInvalid lists every problem."""
    draft = read_hook(
        doc,
        known_types=known_types,
        control_namespace=control_namespace,
        default_namespace=default_namespace,
        origin=origin,
        compiler=compiler,
    )
    return draft.compile(compiler)


def read_hook(
    doc: Any,
    *,
    known_types: frozenset[str],
    control_namespace: str,
    default_namespace: str = "default",
    origin: str = "",
    compiler: Compiler | None = compile_prompt,
) -> HookDraft:
    """Check a Hook's shape. When it is invalid and a ``compiler`` is given, the prompts are
    compiled too, so that every problem is reported at once."""
    namespace, name = hook_identity(doc, default_namespace)
    if not isinstance(doc, Mapping):
        raise HookInvalid(namespace, name, ["a Hook is a mapping"], origin=origin)
    problems: list[str] = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion must be {API_VERSION}, not {show(doc.get('apiVersion'))}")
    if doc.get("kind") != KIND:
        problems.append(f"kind must be {KIND}, not {show(doc.get('kind'))}")
    meta = _mapping(doc.get("metadata"))
    _check_identity(meta, problems)
    spec = doc.get("spec")
    configs: list[ConfigDraft] = []
    prompts: list[tuple[str, str]] = []  # (path, source) of prompts whose shape is valid
    selector = Selector()
    if not isinstance(spec, Mapping):
        problems.append("spec is required")
    else:
        problems += unknown_fields(spec, _SPEC_KEYS, "spec")
        configs = _read_configurations(
            spec.get("eventConfigurations"), namespace, known_types, problems, prompts
        )
        selector = read_selector(spec.get("selector"), problems)
    if problems:
        if compiler is not None:
            for where, source in prompts:
                compile_checked(source, compiler, where, problems)
        raise HookInvalid(namespace, name, problems, origin=origin)
    warnings = []
    if selector.namespaces and namespace != control_namespace:
        warnings.append(
            f"spec.selector.namespaces is honoured only for Hooks in the control namespace "
            f"{control_namespace!r}; this Hook sees only its own namespace {namespace!r}"
        )
    generation = meta.get("generation")
    created = meta.get("creationTimestamp")
    return HookDraft(
        namespace=namespace,
        name=name,
        configurations=tuple(configs),
        selector=selector,
        uid=_text(meta.get("uid")),
        generation=generation if isinstance(generation, int) else 0,
        resource_version=_text(meta.get("resourceVersion")),
        created=created if isinstance(created, str) else "",
        origin=origin,
        warnings=tuple(warnings),
    )


def _check_identity(meta: Mapping[str, Any], problems: list[str]) -> None:
    name, namespace = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str) or not name:
        problems.append("metadata.name is required")
    elif len(name) > MAX_NAME_LENGTH or not _DNS_SUBDOMAIN.fullmatch(name):
        problems.append(
            f"metadata.name {show(name)} must be a DNS-1123 subdomain (lowercase letters, "
            "digits, '-' and '.', at most 253 characters)"
        )
    if namespace is not None and not is_dns_label(namespace):
        problems.append(f"metadata.namespace {show(namespace)} must be {DNS_LABEL_RULE}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _read_configurations(
    raw: Any,
    namespace: str,
    known_types: frozenset[str],
    problems: list[str],
    prompts: list[tuple[str, str]],
) -> list[ConfigDraft]:
    if not isinstance(raw, list) or not raw:
        problems.append("spec.eventConfigurations must be a non-empty list")
        return []
    if len(raw) > MAX_CONFIGURATIONS:
        problems.append(
            f"spec.eventConfigurations has {len(raw)} entries; the limit is {MAX_CONFIGURATIONS}"
        )
        return []
    configs = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        where = f"spec.eventConfigurations[{index}]"
        before = len(problems)
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a mapping")
            continue
        problems += unknown_fields(item, _CONFIG_KEYS, where)
        event_type = item.get("eventType")
        if not isinstance(event_type, str) or not event_type:
            problems.append(f"{where}.eventType is required")
        elif event_type not in known_types:
            problems.append(
                f"{where}.eventType {show(event_type)} is not a known event type; known: "
                f"{', '.join(sorted(known_types))} (add more with a rules file)"
            )
        elif event_type in seen:
            problems.append(
                f"{where}.eventType {event_type!r} is already configured at "
                f"spec.eventConfigurations[{seen[event_type]}]"
            )
        else:
            seen[event_type] = index
        agent = read_agent(item, namespace, where, problems)
        prompt = _read_prompt(item.get("prompt"), f"{where}.prompt", problems, prompts)
        cooldown = read_cooldown(
            item.get("cooldown"), DEFAULT_COOLDOWN, f"{where}.cooldown", problems
        )
        group_by = read_choice(item.get("groupBy"), GroupBy, f"{where}.groupBy", problems)
        incident = read_incident_options(item, where, problems)
        if len(problems) == before and agent and prompt and isinstance(event_type, str):
            agent_ns, agent_name, agent_field = agent
            configs.append(
                ConfigDraft(
                    index,
                    event_type,
                    AgentRef(agent_ns, agent_name),
                    agent_field,
                    prompt,
                    cooldown,
                    GroupBy(group_by or GroupBy.OWNER),
                    incident,
                )
            )
    return configs


def _read_prompt(
    raw: Any, where: str, problems: list[str], prompts: list[tuple[str, str]]
) -> str | None:
    if raw is not None and not isinstance(raw, str):
        problems.append(f"{where} must be a string, not {show(raw)}")
        return None
    if raw is None or not raw.strip():
        problems.append(f"{where}: prompt is empty")
        return None
    if len(raw) > PROMPT_LIMIT:
        problems.append(f"{where}: prompt is {len(raw)} characters; the limit is {PROMPT_LIMIT}")
        return None
    prompts.append((where, raw))
    return raw
