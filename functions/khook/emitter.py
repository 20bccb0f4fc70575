"""An ApiServerSource for clusters without Knative: list, then watch, and post CloudEvents
shaped exactly like an ApiServerSource in Resource mode (binary mode, the same type, source,
subject, id, time and extensions, the object as data), with the adapter's retry behaviour.

Like the adapter, it emits nothing for objects that exist when it starts or after a re-list:
only changes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from khook.kubeapi import core_v1
from khook.listwatch import ListWatch
from khook.logs import log

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api

logger = logging.getLogger("khook.source")

ACTIONS = {"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}
# The adapter retries only these, 5 times, exponentially from 50 ms; a 500 is dropped at once.
RETRY_STATUSES = frozenset({404, 413, 425, 429, 502, 503, 504})
RETRIES = 5
FIRST_BACKOFF = 0.05
COMPONENT = "khook-source"  # its own user agent: it runs as its own service account


@dataclass(frozen=True)
class Kind:
    name: str
    api_version: str
    plural: str
    namespaced: bool


KINDS = {
    "Event": Kind("Event", "v1", "events", True),
    "Pod": Kind("Pod", "v1", "pods", True),
    "Node": Kind("Node", "v1", "nodes", False),
}


def now_rfc3339() -> str:
    """The send time with nanoseconds, as the adapter writes it."""
    nanos = time.time_ns()
    stamp = datetime.fromtimestamp(nanos // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos % 1_000_000_000:09d}Z"


def attributes(obj: Mapping[str, Any], action: str, kind: Kind, source: str) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    scope = f"namespaces/{namespace}/" if namespace else ""
    api_version = str(obj.get("apiVersion") or kind.api_version)
    return {
        "specversion": "1.0",
        "type": f"dev.knative.apiserver.resource.{action}",
        "source": source,
        "subject": f"/apis/{api_version}/{scope}{kind.plural}/{name}",
        "id": str(uuid.uuid4()),
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
        "kind": str(obj.get("kind") or kind.name),
        "name": name,
        "namespace": namespace,
        "apiversion": api_version,
    }


class Sender:
    """Posts one CloudEvent in binary mode, retrying like the ApiServerSource adapter."""

    def __init__(
        self,
        sink: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 30.0,
        token: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.sink = sink
        self._sleep = sleep
        self._http = httpx.Client(timeout=timeout)
        self._token = token  # for a khook with KHOOK_AUTH=token; read per event (rotation)

    def send(self, attrs: Mapping[str, str], data: Mapping[str, Any]) -> int | None:
        """The final HTTP status, or None when the sink could not be reached at all."""
        raw_headers, body = to_binary(CloudEvent(dict(attrs), dict(data)))
        # Header names as Go's net/http writes them (Ce-Type), like the real adapter.
        headers = {
            "-".join(p.capitalize() for p in k.split("-")): v for k, v in raw_headers.items()
        }
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        delay, status = FIRST_BACKOFF, None
        for attempt in range(RETRIES + 1):
            try:
                response = self._http.post(self.sink, headers=headers, content=body)
                status = response.status_code
                if status not in RETRY_STATUSES:
                    break
            except httpx.TransportError as exc:
                status = None
                log(logger, logging.DEBUG, "sink unreachable", error=str(exc), attempt=attempt)
            if attempt < RETRIES:
                self._sleep(delay)
                delay *= 2
        level = logging.DEBUG if status is not None and 200 <= status < 300 else logging.WARNING
        log(
            logger, level, "event sent", type=attrs["type"], subject=attrs["subject"], status=status
        )
        return status

    def close(self) -> None:
        self._http.close()


class Emitter:
    """One list-then-watch per kind and namespace, each posting its changes in order."""

    def __init__(
        self,
        api: ApiClient,
        sender: Sender,
        *,
        kinds: Iterable[str] = ("Event", "Pod", "Node"),
        namespaces: Iterable[str] = (),
    ) -> None:
        self._sender = sender
        self.source = str(api.configuration.host)
        core = core_v1(api)
        scopes = tuple(namespaces) or ("",)
        self._watchers: list[ListWatch] = []
        for name in kinds:
            kind = KINDS[name]
            for scope in scopes if kind.namespaced else ("",):
                call = self._list_call(core, kind, scope)
                self._watchers.append(
                    ListWatch(
                        f"khook-source-{kind.plural}-{scope or 'all'}",
                        call,
                        on_list=lambda _items: None,  # like the adapter: no replay
                        on_event=partial(self._changed, kind),
                    )
                )

    @staticmethod
    def _list_call(core: CoreV1Api, kind: Kind, namespace: str) -> Callable[..., Any]:
        if kind.name == "Node":
            return core.list_node
        if kind.name == "Pod":
            return (
                partial(core.list_namespaced_pod, namespace)
                if namespace
                else (core.list_pod_for_all_namespaces)
            )
        return (
            partial(core.list_namespaced_event, namespace)
            if namespace
            else (core.list_event_for_all_namespaces)
        )

    def _changed(self, kind: Kind, watch_type: str, obj: Mapping[str, Any]) -> None:
        action = ACTIONS.get(watch_type)
        if action is not None:
            self._sender.send(attributes(obj, action, kind, self.source), obj)

    def start(self) -> None:
        for watcher in self._watchers:
            watcher.start()

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._sender.close()
