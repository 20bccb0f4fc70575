"""Calling Kagent agents over A2A: the real client, and a dry run that only logs the request."""

from khook.agent._breaker import CircuitBreaker
from khook.agent._client import A2AClient
from khook.agent._dryrun import DryRunClient
from khook.agent._protocol import (
    A2AVersion,
    AgentClient,
    AgentError,
    AgentRequest,
    AgentResult,
    build_http_request,
)

__all__ = [
    "A2AClient",
    "A2AVersion",
    "AgentClient",
    "AgentError",
    "AgentRequest",
    "AgentResult",
    "CircuitBreaker",
    "DryRunClient",
    "build_http_request",
]
