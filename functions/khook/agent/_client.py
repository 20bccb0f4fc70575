from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import replace

import orjson

from khook.agent._identity import check_user_id_template
from khook.agent._protocol import (
    A2AVersion,
    AgentError,
    AgentRequest,
    AgentResult,
    HTTPRequest,
    agent_path,
    build_http_request,
    excerpt,
    identity_headers,
    in_conversation,
    parse_response,
    version_from_card,
)
from khook.agent._retry import Budget, backoff, retry_after
from khook.agent._transport import Origin, Transport
from khook.clock import Clock
from khook.core.hooks import AgentRef
from khook.logs import log
from khook.settings import DEFAULT_USER_ID, MIB

logger = logging.getLogger("khook.agent")

CARD_PATHS = (".well-known/agent-card.json", ".well-known/agent.json")
CARD_TTL_SECONDS = 600.0
CARD_FAILURE_TTL_SECONDS = 60.0
CARD_TIMEOUT_SECONDS = 5.0  # reading the card, inside the call's own deadline
MAX_RETRY_AFTER_SECONDS = 300.0
MAX_CONNECTIONS = 64


class A2AClient:
    """Calls Kagent over A2A. One instance per process, shared by every thread: a bounded pool
    of kept-alive connections. Each call has one total deadline (``timeout``, retries
    included) that nothing the agent does can stretch; bounded retries with exponential
    backoff and jitter on connection errors, timeouts, 408, 429 and 5xx, honouring
    Retry-After (capped at ``max_retry_after``); answers over ``max_response_bytes`` are
    refused while reading."""

    def __init__(
        self,
        base_url: str,
        *,
        clock: Clock,
        version: A2AVersion = A2AVersion.V0_3,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        user_id: str = DEFAULT_USER_ID,
        token: Callable[[], str | None] = lambda: None,
        blocking: bool = False,
        max_response_bytes: int = MIB,
        max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
        max_connections: int = MAX_CONNECTIONS,
        rng: random.Random | None = None,
    ) -> None:
        check_user_id_template(user_id)  # a bad template fails here, at start-up
        self.base_url = base_url
        self.version = version
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.max_response_bytes = max_response_bytes
        self.max_retry_after = max_retry_after
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._user_id = user_id
        self._token = token
        self._blocking = blocking
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._http = Transport(Origin.parse(base_url), max_connections=max(1, max_connections))
        self._cards: dict[str, tuple[A2AVersion, float]] = {}
        self._cards_lock = threading.Lock()

    def http_request(self, request: AgentRequest) -> HTTPRequest:
        return self._build(request, Budget(self._clock, self.timeout))

    def send(self, request: AgentRequest) -> AgentResult:
        """Send one message within ``timeout``. A follow-up that names a task the agent says
        has ended is sent again at once, within the same deadline, without the task id: a
        new task in the same context (``AgentResult.resent_as_new_task``)."""
        budget = Budget(self._clock, self.timeout)
        try:
            return in_conversation(request, self._deliver(request, budget))
        except AgentError as exc:
            if not (exc.task_ended and request.task_id):
                raise
            refused = exc
        log(
            logger,
            logging.INFO,
            "the agent's task has ended; sending the message as a new task in its context",
            agent=request.agent.id,
            task=request.task_id,
            context=request.context_id,
        )
        if budget.left() <= 0:
            raise refused.again(
                f"{refused}; no time left within {self.timeout:g}s to send it as a new task",
                retryable=True,
            ) from refused
        again = replace(request, task_id="")
        try:
            result = self._deliver(again, budget)
        except AgentError as exc:
            raise exc.again(
                f"{exc} (sent as a new task: task {request.task_id} had ended)"
            ) from exc
        return replace(in_conversation(again, result), resent_as_new_task=True)

    def _deliver(self, request: AgentRequest, budget: Budget) -> AgentResult:
        """The message, retried on retryable failures while ``budget`` lasts."""
        http_request = self._build(request, budget)
        path = agent_path(request.agent)
        body = orjson.dumps(http_request.body)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._attempt(path, http_request, body, budget, request.followup)
            except AgentError as exc:
                if not exc.retryable:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self._delay(attempt)
                if attempt >= self.attempts or delay >= budget.left():
                    raise exc.again(
                        f"{exc} (gave up after {attempt} attempt(s) within {self.timeout:g}s)"
                    ) from exc
                log(
                    logger,
                    logging.WARNING,
                    "agent call failed, retrying",
                    agent=request.agent.id,
                    attempt=attempt,
                    delay=round(delay, 3),
                    error=str(exc),
                )
                self._clock.sleep(delay)

    def _build(self, request: AgentRequest, budget: Budget) -> HTTPRequest:
        path = agent_path(request.agent)  # an invalid agent is refused before any I/O
        return build_http_request(
            self.base_url,
            request,
            self._version_for(request, path, budget),
            user_id=self._user_id,
            token=self._token(),
            blocking=self._blocking,
        )

    def _attempt(
        self, path: str, request: HTTPRequest, body: bytes, budget: Budget, followup: bool
    ) -> AgentResult:
        answer = self._http.request(
            "POST",
            path,
            request.headers,
            body,
            until=budget.until(),
            limit=self.max_response_bytes,
        )
        where = f"POST {self._http.origin.url(path)}"
        status = answer.status
        if status in (408, 429) or status >= 500:
            raise AgentError(
                f"{where}: agent answered HTTP {status}",
                retryable=True,
                kind="http",
                status=status,
                retry_after=retry_after(
                    answer.headers.get("retry-after"), self._clock.now(), self.max_retry_after
                ),
            )
        if not 200 <= status < 300:
            text = excerpt(answer.body.decode("utf-8", "replace"))
            raise AgentError(
                f"{where}: agent answered HTTP {status}: {text}",
                retryable=False,
                kind="http",
                status=status,
            )
        if not answer.complete:
            # Not retried: a 2xx means the agent most likely accepted the message, and it would
            # answer a retry the same way. The incident is released, not lost.
            raise AgentError(
                f"{where}: the agent's answer is over {self.max_response_bytes} bytes; refused",
                retryable=False,
            )
        try:
            payload = orjson.loads(answer.body)
        except orjson.JSONDecodeError as exc:  # also JSON nested over 1024 deep
            raise AgentError(f"{where}: the agent's answer is not JSON", retryable=False) from exc
        try:
            return parse_response(payload, followup=followup)
        except AgentError as exc:
            raise exc.again(f"{where}: {exc}") from exc

    def _delay(self, attempt: int) -> float:
        return backoff(attempt, self._backoff, self._max_backoff, self._rng)

    def spoken_version(self, agent: AgentRef) -> str:
        """The A2A version this client speaks to ``agent`` now, without I/O: the configured
        one, or with ``auto`` what its card said (``auto`` while it has not been read)."""
        if self.version is not A2AVersion.AUTO:
            return self.version.value
        try:
            path = agent_path(agent)
        except AgentError:
            return self.version.value
        with self._cards_lock:
            cached = self._cards.get(path)
        return cached[0].value if cached else self.version.value

    def _version_for(self, request: AgentRequest, path: str, budget: Budget) -> A2AVersion:
        if self.version is not A2AVersion.AUTO:
            return self.version
        now = self._clock.monotonic()
        with self._cards_lock:
            cached = self._cards.get(path)
            if cached and cached[1] > now:
                return cached[0]
        version, ttl = self._read_card(request, path, budget)
        with self._cards_lock:
            self._cards[path] = (version, now + ttl)
        return version

    def _read_card(
        self, request: AgentRequest, path: str, budget: Budget
    ) -> tuple[A2AVersion, float]:
        headers = identity_headers(request, user_id=self._user_id, token=self._token())
        headers["Accept"] = "application/json"
        for card in CARD_PATHS:
            try:
                answer = self._http.request(
                    "GET",
                    path + card,
                    headers,
                    None,
                    until=budget.until(CARD_TIMEOUT_SECONDS),
                    limit=self.max_response_bytes,
                )
            except AgentError as exc:
                log(logger, logging.INFO, "agent card not read", error=str(exc))
                continue
            if answer.status != 200:
                continue
            if not answer.complete:
                log(
                    logger,
                    logging.WARNING,
                    "agent card too large; ignored",
                    url=self._http.origin.url(path + card),
                    limit=self.max_response_bytes,
                )
                continue
            try:
                return version_from_card(orjson.loads(answer.body)), CARD_TTL_SECONDS
            except orjson.JSONDecodeError:
                continue
        log(
            logger,
            logging.WARNING,
            "agent card unreadable; speaking A2A 0.3",
            url=self._http.origin.url(path),
        )
        return A2AVersion.V0_3, CARD_FAILURE_TTL_SECONDS

    def close(self) -> None:
        self._http.close()
