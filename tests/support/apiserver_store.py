"""The storage of the API server double: objects, the resourceVersion counter, the watch history.

Everything here runs under one lock (a Condition, so that watchers can wait on it without
holding it). Stored objects are never mutated once stored: every write stores a new dict, so
watch streams and responses can read them after the lock is released.
"""

from __future__ import annotations

import copy
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support.apiserver_model import (
    Cause,
    Obj,
    ResourceType,
    already_exists,
    bad_request,
    conflict,
    expired,
    invalid,
    not_found,
)

Key = tuple[str, str, str]
Matcher = Callable[[Obj], bool]

_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# The real server's generateName alphabet: no vowels, so generated names never spell words.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Metadata only the server sets; a client's values are ignored (on create) or kept (on update).
_SYSTEM_FIELDS = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "selfLink")


@dataclass(frozen=True)
class Change:
    """One write, as the watch history keeps it. ``prev`` lets watchers with selectors see an
    object leave their selection (the real server sends DELETED then)."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Key
    obj: Obj
    prev: Obj | None


@dataclass(frozen=True)
class Interruption:
    """How a test ends the open watch streams (``Store.interrupt_watches``): with an ERROR
    event carrying ``error`` (a Status), by cutting the connection (``drop``), or cleanly."""

    error: Obj | None = None
    drop: bool = False


class Subscription:
    """A watcher's queue of changes not yet sent."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.pending: deque[Change] = deque()
        self.interrupted: Interruption | None = None


@dataclass(frozen=True)
class Batch:
    changes: list[Change]
    resource_version: int  # the global rv once these changes are sent (for bookmarks)
    closed: bool
    interrupted: Interruption | None = None  # after these changes, end the stream this way


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Obj) -> Obj:
    meta = obj.get("metadata")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    return meta


def _name_causes(rt: ResourceType, name: str) -> list[Cause]:
    # Namespaces are DNS labels (no dots, <= 63); everything else here is a DNS subdomain.
    is_label = rt.group == "" and rt.plural == "namespaces"
    pattern, rule, limit = (
        (_LABEL, _LABEL_RULE, 63) if is_label else (_SUBDOMAIN, _SUBDOMAIN_RULE, 253)
    )
    quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    causes = []
    if len(name) > limit:
        causes.append(f"must be no more than {limit} characters")
    if not pattern.fullmatch(name):
        causes.append(rule)
    return [
        Cause("FieldValueInvalid", f"Invalid value: {quoted}: {c}", "metadata.name") for c in causes
    ]


def _check_type(rt: ResourceType, body: Obj) -> None:
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if api_version and api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise bad_request(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )


def _without_nulls(value: Any) -> Any:
    """Drop null fields, as the real server does: built-in types decode into Go structs that
    omit them, and custom resources prune nulls that their schema does not allow."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _typed(rt: ResourceType, body: Obj, meta: Obj) -> Obj:
    """The object with apiVersion, kind and metadata first, as the real server orders them."""
    rest = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
    typed = {"apiVersion": rt.api_version, "kind": rt.kind, "metadata": meta, **rest}
    result: Obj = _without_nulls(typed)
    return result


def _spec_part(obj: Obj) -> Obj:
    """What ``metadata.generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _new_object(rt: ResourceType, namespace: str, body: object) -> Obj:
    if not isinstance(body, dict):
        raise bad_request("the body of a create must be a JSON object")
    _check_type(rt, body)
    meta = copy.deepcopy(_meta(body))
    if rt.namespaced:
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)  # cluster-scoped objects have no namespace
    if meta.get("resourceVersion"):
        raise bad_request("resourceVersion should not be set on objects to be created")
    for field in _SYSTEM_FIELDS:
        meta.pop(field, None)
    obj = _typed(rt, body, meta)
    if rt.status_subresource:
        obj.pop("status", None)  # status is written through /status only
    return obj


def _check_update(rt: ResourceType, stored: Obj, body: Obj, *, put: bool) -> None:
    """The URL and precondition checks of an update, in the real server's order."""
    _check_type(rt, body)
    meta, old_meta = _meta(body), stored["metadata"]
    name, namespace = old_meta["name"], old_meta.get("namespace", "")
    if meta.get("name", "") != name:
        raise bad_request(
            f"the name of the object ({meta.get('name', '')}) does not match the name on the URL "
            f"({name})"
        )
    if rt.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
        raise bad_request(
            f"the namespace of the object ({meta['namespace']}) does not match the namespace on "
            f"the URL ({namespace})"
        )
    requested = meta.get("resourceVersion") or ""
    if put and rt.custom and not requested:
        # Custom resources do not allow unconditional updates (the real server's words).
        why = "Invalid value: 0x0: must be specified for an update"
        raise invalid(rt, name, [Cause("FieldValueInvalid", why, "metadata.resourceVersion")])
    if requested and requested != old_meta["resourceVersion"]:
        raise conflict(rt, name)


