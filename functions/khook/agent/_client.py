from __future__ import annotations

import email.utils
import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC

import httpx

from khook.agent._protocol import (
    A2AVersion,
    AgentError,
    AgentRequest,
    AgentResult,
    HTTPRequest,
    agent_endpoint,
    build_http_request,
    parse_response,
    version_from_card,
)
from khook.clock import Clock
from khook.logs import log

logger = logging.getLogger("khook.agent")

CARD_PATHS = (".well-known/agent-card.json", ".well-known/agent.json")
CARD_TTL_SECONDS = 600.0
CARD_FAILURE_TTL_SECONDS = 60.0


class A2AClient:
    """Calls Kagent over A2A with httpx: bounded retries with exponential backoff and jitter on
    connection errors, timeouts, 408, 429 and 5xx (honouring Retry-After), all inside one
    deadline per call. ``transport`` is the httpx seam tests may use; production uses TCP."""

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
        user_id: str = "admin@kagent.dev",
        token: Callable[[], str | None] = lambda: None,
        blocking: bool = False,
        transport: httpx.BaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url
        self.version = version
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._user_id = user_id
        self._token = token
        self._blocking = blocking
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._http = httpx.Client(transport=transport, follow_redirects=False)
        self._cards: dict[str, tuple[A2AVersion, float]] = {}
        self._cards_lock = threading.Lock()

    def http_request(self, request: AgentRequest) -> HTTPRequest:
        return build_http_request(
            self.base_url,
            request,
            self._version_for(request),
            user_id=self._user_id,
            token=self._token(),
            blocking=self._blocking,
        )

    def send(self, request: AgentRequest) -> AgentResult:
        deadline = self._clock.monotonic() + self.timeout
        http_request = self.http_request(request)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                raise AgentError(f"no answer within {self.timeout:g}s", retryable=True)
            try:
                return self._attempt(http_request, remaining)
            except AgentError as exc:
                if not exc.retryable or attempt >= self.attempts:
                    raise
                delay = exc.retry_after if exc.retry_after is not None else self._delay(attempt)
                if self._clock.monotonic() + delay >= deadline:
                    raise
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

    def _attempt(self, request: HTTPRequest, remaining: float) -> AgentResult:
        try:
            response = self._http.post(
                request.url,
                json=dict(request.body),
                headers=dict(request.headers),
                timeout=httpx.Timeout(remaining),
            )
        except httpx.TimeoutException as exc:
            raise AgentError(f"agent call timed out: {exc}", retryable=True) from exc
        except httpx.TransportError as exc:
            raise AgentError(f"cannot reach the agent: {exc}", retryable=True) from exc
        status = response.status_code
        if status in (408, 429) or status >= 500:
            raise AgentError(
                f"agent answered HTTP {status}",
                retryable=True,
                retry_after=_retry_after(response.headers.get("Retry-After"), self._clock),
            )
        if status >= 400:
            raise AgentError(
                f"agent answered HTTP {status}: {response.text[:200]}", retryable=False
            )
        try:
            payload = response.json()
        except ValueError as exc:
            raise AgentError("agent's answer is not JSON", retryable=False) from exc
        return parse_response(payload)

    def _delay(self, attempt: int) -> float:
        ceiling = min(self._max_backoff, self._backoff * 2.0 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _version_for(self, request: AgentRequest) -> A2AVersion:
        if self.version is not A2AVersion.AUTO:
            return self.version
        endpoint = agent_endpoint(self.base_url, request.agent)
        now = self._clock.monotonic()
        with self._cards_lock:
            cached = self._cards.get(endpoint)
            if cached and cached[1] > now:
                return cached[0]
        version, ttl = self._read_card(endpoint)
        with self._cards_lock:
            self._cards[endpoint] = (version, now + ttl)
        return version

    def _read_card(self, endpoint: str) -> tuple[A2AVersion, float]:
        headers = {"X-User-Id": self._user_id} if self._user_id else {}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for path in CARD_PATHS:
            try:
                response = self._http.get(endpoint + path, headers=headers, timeout=5.0)
                if response.status_code == 200:
                    return version_from_card(response.json()), CARD_TTL_SECONDS
            except (httpx.HTTPError, ValueError):
                continue
        log(logger, logging.WARNING, "agent card unreadable; speaking A2A 0.3", url=endpoint)
        return A2AVersion.V0_3, CARD_FAILURE_TTL_SECONDS

    def close(self) -> None:
        self._http.close()


def _retry_after(value: str | None, clock: Clock) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())
