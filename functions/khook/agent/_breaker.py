from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from khook import metrics
from khook.agent._protocol import AgentClient, AgentError, AgentRequest, AgentResult
from khook.clock import Clock
from khook.logs import log

logger = logging.getLogger("khook.agent")


@dataclass
class _Circuit:
    failures: int = 0  # retryable failures in a row while closed
    open_until: float | None = None  # None: closed; else open until then, half-open after
    trial: bool = False  # half-open: the one trial call is in flight


class CircuitBreaker:
    """Stops calling an agent that keeps failing, per agent.

    - Closed: calls go through; ``threshold`` retryable failures in a row open the circuit.
    - Open: for ``open_for`` seconds every call fails at once (retryable, ``retry_after`` = the
      rest of the pause), so the event is redelivered later and the agent gets a rest.
    - Half-open (the pause is over): exactly one caller makes a trial call; every other caller
      fails at once (retryable, ``retry_after`` = ``trial_wait``) until the trial's result. A
      trial that succeeds, or that the agent answers with a non-retryable error (it is up),
      closes the circuit; a retryable failure opens it again for the full pause.

    A call that started while the circuit was closed and succeeds late also closes it (the agent
    works); one that fails late does not count (the trial decides)."""

    def __init__(
        self,
        inner: AgentClient,
        clock: Clock,
        *,
        threshold: int = 5,
        open_for: float = 30.0,
        trial_wait: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner = inner
        self._clock = clock
        self._threshold = max(1, threshold)
        self._open_for = open_for
        self._trial_wait = trial_wait
        self.on_change = on_change
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def send(self, request: AgentRequest) -> AgentResult:
        agent = request.agent.id
        trial = self._admit(agent)
        try:
            result = self.inner.send(request)
        except AgentError as exc:
            self._settle(agent, trial=trial, failed=exc.retryable)
            raise
        except BaseException:
            if trial:  # no verdict: let the next caller try
                with self._lock:
                    if circuit := self._circuits.get(agent):
                        circuit.trial = False
            raise
        self._settle(agent, trial=trial, failed=False)
        return result

    def _admit(self, agent: str) -> bool:
        """Whether this call is the half-open trial; raises if the call may not go through."""
        now = self._clock.monotonic()
        with self._lock:
            circuit = self._circuits.get(agent)
            if circuit is None or circuit.open_until is None:
                return False
            if circuit.open_until > now:
                wait = circuit.open_until - now
                raise AgentError(
                    f"agent {agent} is failing; calls paused for {wait:.0f}s",
                    retryable=True,
                    retry_after=wait,
                    kind="circuit-open",
                )
            if circuit.trial:
                raise AgentError(
                    f"agent {agent} is failing; a trial call is under way",
                    retryable=True,
                    retry_after=self._trial_wait,
                    kind="circuit-open",
                )
            circuit.trial = True
            # Under the lock, like every change of the gauge: in the order the changes happen.
            metrics.circuit(agent, metrics.HALF_OPEN)
        return True

    def _settle(self, agent: str, *, trial: bool, failed: bool) -> None:
        changed = ""
        reopened = False  # a trial call failed: open again for the full pause
        with self._lock:
            if not failed:
                # Only failing agents are kept: the table is as small as the trouble.
                gone = self._circuits.pop(agent, None)
                changed = "closed" if gone is not None and gone.open_until is not None else ""
            else:
                circuit = self._circuits.setdefault(agent, _Circuit())
                if trial:
                    circuit.trial = False
                    changed = "open" if circuit.open_until is None else ""  # a late success
                    circuit.open_until = self._clock.monotonic() + self._open_for
                    reopened = True
                elif circuit.open_until is None:
                    circuit.failures += 1
                    if circuit.failures >= self._threshold:
                        circuit.open_until = self._clock.monotonic() + self._open_for
                        changed = "open"
            if changed == "open" or reopened:
                metrics.circuit(agent, metrics.OPEN, opened=True)
            elif changed == "closed":
                metrics.circuit(agent, metrics.CLOSED)
        if changed == "open":
            log(logger, logging.WARNING, "agent circuit open", agent=agent, seconds=self._open_for)
            self.on_change()
        elif changed == "closed":
            log(logger, logging.INFO, "agent circuit closed", agent=agent)
            self.on_change()
        elif trial and failed:
            log(logger, logging.WARNING, "agent trial call failed", agent=agent)

    def unavailable(self) -> set[str]:
        """Agents whose circuit is open (or half-open, awaiting a successful trial call)."""
        with self._lock:
            return {a for a, c in self._circuits.items() if c.open_until is not None}

    def close(self) -> None:
        self.inner.close()
