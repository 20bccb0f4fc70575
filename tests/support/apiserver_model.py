"""Value types of the API server double: resource types, recorded requests and API errors.

Error bodies are shaped like the real kube-apiserver's ``Status`` objects (field order
included), because clients and tests read ``reason``, ``code`` and ``details`` from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# The real server's wording for a failed optimistic-concurrency check.
MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


@dataclass(frozen=True)
class ResourceType:
    """One REST resource the double serves, e.g. ``v1 pods`` or ``kagent.dev/v1alpha2 hooks``."""

    group: str  # "" for core
    version: str  # "v1", "v1alpha2"
    plural: str  # "pods"
    kind: str  # "Pod"
    namespaced: bool
    status_subresource: bool = False
    custom: bool = False  # CRD-backed: no strategic merge patch
    validate: Callable[[dict[str, Any]], list[str]] | None = None  # messages -> 422 Invalid

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def group_resource(self) -> str:
        """``pods`` or ``leases.coordination.k8s.io``, as the server names resources in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Pod`` or ``Hook.kagent.dev``, as the server names kinds in Invalid messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


@dataclass(frozen=True)
class RecordedRequest:
    """One request the double answered, described the way RBAC and audit logs see it."""

    method: str  # HTTP method
    path: str
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for core
    version: str
    resource: str  # plural
    subresource: str  # "" or "status"
    namespace: str  # "" when cluster-scoped or all-namespaces
    name: str  # "" for collections
    status: int  # HTTP status code answered
    content_type: str  # request Content-Type ("" if none)
    user_agent: str
    query: str = ""  # raw query string (beyond the spec: lets tests check resourceVersion=...)


class ApiError(Exception):
    """An error answer; ``body()`` is the ``Status`` object the real server would send."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def body(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return status


def _details(rt: ResourceType, name: str, kind: str) -> Obj:
    # The real server omits empty fields (omitempty), so core types carry no "group".
    details: Obj = {"name": name} if name else {}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = kind
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    message = f'{rt.group_resource} "{name}" not found'
    return ApiError(404, "NotFound", message, _details(rt, name, rt.plural))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    message = f'{rt.group_resource} "{name}" already exists'
    return ApiError(409, "AlreadyExists", message, _details(rt, name, rt.plural))


def conflict(rt: ResourceType, name: str, why: str = MODIFIED) -> ApiError:
    message = f'Operation cannot be fulfilled on {rt.group_resource} "{name}": {why}'
    return ApiError(409, "Conflict", message, _details(rt, name, rt.plural))


@dataclass(frozen=True)
class Cause:
    """One field error of an Invalid answer (``field.Error`` in the real server)."""

    reason: str  # FieldValueInvalid, FieldValueRequired...
    message: str  # "Invalid value: ..." (the error body without the field path)
    field: str = ""

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message

    def as_json(self) -> Obj:
        cause: Obj = {"reason": self.reason, "message": self.message}
        if self.field:
            cause["field"] = self.field
        return cause


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    # Same aggregation as the real server: one error verbatim, several as "[a, b]".
    texts = [cause.text() for cause in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    message = f'{rt.qualified_kind} "{name}" is invalid: {joined}'
    details = _details(rt, name, rt.kind)
    details["causes"] = [cause.as_json() for cause in causes]
    return ApiError(422, "Invalid", message, details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unsupported_media_type(accepted: list[str]) -> ApiError:
    message = "the body of the request was in an unknown format - accepted media types include: "
    return ApiError(415, "UnsupportedMediaType", message + ", ".join(accepted))


def no_such_resource() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def method_not_allowed() -> ApiError:
    message = "the server does not allow this method on the requested resource"
    return ApiError(405, "MethodNotAllowed", message, {})


def expired(requested: int, oldest: int) -> ApiError:
    message = f"too old resource version: {requested} ({oldest})"
    return ApiError(410, "Expired", message)
