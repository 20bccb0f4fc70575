"""Renderers: how khook turns a Hook's prompt and one firing's facts into text.

``ProcessRenderer`` is what khook runs: a render happens in a separate process with a
deadline and a memory cap, so no template can hold a khook thread or exhaust its memory; only
a straight-line template (text, placeholders, lookups, a few linear filters) renders in this
process, under limits a fraction of the full ones, and goes to a process if it passes them.
``InlineRenderer`` renders in this process with only the cooperative limits (tools, tests).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from khook.core.prompt import PromptError, PromptFacts, PromptTemplate
from khook.core.sandbox_samples import sample_facts, sample_object
from khook.sandbox._pool import SandboxError, shared_pool
from khook.sandbox._wire import facts_to_wire

MIB = 1024 * 1024
CHECK_CACHE = 1024  # trial-render results kept per renderer


class Renderer(Protocol):
    def render(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str:
        """The prompt for one firing. PromptError (with its ``kind``) is the template's
        fault; SandboxError is khook's (no render process could run it: retry later)."""

    def render_now(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str | None:
        """:meth:`render` on a thread that must not wait (the event loop): the prompt when a
        straight-line template renders in this process within its limits; None when it would
        go to a render process."""

    def check(self, event_type: str, template: PromptTemplate) -> str | None:
        """A trial render against the sample facts and object of ``event_type``: the
        problem, or None. Cached by event type and template source."""

    def close(self) -> None: ...


class _Checks:
    """The trial render and its bounded cache, shared by both renderers."""

    def __init__(self) -> None:
        self._checks: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._checks_lock = threading.Lock()

    def render(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str:
        raise NotImplementedError

    def check(self, event_type: str, template: PromptTemplate) -> str | None:
        key = (event_type, template.source)
        with self._checks_lock:
            if key in self._checks:
                self._checks.move_to_end(key)
                return self._checks[key]
        try:
            self.render(template, sample_facts(event_type), sample_object(event_type))
            problem = None
        except PromptError as exc:
            problem = str(exc)
        with self._checks_lock:
            self._checks[key] = problem
            while len(self._checks) > CHECK_CACHE:
                self._checks.popitem(last=False)
        return problem

    def close(self) -> None:
        with self._checks_lock:
            self._checks.clear()


class ProcessRenderer(_Checks):
    """Renders in the process's shared pool of render processes (started on first use, or
    ahead of it: :meth:`prestart`).

    ``timeout``: seconds a render may take, waiting for a free process included;
    ``memory_bytes``: each process's address-space cap; ``workers``: processes at most;
    ``inline``: render a straight-line template in this process first
    (``PromptTemplate.render_inline``), as khook does; False sends every render to a process.
    """

    def __init__(
        self,
        timeout: float = 2.0,
        memory_bytes: int = 256 * MIB,
        workers: int = 2,
        *,
        inline: bool = True,
    ) -> None:
        super().__init__()
        if timeout <= 0 or memory_bytes <= 0 or workers < 1:
            raise ValueError("timeout, memory_bytes and workers must be positive")
        self.timeout = timeout
        self._inline = inline
        self._pool = shared_pool(memory_bytes, workers)
        self._closed = False

    def render(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str:
        if self._closed:
            raise SandboxError("this renderer is closed")
        if self._inline:
            text = template.render_inline(facts, obj)
            if text is not None:
                return text
        request = {
            "source": template.source,
            "facts": facts_to_wire(facts),
            "object": template.object_to_send(obj),
        }
        answer = self._pool.run(request, self.timeout)
        if answer.get("ok") and isinstance(answer.get("text"), str):
            return str(answer["text"])
        error = str(answer.get("error", "prompt failed to render"))
        raise PromptError(error, str(answer.get("kind", "")))

    def render_now(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str | None:
        if self._closed or not self._inline:
            return None
        return template.render_inline(facts, obj)

    def prestart(self) -> None:
        """Start the render processes now, in the background (see Pool.prestart)."""
        if not self._closed:
            self._pool.prestart()

    def worker_pids(self) -> list[int]:
        """The render processes alive now (diagnostics)."""
        return self._pool.pids()

    def close(self) -> None:
        """Forget cached checks. The processes are shared and stay until exit."""
        self._closed = True
        super().close()


class InlineRenderer(_Checks):
    """Renders in this process: the cooperative limits, but no deadline and no memory cap.
    For tools and tests; khook itself uses ProcessRenderer."""

    def render(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str:
        return template.render(facts, obj)

    def render_now(
        self, template: PromptTemplate, facts: PromptFacts, obj: Mapping[str, Any] | None
    ) -> str | None:
        # Only what khook itself would render in process: no tenant's loop on the event loop.
        return template.render_inline(facts, obj)
