"""A2A wire format for Kagent: A2A 0.3 ``message/send`` and A2A 1.0 ``SendMessage``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

from khook.core.hooks import AgentRef

VERSION_HEADER = "A2A-Version"
JSONRPC_INTERNAL_ERROR = -32603


class A2AVersion(StrEnum):
    V0_3 = "0.3"
    V1_0 = "1.0"
    AUTO = "auto"


class AgentError(Exception):
    """An agent call failed. ``retryable`` failures (connection, timeout, 5xx, 429) are worth
    a redelivery; the others (4xx, a JSON-RPC error, a rejected task) are not."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class AgentRequest:
    agent: AgentRef
    prompt: str
    message_id: str  # stable across retries of one firing, so the agent can spot a repeat
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentResult:
    task_id: str
    context_id: str
    state: str
    kind: str  # task | message | dry-run


@dataclass(frozen=True)
class HTTPRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Mapping[str, Any]

    def redacted(self) -> dict[str, Any]:
        headers = {
            k: ("Bearer ***" if k.lower() == "authorization" else v)
            for k, v in self.headers.items()
        }
        return {"method": self.method, "url": self.url, "headers": headers, "body": self.body}


class AgentClient(Protocol):
    def send(self, request: AgentRequest) -> AgentResult: ...

    def close(self) -> None: ...


def agent_endpoint(base_url: str, agent: AgentRef) -> str:
    """Kagent's A2A endpoint; the trailing slash matters."""
    return f"{base_url.rstrip('/')}/api/a2a/{quote(agent.namespace)}/{quote(agent.name)}/"


def build_http_request(
    base_url: str,
    request: AgentRequest,
    version: A2AVersion,
    *,
    user_id: str,
    token: str | None = None,
    blocking: bool = False,
) -> HTTPRequest:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if user_id:
        headers["X-User-Id"] = user_id
    if token:
        headers["Authorization"] = f"Bearer {token}"
    metadata = dict(request.metadata)
    if version is A2AVersion.V1_0:
        headers[VERSION_HEADER] = "1.0"
        message: dict[str, Any] = {
            "messageId": request.message_id,
            "role": "ROLE_USER",
            "parts": [{"text": request.prompt}],
        }
        if metadata:
            message["metadata"] = metadata
        body = {
            "jsonrpc": "2.0",
            "id": request.message_id,
            "method": "SendMessage",
            "params": {"message": message, "configuration": {"returnImmediately": not blocking}},
        }
    else:
        message = {
            "kind": "message",
            "messageId": request.message_id,
            "role": "user",
            "parts": [{"kind": "text", "text": request.prompt}],
        }
        if metadata:
            message["metadata"] = metadata
        body = {
            "jsonrpc": "2.0",
            "id": request.message_id,
            "method": "message/send",
            "params": {"message": message, "configuration": {"blocking": blocking}},
        }
    return HTTPRequest("POST", agent_endpoint(base_url, request.agent), headers, body)


def parse_response(payload: Any) -> AgentResult:
    """Read a JSON-RPC response of either version into an AgentResult or raise AgentError."""
    if not isinstance(payload, Mapping):
        raise AgentError("agent answered with something that is not JSON-RPC", retryable=False)
    error = payload.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        raise AgentError(
            f"agent answered JSON-RPC error {code}: {error.get('message', '')}",
            retryable=code == JSONRPC_INTERNAL_ERROR,
        )
    result = payload.get("result")
    if not isinstance(result, Mapping):
        raise AgentError("agent's JSON-RPC response has no result", retryable=False)
    # A2A 1.0 wraps the result ({"task": {...}} or {"message": {...}}); 0.3 tags it with kind.
    if isinstance(result.get("task"), Mapping):
        kind, body = "task", result["task"]
    elif isinstance(result.get("message"), Mapping):
        kind, body = "message", result["message"]
    else:
        kind, body = str(result.get("kind", "")), result
    if kind == "task":
        status = body.get("status")
        state = str(status.get("state", "")) if isinstance(status, Mapping) else ""
        state = state.removeprefix("TASK_STATE_").lower().replace("_", "-")
        if state in ("failed", "rejected", "canceled"):
            raise AgentError(f"agent {state} the task", retryable=False)
        return AgentResult(str(body.get("id", "")), str(body.get("contextId", "")), state, kind)
    if kind == "message":
        return AgentResult(
            str(body.get("taskId", "")), str(body.get("contextId", "")), "answered", kind
        )
    raise AgentError("agent's result is neither a task nor a message", retryable=False)


def version_from_card(card: Any) -> A2AVersion:
    """An agent card that offers a 1.x interface speaks A2A 1.0; anything else 0.3."""
    if not isinstance(card, Mapping):
        return A2AVersion.V0_3
    versions = [str(card.get("protocolVersion", ""))]
    interfaces = card.get("supportedInterfaces")
    if isinstance(interfaces, list):
        versions += [
            str(i.get("protocolVersion", "")) for i in interfaces if isinstance(i, Mapping)
        ]
    if any(v.startswith("1.") or v == "1" for v in versions):
        return A2AVersion.V1_0
    return A2AVersion.V0_3