def _updated(rt: ResourceType, stored: Obj, body: object, subresource: str, *, put: bool) -> Obj:
    """The object an update (or a patch, once applied) asks to store, before validation."""
    if not isinstance(body, dict):
        raise bad_request("the body of an update must be a JSON object")
    _check_update(rt, stored, body, put=put)
    if subresource == "status":  # only status changes; metadata and spec stay as stored
        status = _without_nulls(body.get("status"))
        rest = {k: v for k, v in stored.items() if k != "status"}
        rest["metadata"] = dict(stored["metadata"])  # the write sets its resourceVersion
        return rest if status is None else {**rest, "status": status}
    old_meta = stored["metadata"]
    kept = {k: old_meta[k] for k in (*_SYSTEM_FIELDS, "namespace") if k in old_meta}
    asked = {k: v for k, v in _meta(body).items() if k not in _SYSTEM_FIELDS}
    obj = _typed(rt, body, {**asked, **kept})
    if rt.status_subresource:  # status changes through /status only
        obj.pop("status", None)
        if "status" in stored:
            obj["status"] = stored["status"]
    if _spec_part(obj) != _spec_part(stored):
        obj["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
    return obj


def _run_validate(rt: ResourceType, obj: Obj) -> None:
    if rt.validate is None:
        return
    messages = rt.validate(copy.deepcopy(obj))
    if messages:
        causes = [Cause("FieldValueInvalid", message) for message in messages]
        raise invalid(rt, obj["metadata"].get("name", ""), causes)


class Store:
    def __init__(
        self, resources: Iterable[ResourceType], *, history: int, start: int = 100
    ) -> None:
        self.lock = threading.Condition()
        self._rv = start
        self._floor = start  # the history holds every change with rv > floor
        self._history: deque[Change] = deque()
        self._history_limit = history
        self._objects: dict[Key, dict[tuple[str, str], Obj]] = {rt.key: {} for rt in resources}
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    # -- reads ---------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        with self.lock:
            return self._existing(rt, namespace, name)

    def select(self, rt: ResourceType, match: Matcher) -> tuple[list[Obj], int]:
        with self.lock:
            objects = self._objects[rt.key]
            return [objects[k] for k in sorted(objects) if match(objects[k])], self._rv

    # -- writes --------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str, body: object) -> Obj:
        obj = _new_object(rt, namespace, body)
        meta = obj["metadata"]
        with self.lock:
            objects = self._objects[rt.key]
            if not meta.get("name"):
                meta["name"] = self._generated_name(rt, namespace, meta)
            name = meta["name"]
            causes = _name_causes(rt, name)
            if causes:
                raise invalid(rt, name, causes)
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            _run_validate(rt, obj)
            if (namespace, name) in objects:
                raise already_exists(rt, name)
            meta["resourceVersion"] = self._next_rv()
            objects[(namespace, name)] = obj
            self._commit("ADDED", rt, obj, None)
            return obj

    def update(self, rt: ResourceType, namespace: str, name: str, body: object, sub: str) -> Obj:
        with self.lock:
            stored = self._existing(rt, namespace, name)
            return self._write(rt, stored, _updated(rt, stored, body, sub, put=True))

    def patch(
        self, rt: ResourceType, namespace: str, name: str, sub: str, apply: Callable[[Obj], object]
    ) -> Obj:
        """Apply ``apply`` to (a copy of) the stored object, then store it like an update."""
        with self.lock:
            stored = self._existing(rt, namespace, name)
            patched = apply(copy.deepcopy(stored))
            return self._write(rt, stored, _updated(rt, stored, patched, sub, put=False))

    def delete(self, rt: ResourceType, namespace: str, name: str, preconditions: Obj) -> Obj:
        with self.lock:
            stored = self._existing(rt, namespace, name)
            meta = stored["metadata"]
            for field, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = preconditions.get(field)
                if wanted and wanted != meta[field]:
                    why = (
                        f"Precondition failed: {label} in precondition: {wanted}, "
                        f"{label} in object meta: {meta[field]}"
                    )
                    raise conflict(rt, name, why)
            return self._remove(rt, stored)

    def delete_collection(self, rt: ResourceType, match: Matcher) -> tuple[list[Obj], int]:
        with self.lock:
            objects = self._objects[rt.key]
            doomed = [objects[k] for k in sorted(objects) if match(objects[k])]
            return [self._remove(rt, obj) for obj in doomed], self._rv

    # -- watch ---------------------------------------------------------------------------

    def open_watch(self, rt: ResourceType, since: int | None) -> tuple[list[Change], Subscription]:
        """The changes to send first (current objects as ADDED, or the history after
        ``since``), and a subscription for what comes next: both taken atomically."""
        with self.lock:
            if since is None:
                objects = self._objects[rt.key]
                initial = [
                    Change(int(obj["metadata"]["resourceVersion"]), "ADDED", rt.key, obj, None)
                    for obj in (objects[k] for k in sorted(objects))
                ]
            elif since < self._floor:
                raise expired(since, self._floor)
            else:
                initial = [c for c in self._history if c.key == rt.key and c.rv > since]
            subscription = Subscription(rt.key)
            self._subscriptions.add(subscription)
            return initial, subscription

    def wait(self, subscription: Subscription, timeout: float) -> Batch:
        """Wait (without holding the lock) until there are changes, the store closes or
        ``timeout`` passes; take the pending changes."""
        with self.lock:
            idle = not subscription.pending and subscription.interrupted is None
            if idle and not self._closed:
                self.lock.wait(timeout)
            changes = list(subscription.pending)
            subscription.pending.clear()
            return Batch(changes, self._rv, self._closed, subscription.interrupted)

    def close_watch(self, subscription: Subscription) -> None:
        with self.lock:
            self._subscriptions.discard(subscription)
            self.lock.notify_all()  # close() may be waiting for the last watcher

    def wait_watches_closed(self, timeout: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: not self._subscriptions, timeout)

    def interrupt_watches(self, how: Interruption) -> int:
        """End every open watch stream after the changes already committed (none committed
        later reaches it): the streams stop following the store now. Returns how many."""
        with self.lock:
            interrupted = list(self._subscriptions)
            for subscription in interrupted:
                subscription.interrupted = how
                self._subscriptions.discard(subscription)
            self.lock.notify_all()
            return len(interrupted)

    def compact(self) -> None:
        with self.lock:
            self._history.clear()
            self._floor = self._rv

    def close(self) -> None:
        """Wake every watcher and tell it to end its stream."""
        with self.lock:
            self._closed = True
            self.lock.notify_all()

    # -- internals (lock held) -----------------------------------------------------------

    def _existing(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._objects[rt.key].get((namespace, name))
        if obj is None:
            raise not_found(rt, name)
        return obj

    def _generated_name(self, rt: ResourceType, namespace: str, meta: Obj) -> str:
        prefix = meta.get("generateName") or ""
        if not prefix:
            cause = Cause(
                "FieldValueRequired",
                "Required value: name or generateName is required",
                "metadata.name",
            )
            raise invalid(rt, "", [cause])
        while True:  # the real server also retries a generated name that is taken
            suffix = "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))
            name = str(prefix)[:58] + suffix
            if (namespace, name) not in self._objects[rt.key]:
                return name

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _write(self, rt: ResourceType, stored: Obj, obj: Obj) -> Obj:
        _run_validate(rt, obj)
        meta = obj["metadata"]
        meta["resourceVersion"] = stored["metadata"]["resourceVersion"]
        if obj == stored:
            return stored  # a no-op write: the real server skips it (same rv, no event)
        meta["resourceVersion"] = self._next_rv()
        self._objects[rt.key][(meta.get("namespace", ""), meta["name"])] = obj
        self._commit("MODIFIED", rt, obj, stored)
        return obj

    def _remove(self, rt: ResourceType, stored: Obj) -> Obj:
        meta = stored["metadata"]
        del self._objects[rt.key][(meta.get("namespace", ""), meta["name"])]
        # The DELETED event (and the answer) carry the deletion's resourceVersion.
        obj = {**stored, "metadata": {**meta, "resourceVersion": self._next_rv()}}
        self._commit("DELETED", rt, obj, stored)
        return obj

    def _commit(self, kind: str, rt: ResourceType, obj: Obj, prev: Obj | None) -> None:
        change = Change(int(obj["metadata"]["resourceVersion"]), kind, rt.key, obj, prev)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._floor = self._history.popleft().rv
        for subscription in self._subscriptions:
            if subscription.key == rt.key:
                subscription.pending.append(change)
        self.lock.notify_all()
