"""Prompts: a Hook's template, checked when the Hook loads and rendered under a budget.

The Go khook's placeholders (``{{.ResourceName}}``) keep working; full Jinja works on top
(``{{ event.kind }}``, ``{{ object.metadata.labels.app }}``). A template is a tenant's code:
compiling it runs none of it (and takes time linear in its length), and rendering counts
every step and every character against the limits in ``_jinja_limits.Limits``. Values from
the cluster are only ever *data* in the template's context, fenced and capped (``text.fence``);
they are never parsed as templates. After the rendered text comes a fenced block with the
facts as JSON strings, always the last thing in the prompt.

``PromptTemplate.render`` is the pure, in-process render; khook runs it in a worker process
with a deadline and a memory cap (``khook.sandbox``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError

from khook.core._jinja_env import ENV, guard_tree, nesting, render_bounded
from khook.core._jinja_limits import LIMITS, Limits, RenderLimit
from khook.core._jinja_straight import INLINE_LIMITS, INLINE_OBJECT_VALUES, is_straight_line
from khook.core._object_paths import Paths, TooBig, object_paths, prune
from khook.core._prompt_facts import INCIDENT_LIST_LIMIT, PromptFacts
from khook.core.text import has_at_most

__all__ = [
    "INCIDENT_LIST_LIMIT",
    "PLACEHOLDERS",
    "PROMPT_LIMIT",
    "PromptError",
    "PromptFacts",
    "PromptTemplate",
    "compile_prompt",
]

PROMPT_LIMIT = 10_000  # as the CRD allows
RENDERED_LIMIT = LIMITS.output
NESTING_LIMIT = 40  # tags, expressions and brackets inside one another

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
# khook's own placeholders, beside the Go khook's: the incident the event belongs to.
INCIDENT_PLACEHOLDERS = ("Cause", "Affected", "AffectedCount")
PLACEHOLDERS = KHOOK_PLACEHOLDERS + INCIDENT_PLACEHOLDERS
JINJA_NAMES = ("event", "object", "hook", "incident")
_GO_PLACEHOLDER = re.compile(r"\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}")
_FORBIDDEN_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
KINDS = ("template", "limit", "memory", "deadline")


class PromptError(ValueError):
    """A prompt that cannot be compiled or rendered. ``kind`` says why: ``template`` (the
    template is wrong), ``limit`` (it went over a limit), ``memory`` or ``deadline`` (its
    render process ran out of memory or time)."""

    def __init__(self, message: str, kind: str = "template") -> None:
        super().__init__(message)
        self.kind = kind if kind in KINDS else "template"


@dataclass(frozen=True)
class PromptTemplate:
    source: str
    _compiled: Any  # jinja2.Template; Any keeps the public face free of jinja types
    # Only text, placeholders, lookups and a few linear filters: safe to render in khook's own
    # process under INLINE_LIMITS (see _jinja_straight).
    straight: bool = False
    # Whether it names ``object``: one that does not is rendered without it (it cannot tell),
    # so the object is neither cleaned nor sent to a render process.
    reads_object: bool = True
    # The parts of ``object`` it looks up, when it is straight-line and never reads the object
    # whole: only they are cleaned (see _object_paths); None: all of it.
    object_paths: Paths | None = field(default=None, compare=False)  # made from the source
    # The names it reads, when it is straight-line: only they are worked out for a render.
    # None: all of them.
    names: frozenset[str] | None = field(default=None, compare=False)  # made from the source

    def object_part(
        self, obj: Mapping[str, Any] | None, *, bounded: bool = False
    ) -> Mapping[str, Any] | None:
        """What of ``obj`` the prompt can see: None if it never names ``object``, only the
        parts it looks up if it is straight-line, else all of it. ``bounded``: TooBig when
        cutting it would look at more than INLINE_OBJECT_VALUES entries (khook's process
        leaves that to a render process)."""
        if obj is None or not self.reads_object:
            return None
        if self.object_paths is None:
            return obj
        part: Mapping[str, Any] = prune(
            obj, self.object_paths, INLINE_OBJECT_VALUES if bounded else None
        )
        return part

    def object_to_send(self, obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """What of ``obj`` goes to a render process: the part the prompt sees, or all of it
        when cutting would cost khook's process more than INLINE_OBJECT_VALUES entries (the
        render process cuts it then)."""
        try:
            return self.object_part(obj, bounded=True)
        except TooBig:
            return obj

    def render(
        self, facts: PromptFacts, obj: Mapping[str, Any] | None, limits: Limits = LIMITS
    ) -> str:
        """The prompt for one firing, in this process (cooperative limits, no deadline)."""
        return self._render(facts, self.object_part(obj), limits)

    def _render(self, facts: PromptFacts, part: Mapping[str, Any] | None, limits: Limits) -> str:
        context = facts.context(part, self.names)
        try:
            text = render_bounded(self._compiled, context, limits)
        except RenderLimit as exc:
            raise PromptError(f"prompt exceeded a limit: {exc}", kind="limit") from None
        except RecursionError:
            raise PromptError(
                "prompt exceeded a limit: it nests too deeply", kind="limit"
            ) from None
        except MemoryError:
            raise PromptError("prompt ran out of memory", kind="memory") from None
        except (TemplateError, SecurityError) as exc:
            raise PromptError(f"prompt failed to render: {exc}") from None
        except Exception as exc:  # whatever a tenant's template raises is the template's fault
            raise PromptError(f"prompt failed to render: {type(exc).__name__}: {exc}") from None
        return f"{text.rstrip()}\n\n{facts.context_block()}"

    def render_inline(self, facts: PromptFacts, obj: Mapping[str, Any] | None) -> str | None:
        """The prompt, rendered in this process when the template is straight-line and stays
        within INLINE_LIMITS; None when it needs a render process (any other template, or one
        that went over those limits). A template error is raised as a render process would."""
        if not self.straight:
            return None
        try:
            part = self.object_part(obj, bounded=True)
        except TooBig:
            return None  # even cutting it is work enough for a render process
        if part is not None and not has_at_most(part, INLINE_OBJECT_VALUES):
            return None  # cleaning a big object is work enough for a render process
        try:
            return self._render(facts, part, INLINE_LIMITS)
        except PromptError as exc:
            if exc.kind == "template":
                raise
            return None


def compile_prompt(source: str) -> PromptTemplate:
    """Check a prompt and compile it; every problem is a PromptError with a clear message.

    Compiling runs nothing the template computes and takes time linear in its length."""
    if not isinstance(source, str) or not source.strip():
        raise PromptError("prompt is empty")
    if len(source) > PROMPT_LIMIT:
        raise PromptError(f"prompt is {len(source)} characters; the limit is {PROMPT_LIMIT}")
    unknown_go = sorted({m.group(1) for m in _GO_PLACEHOLDER.finditer(source)} - set(PLACEHOLDERS))
    if unknown_go:
        raise PromptError(
            f"unknown placeholder(s) {', '.join('{{.' + n + '}}' for n in unknown_go)}; "
            f"available: {', '.join('{{.' + n + '}}' for n in PLACEHOLDERS)}"
        )
    translated = _GO_PLACEHOLDER.sub(lambda m: "{{ " + m.group(1) + " }}", source)
    tree = _parse(translated)
    if any(True for _ in tree.find_all(_FORBIDDEN_NODES)):
        raise PromptError("prompts cannot include, import or extend other templates")
    try:
        names = ENV.undeclared_names(tree)
        unknown = sorted(names - set(PLACEHOLDERS + JINJA_NAMES))
        if unknown:
            raise PromptError(
                f"unknown placeholder(s) {', '.join(unknown)}; available: "
                f"{', '.join(PLACEHOLDERS + JINJA_NAMES)}"
            )
        straight = is_straight_line(tree)
        paths = object_paths(tree) if straight else None  # before compiling may change the tree
        guard_tree(tree)
        compiled = ENV.from_string(tree)
    except TemplateSyntaxError as exc:
        raise PromptError(f"prompt template error on line {exc.lineno}: {exc.message}") from None
    except SyntaxError as exc:  # Python's own limits, e.g. 20 loops inside one another
        raise PromptError(f"prompt is too complex to compile: {exc.msg}") from None
    except (RecursionError, MemoryError):
        raise PromptError("prompt is too complex to compile") from None
    return PromptTemplate(
        source=source,
        _compiled=compiled,
        straight=straight,
        reads_object="object" in names,
        object_paths=paths,
        names=frozenset(names) if straight else None,
    )


def _parse(translated: str) -> nodes.Template:
    try:
        tree = ENV.parse(translated)
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
    except RecursionError:
        raise PromptError(
            f"prompt nests too deeply (the limit is {NESTING_LIMIT} levels)"
        ) from None
    except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a 5,000-digit number
        raise PromptError(f"prompt template error: {exc}") from None
    depth = nesting(tree)
    if depth > NESTING_LIMIT:
        raise PromptError(f"prompt nests too deeply: {depth} levels; the limit is {NESTING_LIMIT}")
    return tree
