from __future__ import annotations

import hashlib
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from khook.clock import Clock
from khook.core.objects import format_time
from khook.kubeapi import TIMEOUT, AlreadyExists, KubeError, NotFound, api_errors, core_v1
from khook.kubeapi import body as as_body
from khook.logs import log
from khook.ticker import Ticker

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger("khook.events")

COMPONENT = "khook"
WRITTEN_LIMIT = 10_000  # aggregated Events whose count this replica remembers
DUPLICATE = "DuplicateEventIgnored"
HELD = "IncidentHeld"
AGGREGATED = {
    DUPLICATE: "Ignored {total} duplicate(s) of {type} for {group}: already firing",
    # Below its threshold, or waiting for what explains it (a pull's cause, a lost node).
    HELD: "Held {total} signal(s) of {type} for {group}: no session yet",
}


@dataclass(frozen=True)
class HookRef:
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Event:
    hook: HookRef
    reason: str
    message: str
    warning: bool


class HookEventWriter:
    """Kubernetes Events on Hooks (reporting component ``khook``), written off the request
    path. ``DuplicateEventIgnored`` is aggregated: one Event per incident and replica whose
    count grows, written at most once per ``duplicate_every`` seconds, never once per
    duplicate."""

    def __init__(
        self,
        api: ApiClient,
        clock: Clock,
        identity: str,
        *,
        interval: float = 1.0,
        duplicate_every: float = 30.0,
    ) -> None:
        self._api = api
        self._core = core_v1(api)
        self._clock = clock
        self._identity = identity
        self._duplicate_every = duplicate_every
        self._queue: queue.Queue[_Event] = queue.Queue(maxsize=10_000)
        self._duplicates: dict[tuple[HookRef, str, str, str], int] = {}
        self._written: OrderedDict[tuple[HookRef, str, str, str], int] = OrderedDict()
        self._lock = threading.Lock()
        self._last_duplicates = clock.monotonic()
        self._ticker = Ticker("khook-events", interval, self._tick)

    def emit(self, hook: HookRef, reason: str, message: str, *, warning: bool = False) -> None:
        try:
            self._queue.put_nowait(_Event(hook, reason, message, warning))
        except queue.Full:
            log(logger, logging.WARNING, "event queue full; dropping", reason=reason)
        self._ticker.ensure_started()

    def duplicate(self, hook: HookRef, event_type: str, group: str) -> None:
        self.aggregate(hook, DUPLICATE, event_type, group)

    def aggregate(self, hook: HookRef, reason: str, event_type: str, group: str) -> None:
        """One more of something too frequent for an Event each (a duplicate, a held signal):
        counted in one Event per incident and replica, written now and then."""
        with self._lock:
            key = (hook, reason, event_type, group)
            self._duplicates[key] = self._duplicates.get(key, 0) + 1
        self._ticker.ensure_started()

    def flush(self, *, duplicates: bool = True) -> None:
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            self._create(event.hook, event.reason, event.message, event.warning)
        if duplicates:
            self._flush_duplicates()

    def _flush_duplicates(self) -> None:
        with self._lock:
            pending, self._duplicates = self._duplicates, {}
        for key, count in pending.items():
            hook, reason, event_type, group = key
            total = self._written.get(key, 0) + count
            name = self._aggregate_name(hook, reason, event_type, group)
            message = AGGREGATED[reason].format(total=total, type=event_type, group=group)
            try:
                self._upsert(hook, name, reason, message, total)
                self._written[key] = total
                self._written.move_to_end(key)
                while len(self._written) > WRITTEN_LIMIT:
                    self._written.popitem(last=False)
            except KubeError as exc:
                _unwritten(hook, reason, exc)

    def _aggregate_name(self, hook: HookRef, reason: str, event_type: str, group: str) -> str:
        # The duplicates' Events keep the name they always had.
        what = f"{event_type}|{group}|{self._identity}"
        if reason != DUPLICATE:
            what = f"{reason}|{what}"
        digest = hashlib.sha256(what.encode()).hexdigest()
        return f"{hook.name[:200]}.dup-{digest[:16]}"

    def _upsert(self, hook: HookRef, name: str, reason: str, message: str, total: int) -> None:
        now = format_time(self._clock.now())
        patch = {"count": total, "lastTimestamp": now, "message": message}
        try:
            with api_errors():
                self._core.patch_namespaced_event(
                    name, hook.namespace, as_body(patch), _request_timeout=TIMEOUT
                )
            return
        except NotFound:
            pass  # first time for this incident, or the Event expired: create it
        event = self._body(hook, name, reason=reason, message=message, warning=False, count=total)
        try:
            with api_errors():
                self._core.create_namespaced_event(
                    hook.namespace, as_body(event), _request_timeout=TIMEOUT
                )
        except AlreadyExists:
            pass  # another thread of ours made it a moment ago; the next flush patches it

    def _create(self, hook: HookRef, reason: str, message: str, warning: bool) -> None:
        name = f"{hook.name[:200]}.{uuid.uuid4().hex[:16]}"
        event = self._body(hook, name, reason=reason, message=message, warning=warning, count=1)
        try:
            with api_errors():
                self._core.create_namespaced_event(
                    hook.namespace, as_body(event), _request_timeout=TIMEOUT
                )
        except KubeError as exc:
            _unwritten(hook, reason, exc)

    def _body(
        self, hook: HookRef, name: str, *, reason: str, message: str, warning: bool, count: int
    ) -> dict[str, Any]:
        now = format_time(self._clock.now())
        involved = {
            "apiVersion": "kagent.dev/v1alpha2",
            "kind": "Hook",
            "name": hook.name,
            "namespace": hook.namespace,
        }
        if hook.uid:
            involved["uid"] = hook.uid
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": hook.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "count": count,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._identity,
        }

    def _tick(self) -> None:
        due = self._clock.monotonic() - self._last_duplicates >= self._duplicate_every
        if due:
            self._last_duplicates = self._clock.monotonic()
        self.flush(duplicates=due)

    def close(self) -> None:
        self._ticker.close()
        self.flush()


def _unwritten(hook: HookRef, reason: str, exc: KubeError) -> None:
    # An Event is a record for people; failing to write one must not fail anything else.
    log(
        logger,
        logging.WARNING,
        "could not write an Event",
        hook=hook.key,
        reason=reason,
        error=str(exc),
    )
