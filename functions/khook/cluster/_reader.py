from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from khook.clock import Clock
from khook.core.objects import ObjectRef, controller_owner
from khook.kubeapi import TIMEOUT, NotFound, api_errors, core_v1, read_json

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


class _TTLCache:
    def __init__(self, clock: Clock, ttl: float, limit: int) -> None:
        self._clock, self._ttl, self._limit = clock, ttl, limit
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < self._clock.monotonic():
                return None
            return hit[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = (self._clock.monotonic() + self._ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


class ClusterObjectReader:
    """Objects from the API server, for Reference-mode events (which carry only a name) and
    for the owner of the Pod an Event is about. Objects are cached briefly; owners, which do
    not change, for longer. Pods seen in Pod events are remembered, so their Events cost no
    API call to group."""

    def __init__(
        self,
        api: ApiClient,
        clock: Clock,
        *,
        object_ttl: float = 2.0,
        owner_ttl: float = 600.0,
        limit: int = 10_000,
    ) -> None:
        self._core = core_v1(api)
        self._objects = _TTLCache(clock, object_ttl, limit)
        self._owners = _TTLCache(clock, owner_ttl, limit)

    def get(self, ref: ObjectRef) -> Mapping[str, Any] | None:
        """The object, or None when it no longer exists; KubeError when it cannot be read."""
        key = f"{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}"
        cached = self._objects.get(key)
        if cached is not None:
            return dict(cached)
        try:
            with api_errors():
                response = self._read(ref)
        except NotFound:
            return None
        obj = read_json(response)
        self._objects.put(key, obj)
        self.remember(obj)
        return dict(obj)

    def _read(self, ref: ObjectRef) -> Any:
        name, ns, t = ref.name, ref.namespace, TIMEOUT
        if ref.kind == "Pod":
            return self._core.read_namespaced_pod(
                name, ns, _preload_content=False, _request_timeout=t
            )
        if ref.kind == "Node":
            return self._core.read_node(name, _preload_content=False, _request_timeout=t)
        if ref.kind == "Event":  # events.k8s.io/v1 Events are the same objects
            return self._core.read_namespaced_event(
                name, ns, _preload_content=False, _request_timeout=t
            )
        raise NotFound(404, "NotSupported", f"khook does not read {ref.kind} objects")

    def remember(self, obj: Mapping[str, Any]) -> None:
        if obj.get("kind") == "Pod":
            ref = ObjectRef.of(obj)
            self._owners.put(f"{ref.namespace}/{ref.name}", (controller_owner(obj),))

    def owner_of(self, ref: ObjectRef) -> ObjectRef | None:
        """The controlling owner of a Pod, read once and remembered; None if unknown."""
        if ref.kind != "Pod":
            return None
        cached = self._owners.get(f"{ref.namespace}/{ref.name}")
        if cached is not None:
            owner: ObjectRef | None = cached[0]
            return owner
        pod = self.get(ObjectRef("Pod", ref.name, ref.namespace, "v1"))
        if pod is None:
            return None
        return controller_owner(pod)
