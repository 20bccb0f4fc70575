"""Agent calls, measured: how many, how long, and why they failed."""

from __future__ import annotations

import time
from collections.abc import Callable

from khook import metrics
from khook.agent._breaker import CircuitBreaker
from khook.agent._client import A2AClient
from khook.agent._dryrun import DryRunClient
from khook.agent._protocol import AgentClient, AgentError, AgentRequest, AgentResult
from khook.core.hooks import AgentRef

# Failures before anything was sent: the breaker's refusal, and what khook will not send.
_NOT_SENT = frozenset(("circuit-open", "refused"))


def version_label(client: AgentClient) -> Callable[[AgentRef], str]:
    """The ``a2a_version`` label of calls to an agent: the version spoken to it (with
    ``auto``, what its card said; ``auto`` until it was read), ``dry-run`` when nothing is
    sent, ``unknown`` for a client of a test's own."""
    if isinstance(client, CircuitBreaker):
        return version_label(client.inner)
    if isinstance(client, A2AClient):
        return client.spoken_version
    if isinstance(client, DryRunClient):
        return lambda _agent: "dry-run"
    return lambda _agent: "unknown"


def answers_at_once(client: AgentClient) -> bool:
    """Whether ``client`` answers without I/O or waiting (a dry run, which only writes its
    line): then a new incident's call may be made on the event loop (khook.sessions)."""
    if isinstance(client, (MeteredAgent, CircuitBreaker)):
        return answers_at_once(client.inner)
    return isinstance(client, DryRunClient)


class MeteredAgent:
    """An AgentClient (around the circuit breaker) that counts every call: those that were
    sent (kagent_hook_api_calls_total, their durations), and every failure by its kind, those
    that sent nothing included (the breaker's ``circuit-open``, khook's ``refused``)."""

    def __init__(self, inner: AgentClient, version: Callable[[AgentRef], str] | None = None):
        self.inner = inner
        self._version = version or version_label(inner)

    def send(self, request: AgentRequest) -> AgentResult:
        agent = request.agent
        started = time.perf_counter()
        try:
            result = self.inner.send(request)
        except AgentError as exc:
            version = self._version(agent)
            if exc.kind not in _NOT_SENT:
                seconds = time.perf_counter() - started
                metrics.agent_call(agent.namespace, agent.name, version, seconds, ok=False)
            metrics.agent_error(agent.namespace, agent.name, exc.kind, version)
            raise
        seconds = time.perf_counter() - started
        metrics.agent_call(agent.namespace, agent.name, self._version(agent), seconds, ok=True)
        return result

    def close(self) -> None:
        self.inner.close()
