from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from khook.clock import Clock
from khook.cluster._events import HookEventWriter
from khook.cluster._hooks import GROUP, PLURAL, VERSION, HookDoc
from khook.core.status import active_events, readiness, ready_condition, status_patch
from khook.kubeapi import MERGE_PATCH, TIMEOUT, KubeError, NotFound, api_errors, custom_objects
from khook.logs import log
from khook.stores import RecordStore, StoreError
from khook.ticker import Ticker

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger("khook.status")

_CONDITION_FIELDS = ("status", "reason", "message", "observedGeneration")


class HookStatusWriter:
    """Hook status on the status subresource, by merge patch, debounced per Hook and written
    off the request path. ``activeEvents`` comes from the shared dedup store, so every replica
    writes the same picture; the Ready condition from the Hook's validity and the agents'
    circuits. (An incident whose window passed is marked resolved, and announced, by the
    pipeline's sweep, on the replica whose store write made it so.)"""

    def __init__(
        self,
        api: ApiClient,
        store: RecordStore,
        clock: Clock,
        *,
        events: HookEventWriter | None = None,
        unavailable_agents: Callable[[], Iterable[str]] = lambda: (),
        interval: float = 2.0,
        recheck_every: float = 30.0,
    ) -> None:
        self._objects = custom_objects(api)
        self._store = store
        self._clock = clock
        self._events = events
        self._unavailable = unavailable_agents
        self._recheck_every = recheck_every
        self._docs: dict[str, HookDoc] = {}
        self._dirty: set[str] = set()
        self._written: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._ticker = Ticker("khook-status", interval, self._tick)
        self._last_recheck = clock.monotonic()
        self._store_problems: tuple[str, ...] = ()
        # Hooks whose prompt failed to render for a real event: (generation, problem) until a
        # firing renders, or the Hook changes.
        self._prompt_failures: dict[str, tuple[int, str]] = {}

    def hooks_changed(self, docs: list[HookDoc]) -> None:
        """From the Hook watch: a Hook was added, changed or deleted."""
        with self._lock:
            for doc in docs:
                if doc.deleted:
                    self._docs.pop(doc.key, None)
                    self._dirty.discard(doc.key)
                    self._written.pop(doc.key, None)
                    continue
                self._docs[doc.key] = doc
                if self._condition_stale(doc):
                    self._dirty.add(doc.key)
        self._ticker.ensure_started()

    def touched(self, hook: str) -> None:
        """Something happened to one of this Hook's incidents."""
        with self._lock:
            self._dirty.add(hook)
        self._ticker.ensure_started()

    def prompt_failed(self, hook: str, generation: int, problem: str) -> None:
        """A firing of this Hook failed to render its prompt: Ready=False/PromptRenderFailed
        until one renders or the Hook is changed."""
        with self._lock:
            self._prompt_failures[hook] = (generation, problem)
            self._dirty.add(hook)
        self._ticker.ensure_started()

    def prompt_rendered(self, hook: str) -> None:
        with self._lock:
            if self._prompt_failures.pop(hook, None) is not None:
                self._dirty.add(hook)

    def agents_changed(self) -> None:
        """An agent's circuit opened or closed: the Ready conditions may change."""
        with self._lock:
            self._dirty.update(self._docs)
        self._ticker.ensure_started()

    def flush(self) -> int:
        """Write every Hook whose status is out of date; returns how many patches were sent."""
        self.store_checked()
        with self._lock:
            keys, self._dirty = sorted(self._dirty), set()
        sent = 0
        for key in keys:
            with self._lock:
                doc = self._docs.get(key)
            if doc is None:
                continue  # not (yet) seen by the watch; it will be marked again
            try:
                sent += self._write(doc)
            except (KubeError, StoreError) as exc:
                log(
                    logger, logging.WARNING, "could not write Hook status", hook=key, error=str(exc)
                )
                with self._lock:
                    self._dirty.add(key)
        return sent

    def _desired_condition(self, doc: HookDoc) -> dict[str, Any]:
        agents = {c.agent.id for c in doc.hook.configurations} if doc.hook else set()
        down = sorted(agents & set(self._unavailable()))
        warnings = doc.hook.warnings if doc.hook else ()
        # Damage the dedup store found and repaired shows on every Hook: it may have cost a
        # re-fire of one of its incidents.
        warnings = (*warnings, *(f"dedup store: {p}" for p in self._store_problems))
        problems, reason = doc.problems, doc.reason
        failed = self._prompt_failures.get(doc.key)
        if not problems and failed is not None and failed[0] == doc.generation:
            problems, reason = (failed[1],), "PromptRenderFailed"
        return ready_condition(
            readiness(problems, warnings, down, reason),
            doc.generation,
            self._clock.now(),
            doc.status.get("conditions") or (),
        )

    def _condition_stale(self, doc: HookDoc) -> bool:
        current = _ready(doc.status)
        desired = self._desired_condition(doc)
        return (
            current is None
            or any(current.get(f) != desired[f] for f in _CONDITION_FIELDS)
            or doc.status.get("observedGeneration") != doc.generation
        )

    def _write(self, doc: HookDoc) -> int:
        now = self._clock.now()
        events = None
        if doc.hook is not None:
            events = active_events(self._store.records(doc.key), now)
        condition = self._desired_condition(doc)
        if events == self._written.get(doc.key) and not self._condition_stale(doc):
            return 0
        body = status_patch(events, condition, doc.generation, now)
        try:
            with api_errors():
                self._objects.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    doc.namespace,
                    PLURAL,
                    doc.name,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=TIMEOUT,
                )
        except NotFound:
            return 0  # deleted meanwhile
        with self._lock:  # what we wrote is current until the watch brings it back
            if doc.key in self._docs:
                self._docs[doc.key] = replace(doc, status={**doc.status, **body["status"]})
        if events is not None:
            self._written[doc.key] = events
        return 1

    def recheck(self) -> None:
        """Hooks with firing incidents get rewritten, so windows that passed show resolved."""
        with self._lock:
            for key, events in self._written.items():
                if any(e["status"] == "firing" for e in events):
                    self._dirty.add(key)

    def store_checked(self) -> None:
        """The store's health may have changed: every Hook's Ready message says so."""
        problems = self._store.health().problems
        if problems != self._store_problems:
            self._store_problems = problems
            self.agents_changed()

    def _tick(self) -> None:
        if self._clock.monotonic() - self._last_recheck >= self._recheck_every:
            self._last_recheck = self._clock.monotonic()
            self.recheck()
        self.flush()

    def close(self) -> None:
        self._ticker.close()
        self.flush()


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in status.get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond
    return None
