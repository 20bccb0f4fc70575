"""A2A wire format for Kagent: A2A 0.3 ``message/send`` and A2A 1.0 ``SendMessage``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from khook.agent._identity import UserIdTemplateError, user_id_for
from khook.agent._tasks import FAILED_STATES, refuses_ended_task, task_state
from khook.core.hooks import AgentRef
from khook.core.quick import quick_init
from khook.core.reasons import AGENT_ERROR_KINDS

VERSION_HEADER = "A2A-Version"
JSONRPC_INTERNAL_ERROR = -32603
MAX_ID_CHARS = 256  # an agent's task or context id longer than this is cut (they are UUIDs)
# An agent's namespace and name go into the URL path: DNS-1123 labels only, so no "..", "/",
# "?", "%" or anything else that could take the call outside /api/a2a/.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# RFC 7230 token68-ish: what a bearer token may hold without breaking the header line.
_TOKEN = re.compile(r"[!-~]+")


class A2AVersion(StrEnum):
    V0_3 = "0.3"
    V1_0 = "1.0"
    AUTO = "auto"


class AgentError(Exception):
    """An agent call failed. ``retryable`` failures (connection, timeout, 5xx, 429) are worth
    a redelivery; the others (4xx, a JSON-RPC error, a rejected task) are not.
    ``task_ended``: the agent refused the message because the task it names has ended.
    ``kind``: one of AGENT_ERROR_KINDS; ``status``: the HTTP status, for ``http``."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        task_ended: bool = False,
        kind: str = "answer",
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.task_ended = task_ended
        self.kind = kind if kind in AGENT_ERROR_KINDS else "answer"
        self.status = status

    def again(self, message: str, *, retryable: bool | None = None) -> AgentError:
        """The same failure, told with more context."""
        return AgentError(
            message,
            retryable=self.retryable if retryable is None else retryable,
            retry_after=self.retry_after,
            task_ended=self.task_ended,
            kind=self.kind,
            status=self.status,
        )


@dataclass(frozen=True)
class AgentRequest:
    """One message to an agent: an incident's first prompt, or a follow-up (``followup``)
    into the conversation (``context_id``) the first answer opened, continuing its task
    (``task_id``) while that task has not ended."""

    agent: AgentRef
    prompt: str
    message_id: str  # stable across retries of one message, so the agent can spot a repeat
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The Hook that fires: the identity template (X-User-Id) is expanded with these.
    hook_namespace: str = ""
    hook_name: str = ""
    # The conversation (Kagent's session) to continue, and the task in it; "" for none. A
    # task id needs its context id. A task that has ended is not continued: the message goes
    # as a new task in the same context (see A2AClient.send).
    context_id: str = ""
    task_id: str = ""
    # A follow-up: the agent's task failing (failed, rejected, canceled) is then its answer,
    # returned in AgentResult.state, not an AgentError (the incident's call did not fail).
    followup: bool = False
    # Trace context headers of the request that brought the event (traceparent, tracestate,
    # b3, x-b3-*), already validated by khook.trace: sent with the message as they are.
    trace: Mapping[str, str] = field(default_factory=dict)


@quick_init
@dataclass(frozen=True)
class AgentResult:
    task_id: str  # the task the message went into ("" for a message answer outside a task)
    context_id: str  # the conversation it is in: keep it for the next follow-up
    state: str  # the task's state, normalised (_tasks.TASK_STATES); dry runs say their own
    kind: str  # task | message | dry-run
    # The task the follow-up named had ended: the agent refused it and the same message
    # (same message id) was sent again at once, within the same deadline, as a new task in
    # the same context; task_id is that new task.
    resent_as_new_task: bool = False
    # The agent answered a follow-up in a context other than the one sent (it should not):
    # context_id is the agent's; the caller keeps it.
    context_changed: bool = False


@quick_init
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


def agent_path(agent: AgentRef) -> str:
    """The path of Kagent's A2A endpoint for ``agent`` (the trailing slash matters), built
    only from DNS-1123 labels; anything else is refused (non-retryable)."""
    for part, value in (("namespace", agent.namespace), ("name", agent.name)):
        if not isinstance(value, str) or not _DNS_LABEL.fullmatch(value):
            shown = repr(value)[:80]
            raise AgentError(
                f"agent {part} {shown} is not a DNS-1123 label; not calling it",
                retryable=False,
                kind="refused",
            )
    return f"/api/a2a/{agent.namespace}/{agent.name}/"


def agent_endpoint(base_url: str, agent: AgentRef) -> str:
    """Kagent's A2A endpoint URL; raises a non-retryable AgentError for an invalid agent."""
    return base_url.rstrip("/") + agent_path(agent)


