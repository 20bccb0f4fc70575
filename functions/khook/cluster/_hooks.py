from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from kubernetes import client

from khook.clock import Clock
from khook.core.hooks import Hook, HookInvalid, hook_identity, parse_hook
from khook.core.objects import get_int, get_str
from khook.files import HookSet
from khook.listwatch import ListWatch
from khook.logs import log

logger = logging.getLogger("khook.hooks")

GROUP, VERSION, PLURAL = "kagent.dev", "v1alpha2", "hooks"


@dataclass(frozen=True)
class HookDoc:
    """One Hook object as the API server holds it, with what khook made of it."""

    namespace: str
    name: str
    uid: str
    generation: int
    hook: Hook | None
    problems: tuple[str, ...]
    status: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class ClusterHookSource:
    """Hooks from the API server, followed by list-then-watch (see :mod:`khook.listwatch`).
    Events are matched against this cache, never with an
    API call per event. ``on_change`` hears of every Hook that was added, changed or deleted
    (for its status)."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        known_types: frozenset[str],
        control_namespace: str,
        clock: Clock,
        namespaces: Iterable[str] = (),
        on_change: Callable[[list[HookDoc]], None] | None = None,
        cold_start_wait: float = 10.0,
        watch_timeout: int = 290,
        max_backoff: float = 30.0,
    ) -> None:
        self._objects = client.CustomObjectsApi(api)
        self._known_types = known_types
        self._control_namespace = control_namespace
        self._clock = clock
        self._scopes = tuple(namespaces) or ("",)
        self._on_change = on_change
        self._cold_start_wait = cold_start_wait
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        self._docs: dict[str, HookDoc] = {}  # by namespace/name
        self._lock = threading.Lock()
        self._listed: set[str] = set()
        self._ready = threading.Event()
        self._watchers: list[ListWatch] = []

    # ---- the HookSource face ------------------------------------------------------------

    def current(self, wait: bool = True) -> HookSet:
        if wait and not self._ready.is_set():
            self._ready.wait(self._cold_start_wait)
        with self._lock:
            docs = sorted(self._docs.values(), key=lambda d: d.key)
        return HookSet(
            hooks=tuple(d.hook for d in docs if d.hook is not None),
            invalid=tuple(
                HookInvalid(d.namespace, d.name, d.problems) for d in docs if d.hook is None
            ),
            synced=self._ready.is_set(),
        )

    def start(self) -> None:
        for scope in self._scopes:
            if scope:
                call = partial(
                    self._objects.list_namespaced_custom_object, GROUP, VERSION, scope, PLURAL
                )
            else:
                call = partial(self._objects.list_cluster_custom_object, GROUP, VERSION, PLURAL)
            watcher = ListWatch(
                f"khook-hooks-{scope or 'all'}",
                call,
                on_list=partial(self._listed_scope, scope),
                on_event=self._event,
                watch_timeout=self._watch_timeout,
                max_backoff=self._max_backoff,
            )
            watcher.start()
            self._watchers.append(watcher)

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()

    def _listed_scope(self, scope: str, items: list[Mapping[str, Any]]) -> None:
        keys = {"/".join(hook_identity(i, "default")) for i in items}
        with self._lock:
            gone = [
                doc
                for k, doc in self._docs.items()
                if (not scope or doc.namespace == scope) and k not in keys
            ]
            for doc in gone:
                del self._docs[doc.key]
        changed = [self._apply(i) for i in items]
        self._notify([d for d in changed if d is not None] + [_deleted(d) for d in gone])
        self._listed.add(scope)
        if self._listed >= set(self._scopes):
            self._ready.set()
        log(logger, logging.INFO, "hooks listed", scope=scope or "all namespaces", hooks=len(items))

    def _event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            doc = self._apply(obj)
            if doc is not None:
                self._notify([doc])
        elif kind == "DELETED":
            key = "/".join(hook_identity(obj, "default"))
            with self._lock:
                doc = self._docs.pop(key, None)
            if doc is not None:
                log(logger, logging.INFO, "hook deleted", hook=key)
                self._notify([_deleted(doc)])

    def _apply(self, obj: Mapping[str, Any]) -> HookDoc | None:
        namespace, name = hook_identity(obj, "default")
        generation = get_int(obj, "metadata", "generation") or 0
        raw_status = obj.get("status")
        status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
        with self._lock:
            before = self._docs.get(f"{namespace}/{name}")
        if before is not None and generation and before.generation == generation:
            # Only the status changed (often our own write): keep what was parsed.
            doc = replace(before, status=status)
        else:
            doc = self._parse(obj, namespace, name, generation, status)
        with self._lock:
            self._docs[doc.key] = doc
        return doc

    def _parse(
        self,
        obj: Mapping[str, Any],
        namespace: str,
        name: str,
        generation: int,
        status: Mapping[str, Any],
    ) -> HookDoc:
        uid = get_str(obj, "metadata", "uid")
        try:
            hook = parse_hook(
                obj,
                known_types=self._known_types,
                control_namespace=self._control_namespace,
                origin="cluster",
            )
        except HookInvalid as exc:
            log(
                logger,
                logging.ERROR,
                "hook invalid, not in force",
                hook=f"{namespace}/{name}",
                problems=exc.problems,
            )
            return HookDoc(namespace, name, uid, generation, None, tuple(exc.problems), status)
        log(
            logger,
            logging.INFO,
            "hook in force",
            hook=hook.key,
            eventTypes=hook.event_types,
            generation=generation,
        )
        return HookDoc(namespace, name, uid, generation, hook, (), status)

    def _notify(self, docs: list[HookDoc]) -> None:
        if self._on_change is not None and docs:
            try:
                self._on_change(docs)
            except Exception:  # the watch must outlive a bug in a listener
                logger.exception("hook change listener failed")


def _deleted(doc: HookDoc) -> HookDoc:
    return HookDoc(doc.namespace, doc.name, doc.uid, doc.generation, None, (), {}, deleted=True)
