"""Calling Kagent agents over A2A: the real client, and a dry run that only logs the request."""

from khook.agent._breaker import CircuitBreaker
from khook.agent._client import A2AClient
from khook.agent._dryrun import DryRunClient
from khook.agent._identity import UserIdTemplateError, check_user_id_template, user_id_for
from khook.agent._metered import MeteredAgent, answers_at_once, version_label
from khook.agent._protocol import (
    A2AVersion,
    AgentClient,
    AgentError,
    AgentRequest,
    AgentResult,
    agent_endpoint,
    build_http_request,
)
from khook.agent._tasks import TASK_STATES, TERMINAL_STATES, is_terminal
from khook.agent._transport import check_agent_url
from khook.core.reasons import AGENT_ERROR_KINDS

__all__ = [
    "AGENT_ERROR_KINDS",
    "TASK_STATES",
    "TERMINAL_STATES",
    "A2AClient",
    "A2AVersion",
    "AgentClient",
    "AgentError",
    "AgentRequest",
    "AgentResult",
    "CircuitBreaker",
    "DryRunClient",
    "MeteredAgent",
    "UserIdTemplateError",
    "agent_endpoint",
    "answers_at_once",
    "build_http_request",
    "check_agent_url",
    "check_user_id_template",
    "is_terminal",
    "user_id_for",
    "version_label",
]
