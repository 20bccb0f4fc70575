from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from khook import metrics
from khook.admission import Admission, Ranking, Reading, Verdict
from khook.clock import Clock
from khook.core.hooks import Hook, HookInvalid, Reason, hook_identity
from khook.core.objects import get_int, get_str
from khook.files import HookSet
from khook.kubeapi import custom_objects
from khook.listwatch import ListWatch
from khook.logs import log

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

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
    reason: str = ""  # why it is not in force (core.hooks.Reason) when ``hook`` is None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class _Entry:
    """What the watch last brought for one Hook, and what admission made of it."""

    reading: Reading
    uid: str
    generation: int
    status: Mapping[str, Any]
    completed: Verdict | None = None  # its prompts compiled and checked, once it had a place


class ClusterHookSource:
    """Hooks from the API server, followed by list-then-watch (see :mod:`khook.listwatch`) and
    admitted (see :mod:`khook.admission`): one Hook's change re-decides its namespace's quota
    only. Events are matched against this cache, never with an API call per event.
    ``on_change`` hears of every Hook that was added, changed or deleted, or whose verdict
    changed (for its status)."""

    def __init__(
        self,
        api: ApiClient,
        *,
        known_types: frozenset[str],
        control_namespace: str,
        clock: Clock,
        namespaces: Iterable[str] = (),
        on_change: Callable[[list[HookDoc]], None] | None = None,
        cold_start_wait: float = 10.0,
        watch_timeout: int = 290,
        max_backoff: float = 30.0,
        admission: Admission | None = None,
    ) -> None:
        self._objects = custom_objects(api)
        # Which Hooks are in force (agent policy, quota, prompt checks): built by the caller
        # from its settings; the default admits with the default policy and no prompt check.
        self._admission = admission or Admission(
            known_types=known_types, control_namespace=control_namespace
        )
        self._clock = clock
        self._scopes = tuple(namespaces) or ("",)
        self._on_change = on_change
        self._cold_start_wait = cold_start_wait
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        # Admission state, changed by the watch threads one at a time (prompt checks may be
        # slow, so requests never wait for this lock).
        self._admitting = threading.RLock()
        self._entries: dict[str, _Entry] = {}  # by namespace/name
        self._ranking = Ranking(self._admission.max_hooks_per_namespace)
        # What requests read: the published verdicts and the HookSet made of them.
        self._lock = threading.Lock()
        self._docs: dict[str, HookDoc] = {}
        self._hook_set: HookSet | None = None
        self._listed: set[str] = set()
        self._ready = threading.Event()
        self._watchers: list[ListWatch] = []

    # ---- the HookSource face ------------------------------------------------------------

    def cached(self) -> HookSet | None:
        return self._hook_set  # None after a change, until current() rebuilds it

    def current(self, wait: bool = True) -> HookSet:
        if wait and not self._ready.is_set():
            self._ready.wait(self._cold_start_wait)
        with self._lock:
            if self._hook_set is None:  # rebuilt after a change only, not per request
                docs = sorted(self._docs.values(), key=lambda d: d.key)
                self._hook_set = HookSet(
                    hooks=tuple(d.hook for d in docs if d.hook is not None),
                    invalid=tuple(
                        HookInvalid(
                            d.namespace,
                            d.name,
                            d.problems,
                            d.reason or Reason.INVALID_CONFIGURATION,
                        )
                        for d in docs
                        if d.hook is None
                    ),
                    synced=self._ready.is_set(),
                )
                invalid = self._hook_set.invalid
                metrics.hooks_loaded(len(self._hook_set.hooks), (d.reason for d in invalid))
            return self._hook_set

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

    # ---- the watch ----------------------------------------------------------------------

    def _listed_scope(self, scope: str, items: list[Mapping[str, Any]]) -> None:
        keys = {"/".join(hook_identity(i, "default")) for i in items}
        with self._admitting:
            gone = [
                key
                for key, entry in self._entries.items()
                if (not scope or entry.reading.namespace == scope) and key not in keys
            ]
            touched: set[str] = set()
            for key in gone:
                touched |= self._forget(key)
            for item in items:
                touched |= self._take(item)
            changed, removed = self._publish(touched, gone, quiet=True)
        self._notify(changed + removed)
        self._listed.add(scope)
        if self._listed >= set(self._scopes):
            # Both under the lock: a reader woken by the flag must find the set invalidated
            # already, or the set it builds (synced) would be thrown away and built again.
            with self._lock:
                self._ready.set()
                self._hook_set = None  # now synced
        with self._lock:
            docs = [d for d in self._docs.values() if not scope or d.namespace == scope]
        reasons = Counter(d.reason or "InForce" for d in docs)
        log(
            logger,
            logging.INFO,
            "hooks listed",
            scope=scope or "all namespaces",
            hooks=len(items),
            verdicts=dict(sorted(reasons.items())),
        )

    def _event(self, kind: str, obj: Mapping[str, Any]) -> None:
        key = "/".join(hook_identity(obj, "default"))
        with self._admitting:
            if kind in ("ADDED", "MODIFIED"):
                changed, removed = self._publish(self._take(obj), ())
            elif kind == "DELETED" and key in self._entries:
                changed, removed = self._publish(self._forget(key), (key,))
                log(logger, logging.INFO, "hook deleted", hook=key)
            else:
                return
        self._notify(changed + removed)

    # ---- admission, under self._admitting -------------------------------------------------

    def _take(self, obj: Mapping[str, Any]) -> set[str]:
        """Read one Hook object; the keys whose verdict may have changed."""
        namespace, name = hook_identity(obj, "default")
        key = f"{namespace}/{name}"
        generation = get_int(obj, "metadata", "generation") or 0
        uid = get_str(obj, "metadata", "uid")
        raw_status = obj.get("status")
        status: Mapping[str, Any] = raw_status if isinstance(raw_status, Mapping) else {}
        before = self._entries.get(key)
        if (
            before is not None
            and generation
            and (before.generation, before.uid)
            == (
                generation,
                uid,
            )
        ):
            before.status = status  # only the status changed (often our own write)
            return {key}
        reading = self._admission.read(obj, "cluster")
        self._entries[key] = _Entry(reading, uid, generation, status)
        order = reading.order if reading.draft is not None else None
        return self._ranking.update(key, namespace, order) | {key}

    def _forget(self, key: str) -> set[str]:
        entry = self._entries.pop(key)
        return self._ranking.update(key, entry.reading.namespace, None) - {key}

    def _verdict(self, key: str, entry: _Entry) -> Verdict:
        reading = entry.reading
        if reading.draft is None or not self._ranking.placed(key):
            return self._admission.verdict(reading, placed=False)
        assert entry.completed is not None, "completed by _complete"
        return entry.completed

    def _complete(self, keys: list[str]) -> None:
        """Compile and check the prompts of the Hooks that have a place and were not yet."""
        waiting = [
            entry
            for key in keys
            if (entry := self._entries.get(key)) is not None
            and entry.reading.draft is not None
            and entry.completed is None
            and self._ranking.placed(key)
        ]
        drafts = [e.reading.draft for e in waiting if e.reading.draft is not None]
        for entry, verdict in zip(waiting, self._admission.complete_all(drafts), strict=True):
            entry.completed = verdict

    def _publish(
        self, keys: Iterable[str], removed: Iterable[str], *, quiet: bool = False
    ) -> tuple[list[HookDoc], list[HookDoc]]:
        ordered = sorted(keys)
        self._complete(ordered)
        docs = []
        for key in ordered:
            entry = self._entries.get(key)
            if entry is None:
                continue
            verdict = self._verdict(key, entry)
            doc = _doc(entry, verdict)
            self._log(doc, self._docs.get(key), quiet)
            docs.append(doc)
        with self._lock:
            gone = [self._docs.pop(key) for key in removed if key in self._docs]
            for doc in docs:
                self._docs[doc.key] = doc
            self._hook_set = None
        return docs, [_deleted(d) for d in gone]

    @staticmethod
    def _log(doc: HookDoc, before: HookDoc | None, quiet: bool) -> None:
        if before is not None and (before.hook, before.problems) == (doc.hook, doc.problems):
            return
        if doc.hook is not None:
            log(
                logger,
                logging.INFO,
                "hook in force",
                hook=doc.key,
                eventTypes=doc.hook.event_types,
                generation=doc.generation,
            )
            return
        # Over the quota: thousands of Hooks may be; a listing counts them instead.
        crowded = doc.reason == Reason.TOO_MANY_HOOKS
        log(
            logger,
            logging.DEBUG if crowded and quiet else logging.WARNING,
            "hook not in force",
            hook=doc.key,
            reason=doc.reason,
            problems=list(doc.problems),
        )

    def _notify(self, docs: list[HookDoc]) -> None:
        if self._on_change is not None and docs:
            try:
                self._on_change(docs)
            except Exception:  # the watch must outlive a bug in a listener
                logger.exception("hook change listener failed")


def _doc(entry: _Entry, verdict: Verdict) -> HookDoc:
    reading = entry.reading
    if isinstance(verdict, Hook):
        return HookDoc(
            reading.namespace, reading.name, entry.uid, entry.generation, verdict, (), entry.status
        )
    return HookDoc(
        reading.namespace,
        reading.name,
        entry.uid,
        entry.generation,
        None,
        tuple(verdict.problems),
        entry.status,
        reason=verdict.reason,
    )


def _deleted(doc: HookDoc) -> HookDoc:
    return HookDoc(doc.namespace, doc.name, doc.uid, doc.generation, None, (), {}, deleted=True)
