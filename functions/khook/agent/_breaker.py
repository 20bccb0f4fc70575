from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from khook.agent._protocol import AgentClient, AgentError, AgentRequest, AgentResult
from khook.clock import Clock
from khook.logs import log

logger = logging.getLogger("khook.agent")


@dataclass
class _Circuit:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreaker:
    """Stops calling an agent that keeps failing: after ``threshold`` retryable failures in a
    row its circuit opens for ``open_for`` seconds and calls fail at once (retryable, so the
    event is redelivered later). Then one call is let through; success closes the circuit."""

    def __init__(
        self,
        inner: AgentClient,
        clock: Clock,
        *,
        threshold: int = 5,
        open_for: float = 30.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner = inner
        self._clock = clock
        self._threshold = threshold
        self._open_for = open_for
        self.on_change = on_change
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def send(self, request: AgentRequest) -> AgentResult:
        agent = request.agent.id
        now = self._clock.monotonic()
        with self._lock:
            circuit = self._circuits.setdefault(agent, _Circuit())
            if circuit.open_until > now:
                wait = circuit.open_until - now
                raise AgentError(
                    f"agent {agent} is failing; calls paused for {wait:.0f}s",
                    retryable=True,
                    retry_after=wait,
                )
        try:
            result = self.inner.send(request)
        except AgentError as exc:
            if exc.retryable:
                self._failed(agent)
            raise
        self._succeeded(agent)
        return result

    def _failed(self, agent: str) -> None:
        with self._lock:
            circuit = self._circuits.setdefault(agent, _Circuit())
            circuit.failures += 1
            opened = circuit.failures >= self._threshold
            if opened:
                circuit.open_until = self._clock.monotonic() + self._open_for
        if opened:
            log(logger, logging.WARNING, "agent circuit open", agent=agent, seconds=self._open_for)
            self.on_change()

    def _succeeded(self, agent: str) -> None:
        with self._lock:
            circuit = self._circuits.get(agent)
            was_open = circuit is not None and circuit.failures >= self._threshold
            self._circuits[agent] = _Circuit()
        if was_open:
            log(logger, logging.INFO, "agent circuit closed", agent=agent)
            self.on_change()

    def unavailable(self) -> set[str]:
        """Agents whose circuit is open (or half-open, awaiting a successful trial call)."""
        with self._lock:
            return {a for a, c in self._circuits.items() if c.failures >= self._threshold}

    def close(self) -> None:
        self.inner.close()
