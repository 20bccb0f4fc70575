"""The HTTP server around the function: uvicorn's h11 protocol with bounds on slow clients.

functions-framework serves an ASGI function with gunicorn and uvicorn workers. khook keeps
that stack and tightens what a client may cost before it has sent a whole request:

- the request line and headers together: at most ``HEAD_LIMIT`` bytes (h11 answers 400);
- the time to send them: ``HEAD_TIMEOUT`` seconds from the connection (or from the end of the
  previous response on a kept-alive connection), after which the connection is closed. A client
  that sends one header line and stops holds a socket for that long, never a thread;
- the body: read by the function itself, within ``KHOOK_REQUEST_TIMEOUT`` and
  ``KHOOK_MAX_BODY_BYTES``.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn_worker import UvicornWorker

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 10.0
KEEP_ALIVE = 5


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's line and headers."""

    head_timeout = HEAD_TIMEOUT
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's head arrived: the app takes over
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served; its body has its own deadline
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(head_timeout: float = HEAD_TIMEOUT) -> dict[str, Any]:
    """What uvicorn needs, the same under gunicorn (khook serve) and in tests."""
    protocol: type[GuardedH11Protocol] = GuardedH11Protocol
    if head_timeout != HEAD_TIMEOUT:

        class Protocol(GuardedH11Protocol):
            pass

        Protocol.head_timeout = head_timeout
        protocol = Protocol
    return {
        "http": protocol,
        "loop": "asyncio",
        "h11_max_incomplete_event_size": HEAD_LIMIT,
        "timeout_keep_alive": KEEP_ALIVE,
        "log_level": "warning",
        "access_log": False,
    }


class Worker(UvicornWorker):  # type: ignore[misc]
    """The gunicorn worker ``khook serve`` runs: uvicorn with the protocol above."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        k: v for k, v in uvicorn_options().items() if k not in ("log_level", "access_log")
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In-flight events may finish within gunicorn's graceful timeout after SIGTERM.
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout))
