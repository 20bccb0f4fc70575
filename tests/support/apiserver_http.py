"""The HTTP face of the API server double: URL routing, verbs, bodies and media types.

Every request is parsed into a ``Route`` (which resource, namespace, name, subresource),
mapped to its RBAC verb, served from the ``Store`` and recorded before its answer is written,
so that a client which has its answer always finds its request in the log.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.support.apiserver_model import (
    ApiError,
    Obj,
    RecordedRequest,
    ResourceType,
    bad_request,
    method_not_allowed,
    no_such_resource,
    unsupported_media_type,
)
from tests.support.apiserver_oidc import ISSUER_PATHS, Issuer
from tests.support.apiserver_patch import PatchFailed, json_patch, merge_patch, strip_directives
from tests.support.apiserver_select import Matcher, build_matcher
from tests.support.apiserver_store import Store
from tests.support.apiserver_watch import TRUE_VALUES, Watch, plan_watch

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Route:
    rt: ResourceType | None  # None: nothing is served at this path
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


class Router:
    def __init__(self, resources: Iterable[ResourceType]) -> None:
        self._types: dict[tuple[str, str], dict[str, ResourceType]] = {}
        for rt in resources:
            self._types.setdefault((rt.group, rt.version), {})[rt.plural] = rt

    def route(self, path: str) -> Route:
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return Route(None)
        plurals = self._types.get((group, version), {})
        namespace = ""
        # /namespaces/{ns}/{plural}... unless it is the namespace object itself (or its status).
        if len(rest) >= 3 and rest[0] == "namespaces":
            inner = plurals.get(rest[2])
            if inner is not None and inner.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or not all(rest):
            return Route(None, group, version)
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        found = Route(plurals.get(resource), group, version, resource, subresource, namespace, name)
        rt = found.rt
        if rt is None:
            return found
        unknown_subresource = subresource and (subresource != "status" or not rt.status_subresource)
        # Namespaced objects are only addressable under /namespaces/{ns}/.
        if unknown_subresource or (rt.namespaced and name and not namespace):
            return Route(None, group, version, resource, subresource, namespace, name)
        return found


def verb_for(method: str, route: Route, query: dict[str, str]) -> str:
    if method == "GET":
        if query.get("watch", "").lower() in TRUE_VALUES:
            return "watch"
        return "get" if route.name else "list"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return _VERBS.get(method, method.lower())


def _media_type(content_type: str) -> str:
    return content_type.split(";", maxsplit=1)[0].strip().lower()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            chunk = handler.rfile.read(size + 2)[:size]  # each chunk ends with CRLF
            if size == 0:
                return b"".join(chunks)
            chunks.append(chunk)
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def _decode(raw: bytes, content_type: str) -> Any:
    media = _media_type(content_type)
    if media not in ("", "application/json", "application/yaml"):
        raise unsupported_media_type(["application/json", "application/yaml"])
    try:
        return yaml.safe_load(raw) if media == "application/yaml" else json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None


def _patch_function(rt: ResourceType, content_type: str, raw: bytes) -> Callable[[Obj], Any]:
    """How to patch: the function the store applies to the current object."""
    media = _media_type(content_type)
    # The media types the real server lists for this kind of resource, in its order.
    accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    if not rt.custom:
        accepted.insert(2, STRATEGIC_PATCH)
    if media == APPLY_PATCH:  # the real server accepts it; field management is not modelled
        message = f"server-side apply ({APPLY_PATCH}) is not supported by the API server double"
        raise ApiError(415, "UnsupportedMediaType", message)
    if media not in accepted:
        raise unsupported_media_type(accepted)
    try:
        document = json.loads(raw)
    except ValueError as error:
        raise bad_request(f"error decoding patch: {error}") from None
    if media == JSON_PATCH:
        return lambda current: _json_patch(current, document)
    if not isinstance(document, dict):
        raise bad_request(
            "json: cannot unmarshal patch into Go value of type map[string]interface {}"
        )
    if media == STRATEGIC_PATCH:
        document = strip_directives(document)
    return lambda current: merge_patch(current, document)


def _json_patch(current: Obj, operations: Any) -> Any:
    try:
        return json_patch(current, operations)
    except ValueError as error:
        raise bad_request(str(error)) from None
    except PatchFailed as error:
        raise ApiError(422, "Invalid", str(error), {}) from None


def _list_body(rt: ResourceType, items: list[Obj], resource_version: int) -> Obj:
    return {
        "apiVersion": rt.api_version,
        "kind": f"{rt.kind}List",
        "metadata": {"resourceVersion": str(resource_version)},
        "items": items,
    }


def send_json(handler: BaseHTTPRequestHandler, code: int, payload: Obj) -> None:
    data = json.dumps(payload).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@dataclass(frozen=True)
class Request:
    method: str
    route: Route
    verb: str
    query: dict[str, str]
    body: bytes
    content_type: str


class Dispatcher:
    """Serves one HTTP request against the store; shared by all handler threads."""

    def __init__(
        self,
        store: Store,
        router: Router,
        record: Callable[[RecordedRequest], None],
        bookmark_interval: float,
        issuer: Issuer | None = None,
    ) -> None:
        self._store = store
        self._router = router
        self._record = record
        self._bookmark_interval = bookmark_interval
        self._issuer = issuer
        self.refused_verbs: frozenset[str] = frozenset()  # see APIServer.refusing
        self.planned: list[PlannedFailure] = []  # see APIServer.fail_next
        self._planned_lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        body = _read_body(handler)  # always drained, so that the connection stays in step
        if self._issuer is not None and url.path in ISSUER_PATHS:
            self._serve_issuer(handler, url.path, url.query)
            return
        route = self._router.route(url.path)
        verb = verb_for(handler.command, route, query)
        content_type = handler.headers.get("Content-Type", "")
        request = Request(handler.command, route, verb, query, body, content_type)

        def record(status: int) -> None:
            self._record(
                RecordedRequest(
                    method=handler.command,
                    path=url.path,
                    verb=verb,
                    group=route.group,
                    version=route.version,
                    resource=route.resource,
                    subresource=route.subresource,
                    namespace=route.namespace,
                    name=route.name,
                    status=status,
                    content_type=content_type,
                    user_agent=handler.headers.get("User-Agent", ""),
                    query=url.query,
                )
            )

        answer = self._answer(request)
        if isinstance(answer, Watch):
            answer.serve(handler, record)  # records once its status is known
            return
        code, payload = answer
        record(code)
        send_json(handler, code, payload)

    def _serve_issuer(self, handler: BaseHTTPRequestHandler, path: str, query: str) -> None:
        """OIDC discovery and JWKS: non-resource URLs, which RBAC names by path (verb get)."""
        assert self._issuer is not None
        host = handler.headers.get("Host", "127.0.0.1")
        code, content_type, data = self._issuer.serve(handler.command, path, host)
        verb = "get" if handler.command == "GET" else handler.command.lower()
        self._record(
            RecordedRequest(
                method=handler.command,
                path=path,
                verb=verb,
                group="",
                version="",
                resource="",
                subresource="",
                namespace="",
                name="",
                status=code,
                content_type=handler.headers.get("Content-Type", ""),
                user_agent=handler.headers.get("User-Agent", ""),
                query=query,
            )
        )
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        if code == 200:
            handler.send_header("Cache-Control", "public, max-age=3600")
        handler.end_headers()
        handler.wfile.write(data)

    def _answer(self, request: Request) -> Watch | tuple[int, Obj]:
        """A watch to stream, or the status code and body of a plain answer."""
        rt = request.route.rt
        try:
            if rt is None:
                raise no_such_resource()
            if request.verb in self.refused_verbs:
                raise too_many_requests()
            self._planned_failure(request.verb, rt.plural)
            if request.verb == "watch":
                match, plan = self._matcher(request, rt), plan_watch(request.query)
                return Watch(self._store, rt, match, plan, self._bookmark_interval)
            return self._serve(request, rt)
        except ApiError as error:
            return error.code, error.body()
        except Exception as error:  # e.g. a validate callable that raised
            # Answer like the real server's 500 so that the test sees the bug, not a hang-up.
            message = f"Internal error occurred: {error!r}"
            return 500, ApiError(500, "InternalError", message, {}).body()

    def _planned_failure(self, verb: str, plural: str) -> None:
        with self._planned_lock:
            for planned in self.planned:
                if planned.matches(verb, plural):
                    planned.count -= 1
                    if planned.count <= 0:
                        self.planned.remove(planned)
                    raise ApiError(planned.status, planned.reason, planned.message(), {})

    def _matcher(self, request: Request, rt: ResourceType) -> Matcher:
        route, query = request.route, request.query
        fields = query.get("fieldSelector", "")
        if route.name:  # a watch on one object is a watch filtered by its name
            fields = ",".join(filter(None, [fields, f"metadata.name={route.name}"]))
        try:
            return build_matcher(rt, route.namespace, query.get("labelSelector", ""), fields)
        except ValueError as error:
            raise bad_request(str(error)) from None

    def _serve(self, request: Request, rt: ResourceType) -> tuple[int, Obj]:
        route, store = request.route, self._store
        verb, namespace, name = request.verb, route.namespace, route.name
        if verb == "get":
            return 200, store.get(rt, namespace, name)
        if verb == "list":
            items, version = store.select(rt, self._matcher(request, rt))
            return 200, _list_body(rt, items, version)
        if verb == "create" and not name and (namespace or not rt.namespaced):
            return 201, store.create(rt, namespace, _decode(request.body, request.content_type))
        if verb == "update" and name:
            body = _decode(request.body, request.content_type)
            return 200, store.update(rt, namespace, name, body, route.subresource)
        if verb == "patch" and name:
            apply = _patch_function(rt, request.content_type, request.body)
            return 200, store.patch(rt, namespace, name, route.subresource, apply)
        if verb == "delete" and not route.subresource:
            return 200, store.delete(rt, namespace, name, self._preconditions(request))
        if verb == "deletecollection" and (namespace or not rt.namespaced):
            items, version = store.delete_collection(rt, self._matcher(request, rt))
            return 200, _list_body(rt, items, version)
        raise method_not_allowed()

    @staticmethod
    def _preconditions(request: Request) -> Obj:
        if not request.body.strip():
            return {}
        options = _decode(request.body, request.content_type)
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be a JSON object")
        preconditions = options.get("preconditions") or {}
        return preconditions if isinstance(preconditions, dict) else {}


@dataclass
class PlannedFailure:
    """The next ``count`` requests with one of these verbs on one of these resources fail with
    ``status`` (a Status body with ``reason``, as the real server writes them)."""

    verbs: frozenset[str]
    resources: frozenset[str]
    status: int
    reason: str
    count: int = 1

    def matches(self, verb: str, plural: str) -> bool:
        return (not self.verbs or verb in self.verbs) and (
            not self.resources or plural in self.resources
        )

    def message(self) -> str:
        return f"injected by the test: {self.reason}"


def too_many_requests() -> ApiError:
    """API Priority and Fairness turning a request away (the real server adds Retry-After)."""
    message = "Too many requests, please try again later."
    return ApiError(429, "TooManyRequests", message, {"retryAfterSeconds": 1})


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the official client's urllib3 pool expects."""

    protocol_version = "HTTP/1.1"
    # As Go's net/http does (TCP_NODELAY by default): with Nagle on, a body written after its
    # headers waits for the client's delayed ACK, ~40 ms per request on loopback.
    disable_nagle_algorithm = True
    dispatcher: Dispatcher  # set on a subclass per server

    def _dispatch(self) -> None:
        try:
            self.dispatcher.handle(self)
        except OSError:
            self.close_connection = True  # the client went away mid-answer

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log is APIServer.requests; stderr noise helps nobody
