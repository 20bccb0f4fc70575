"""An in-process double of the Kubernetes API server, for tests that use the official client.

It serves plain HTTP on 127.0.0.1 and reproduces the real kube-apiserver's semantics for a
small set of resources: one global resourceVersion, optimistic concurrency (409 Conflict),
AlreadyExists/NotFound/Invalid Status bodies, status subresources, merge/JSON/strategic-merge
patches (strategic refused for custom resources, 415), label and field selectors, and watches
with history replay, 410 Expired, bookmarks and timeouts. Every request is recorded with its
RBAC verb, so tests can assert on what a component asked the API server. It also serves the
cluster's ServiceAccount token issuer (OIDC discovery and JWKS) for keys the tests control:
``server.issuer`` (tests/support/apiserver_oidc.py) mints the tokens it verifies. Faults a
test can ask for: ``end_watches`` (cleanly or with an ERROR event), ``drop_watches`` (a cut
connection), ``refusing`` (429 TooManyRequests for some verbs) and ``fail_next`` (the next
matching requests fail with a given status).

    with APIServer() as server:
        api = kubernetes.client.CoreV1Api(server.api_client())
        api.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        assert server.calls(verb="create", resource="configmaps")[0].status == 201
"""

from __future__ import annotations

import contextlib
import pathlib
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

import kubernetes.client
import yaml

from tests.support.apiserver_http import Dispatcher, Handler, PlannedFailure, Router
from tests.support.apiserver_model import ApiError, RecordedRequest, ResourceType
from tests.support.apiserver_oidc import Issuer
from tests.support.apiserver_store import Interruption, Store

__all__ = ["DEFAULT_RESOURCES", "APIServer", "Issuer", "RecordedRequest", "ResourceType"]

TOKEN = "test-token"  # accepted, never checked: the double does not authenticate
_STOP_SECONDS = 0.8  # at most this long, a stopping server lets streams and requests end

DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "pods", "Pod", namespaced=True, status_subresource=True),
    ResourceType("", "v1", "nodes", "Node", namespaced=False, status_subresource=True),
    ResourceType("", "v1", "events", "Event", namespaced=True),
    ResourceType("", "v1", "configmaps", "ConfigMap", namespaced=True),
    ResourceType("", "v1", "namespaces", "Namespace", namespaced=False, status_subresource=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True),
    ResourceType(
        "kagent.dev",
        "v1alpha2",
        "hooks",
        "Hook",
        namespaced=True,
        status_subresource=True,
        custom=True,
    ),
)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its connections, so that stopping it can close
    idle keep-alive connections instead of leaving their threads blocked in a read."""

    daemon_threads = True

    def __init__(self, handler: type[Handler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._lock = threading.Lock()
        self._workers: dict[threading.Thread, socket.socket] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        worker = threading.Thread(
            target=self._work, args=(request, client_address), name="apiserver-request", daemon=True
        )
        with self._lock:
            self._workers[worker] = request
        worker.start()

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._workers.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float) -> None:
        with self._lock:
            workers = list(self._workers.items())
        for _, connection in workers:
            with contextlib.suppress(OSError):  # already closed by its client
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for worker, _ in workers:
            worker.join(max(0.0, deadline - time.monotonic()))


class APIServer:
    """The API server double; a context manager that serves on an ephemeral port."""

    def __init__(
        self,
        resources: Iterable[ResourceType] = DEFAULT_RESOURCES,
        *,
        history: int = 1000,
        bookmark_interval: float = 1.0,
        issuer: Issuer | None = None,
    ) -> None:
        self.resources = tuple(resources)
        self.issuer = issuer if issuer is not None else Issuer()
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        self._store = Store(self.resources, history=history)
        self._bookmark_interval = bookmark_interval
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._dispatcher = Dispatcher(
            self._store, Router(self.resources), self._record, self._bookmark_interval, self.issuer
        )

    def __enter__(self) -> Self:
        handler = type("APIServerHandler", (Handler,), {"dispatcher": self._dispatcher})
        self._server = _Server(handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="apiserver",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """End every watch stream cleanly, then stop serving and close all connections."""
        server, self._server = self._server, None
        if server is None:
            return
        deadline = time.monotonic() + _STOP_SECONDS
        self._store.close()
        self._store.wait_watches_closed(_STOP_SECONDS / 2)
        server.shutdown()
        # Idle keep-alive connections (and streams whose client stopped reading) are closed
        # under their threads, which then end.
        server.close_connections(max(0.0, deadline - time.monotonic()))
        server.server_close()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))

    # -- clients -------------------------------------------------------------------------

    def configuration(self) -> kubernetes.client.Configuration:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        configuration.api_key = {"BearerToken": TOKEN}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return configuration

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(self.configuration())

    def write_kubeconfig(self, path: pathlib.Path, namespace: str = "default") -> pathlib.Path:
        """A kubeconfig for this server, as ``kubernetes.config.load_kube_config`` reads it."""
        name = "apiserver-double"
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": self.url}}],
            "users": [{"name": name, "user": {"token": TOKEN}}],
            "contexts": [
                {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
            ],
            "current-context": name,
        }
        path.write_text(yaml.safe_dump(kubeconfig, sort_keys=False))
        return path

    # -- state ---------------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the watch history: a watch from any older resourceVersion gets 410 Expired."""
        self._store.compact()

    def end_watches(self, code: int = 0, reason: str = "", message: str = "") -> int:
        """End every open watch stream after the events it was sent (changes made later do
        not reach it): cleanly, as when its timeoutSeconds pass, or, given a code, with an
        ERROR event carrying that Status, as the real server does when a watch fails (e.g.
        410 Expired, 500 InternalError). Returns how many streams were open."""
        error = ApiError(code, reason, message).body() if code else None
        return self._store.interrupt_watches(Interruption(error=error))

    def drop_watches(self) -> int:
        """Cut the connection of every open watch stream mid-stream (no final chunk), as a
        crashing server or a resetting proxy does. Returns how many streams were open."""
        return self._store.interrupt_watches(Interruption(drop=True))

    @contextlib.contextmanager
    def refusing(self, *verbs: str) -> Iterator[None]:
        """Meanwhile, answer requests with these verbs (e.g. "list", "watch") 429
        TooManyRequests, as API Priority and Fairness does to a throttled flow."""
        self._dispatcher.refused_verbs = frozenset(verbs)
        try:
            yield
        finally:
            self._dispatcher.refused_verbs = frozenset()

    def fail_next(
        self,
        status: int,
        reason: str,
        *,
        verbs: tuple[str, ...] = (),
        resources: tuple[str, ...] = (),
        count: int = 1,
    ) -> None:
        """The next ``count`` matching requests fail with ``status`` and a Status body, as a
        real server's do (503 ServiceUnavailable from an overloaded server, 504 Timeout from
        etcd, 429 TooManyRequests, 409 Conflict, 500 InternalError)."""
        failure = PlannedFailure(frozenset(verbs), frozenset(resources), status, reason, count)
        self._dispatcher.planned.append(failure)

    def clear_failures(self) -> None:
        """Forget the failures planned with ``fail_next`` that have not happened yet."""
        self._dispatcher.planned.clear()

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    def calls(self, **filters: object) -> list[RecordedRequest]:
        """The recorded requests whose fields equal ``filters``, e.g. ``verb="update"``."""
        known = {field.name for field in fields(RecordedRequest)}
        unknown = sorted(set(filters) - known)
        if unknown:
            raise TypeError(f"RecordedRequest has no field(s) {unknown}")
        with self._requests_lock:
            recorded = list(self.requests)
        return [r for r in recorded if all(getattr(r, k) == v for k, v in filters.items())]

    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(request)
