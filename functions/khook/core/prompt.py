"""Prompts: a Hook's template, checked when the Hook loads and rendered in a sandbox.

The Go khook's placeholders (``{{.ResourceName}}``) keep working; full Jinja works on top
(``{{ event.kind }}``, ``{{ object.metadata.labels.app }}``). Values from the cluster are only
ever *data* in the template's context, cleaned and capped; they are never parsed as templates.
After the rendered text comes a fenced block with the facts, so the agent always has them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from khook.core.objects import format_time
from khook.core.text import MESSAGE_LIMIT, NAME_LIMIT, clean, clean_object

PROMPT_LIMIT = 10_000  # as the CRD allows
RENDERED_LIMIT = 20_000

KHOOK_PLACEHOLDERS = (
    "EventType",
    "ResourceName",
    "Namespace",
    "Reason",
    "Message",
    "Timestamp",
    "EventTime",
    "EventMessage",
)
JINJA_NAMES = ("event", "object", "hook")
_GO_PLACEHOLDER = re.compile(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")
_FORBIDDEN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)

_ENV = ImmutableSandboxedEnvironment(
    undefined=ChainableUndefined,  # object.metadata.labels.app is "" when there are no labels
    autoescape=False,
    keep_trailing_newline=True,
)


class PromptError(ValueError):
    pass


@dataclass(frozen=True)
class PromptTemplate:
    source: str
    _compiled: Any  # jinja2.Template; Any keeps the public face free of jinja types

    def render(self, facts: PromptFacts, obj: Mapping[str, Any] | None) -> str:
        context = facts.context(obj)
        try:
            text = self._compiled.render(context)
        except TemplateError as exc:
            raise PromptError(f"prompt failed to render: {exc}") from exc
        except (ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise PromptError(f"prompt failed to render: {type(exc).__name__}: {exc}") from exc
        if len(text) > RENDERED_LIMIT:
            text = text[: RENDERED_LIMIT - 1] + "…"
        return f"{text.rstrip()}\n\n{facts.context_block()}"


def compile_prompt(source: str) -> PromptTemplate:
    """Check a prompt and compile it; every problem is a PromptError with a clear message."""
    if not isinstance(source, str) or not source.strip():
        raise PromptError("prompt is empty")
    if len(source) > PROMPT_LIMIT:
        raise PromptError(f"prompt is {len(source)} characters; the limit is {PROMPT_LIMIT}")
    unknown_go = sorted(
        {m.group(1) for m in _GO_PLACEHOLDER.finditer(source)} - set(KHOOK_PLACEHOLDERS)
    )
    if unknown_go:
        raise PromptError(
            f"unknown placeholder(s) {', '.join('{{.' + n + '}}' for n in unknown_go)}; "
            f"available: {', '.join('{{.' + n + '}}' for n in KHOOK_PLACEHOLDERS)}"
        )
    translated = _GO_PLACEHOLDER.sub(lambda m: "{{ " + m.group(1) + " }}", source)
    try:
        tree = _ENV.parse(translated)
    except TemplateSyntaxError as exc:
        hint = ""
        if re.search(r"\{\{-?\s*\.", translated):
            hint = (
                " (of Go template syntax only plain {{.Name}} placeholders work; write "
                "expressions in Jinja, e.g. {{ Namespace or 'cluster-scoped' }})"
            )
        raise PromptError(
            f"prompt template error on line {exc.lineno}: {exc.message}{hint}"
        ) from None
    if any(True for _ in tree.find_all(_FORBIDDEN_NODES)):
        raise PromptError("prompts cannot include, import or extend other templates")
    unknown = sorted(meta.find_undeclared_variables(tree) - set(KHOOK_PLACEHOLDERS + JINJA_NAMES))
    if unknown:
        raise PromptError(
            f"unknown placeholder(s) {', '.join(unknown)}; available: "
            f"{', '.join(KHOOK_PLACEHOLDERS + JINJA_NAMES)}"
        )
    return PromptTemplate(source=source, _compiled=_ENV.from_string(tree))


@dataclass(frozen=True)
class PromptFacts:
    """What khook knows about one firing; every string is cleaned before use."""

    event_type: str
    namespace: str
    kind: str
    name: str
    reason: str
    message: str
    timestamp: datetime
    count: int
    first_seen: datetime
    last_seen: datetime
    hook: str
    owner: str = ""
    container: str = ""
    api_version: str = ""
    action: str = ""

    def event(self) -> dict[str, Any]:
        return {
            "type": self.event_type,
            "namespace": clean(self.namespace, NAME_LIMIT),
            "kind": clean(self.kind, NAME_LIMIT),
            "name": clean(self.name, NAME_LIMIT),
            "resource": clean(f"{self.kind}/{self.name}", NAME_LIMIT),
            "owner": clean(self.owner, NAME_LIMIT),
            "container": clean(self.container, NAME_LIMIT),
            "apiVersion": clean(self.api_version, NAME_LIMIT),
            "reason": clean(self.reason, NAME_LIMIT),
            "message": clean(self.message, MESSAGE_LIMIT),
            "count": self.count,
            "firstSeen": format_time(self.first_seen),
            "lastSeen": format_time(self.last_seen),
            "timestamp": format_time(self.timestamp),
            "action": self.action,
        }

    def context(self, obj: Mapping[str, Any] | None) -> dict[str, Any]:
        event = self.event()
        namespace, hook_name = self.hook.partition("/")[::2]
        return {
            "EventType": event["type"],
            "ResourceName": event["name"],
            "Namespace": event["namespace"],
            "Reason": event["reason"],
            "Message": event["message"],
            "EventMessage": event["message"],
            "Timestamp": event["timestamp"],
            "EventTime": event["timestamp"],
            "event": event,
            "object": clean_object(obj) if obj is not None else {},
            "hook": {"namespace": namespace, "name": hook_name},
        }

    def context_block(self) -> str:
        event = self.event()
        rows = [
            ("eventType", event["type"]),
            ("namespace", event["namespace"] or "(cluster-scoped)"),
            ("resource", event["resource"]),
            ("owner", event["owner"] or "(none)"),
            ("container", event["container"]),
            ("reason", event["reason"]),
            ("message", event["message"]),
            ("count", event["count"]),
            ("firstSeen", event["firstSeen"]),
            ("lastSeen", event["lastSeen"]),
            ("hook", clean(self.hook, NAME_LIMIT)),
        ]
        # JSON scalars are valid YAML; backticks could close the fence, so they go.
        lines = [
            f"{key}: {json.dumps(value, ensure_ascii=False).replace('`', chr(39))}"
            for key, value in rows
            if value != ""
        ]
        return "```yaml\n# khook event context\n" + "\n".join(lines) + "\n```"