def identity_headers(request: AgentRequest, *, user_id: str, token: str | None) -> dict[str, str]:
    """``X-User-Id`` (the template expanded for the request's Hook) and the bearer token.
    Raises a non-retryable AgentError for a value that cannot be a header."""
    headers: dict[str, str] = {}
    if user_id:
        try:
            headers["X-User-Id"] = user_id_for(
                user_id, namespace=request.hook_namespace, name=request.hook_name
            )
        except UserIdTemplateError as exc:
            raise AgentError(str(exc), retryable=False, kind="refused") from None
    if token:
        if not _TOKEN.fullmatch(token):
            # Never show the token: say only that it is unusable.
            raise AgentError(
                "the Kagent token holds characters a header cannot carry",
                retryable=False,
                kind="refused",
            )
        headers["Authorization"] = f"Bearer {token}"
    return headers


def conversation_ids(request: AgentRequest) -> dict[str, str]:
    """``contextId`` and ``taskId`` for the message (the same names in A2A 0.3 and 1.0), each
    only when set. Raises a non-retryable AgentError for ids no agent gave (a task without
    its context, too long, control characters): they come from a store, which may be damaged."""
    if request.task_id and not request.context_id:
        raise AgentError(
            "the message names a task but not its context; not sending it",
            retryable=False,
            kind="refused",
        )
    ids: dict[str, str] = {}
    for name, value in (("contextId", request.context_id), ("taskId", request.task_id)):
        if not value:
            continue
        # An id khook kept from an answer is a printable string of at most MAX_ID_CHARS
        # (see _id); anything else comes from a damaged store.
        if not isinstance(value, str) or len(value) > MAX_ID_CHARS or not value.isprintable():
            raise AgentError(
                f"the message's {name} {excerpt(repr(value), 80)} is not one an agent gives",
                retryable=False,
                kind="refused",
            )
        ids[name] = value
    return ids


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
    headers.update(identity_headers(request, user_id=user_id, token=token))
    for name, value in request.trace.items():
        headers.setdefault(name, value)  # never in place of khook's own headers
    ids = conversation_ids(request)
    metadata = dict(request.metadata)
    if version is A2AVersion.V1_0:
        headers[VERSION_HEADER] = "1.0"
        message: dict[str, Any] = {
            "messageId": request.message_id,
            "role": "ROLE_USER",
            "parts": [{"text": request.prompt}],
            **ids,
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
            **ids,
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


def parse_response(payload: Any, *, followup: bool = False) -> AgentResult:
    """Read a JSON-RPC response of either version into an AgentResult or raise AgentError.
    A task that failed (failed, rejected, canceled) is an AgentError for a first message and
    an answer for a follow-up (``followup``)."""
    if not isinstance(payload, Mapping):
        raise AgentError("agent answered with something that is not JSON-RPC", retryable=False)
    error = payload.get("error")
    if isinstance(error, Mapping):
        code = error.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        message = error.get("message", "")
        raise AgentError(
            f"agent answered JSON-RPC error {code}: {excerpt(message)}",
            retryable=code == JSONRPC_INTERNAL_ERROR,
            task_ended=refuses_ended_task(code, message, error.get("data")),
            kind="jsonrpc",
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
        state = task_state(status.get("state") if isinstance(status, Mapping) else None)
        if state in FAILED_STATES and not followup:
            raise AgentError(f"agent {state} the task", retryable=False, kind="task-failed")
        return AgentResult(_id(body.get("id")), _id(body.get("contextId")), state, kind)
    if kind == "message":
        # A direct answer says nothing of a task's state.
        return AgentResult(_id(body.get("taskId")), _id(body.get("contextId")), "unknown", kind)
    raise AgentError("agent's result is neither a task nor a message", retryable=False)


def in_conversation(request: AgentRequest, result: AgentResult) -> AgentResult:
    """The answer to ``request`` in its conversation: an answer without a context id stays in
    the one sent; one with another context id says so (``context_changed``)."""
    if not request.context_id:
        return result
    if not result.context_id:
        return replace(result, context_id=request.context_id)
    if result.context_id != request.context_id:
        return replace(result, context_changed=True)
    return result


def excerpt(value: Any, limit: int = 200) -> str:
    """Agent-supplied text for an error message: one line, bounded."""
    text = value if isinstance(value, str) else str(value)
    return " ".join(text[: limit * 2].split())[:limit]


def _id(value: Any) -> str:
    """An id from the agent, as recorded in the dedup store, logged and sent back in a
    follow-up: a bounded string; one with control characters is not kept."""
    if not isinstance(value, str) or not value.isprintable():
        return ""
    return value[:MAX_ID_CHARS]


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
