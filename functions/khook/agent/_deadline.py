"""One deadline for a whole agent call, enforced on every blocking socket operation.

httpcore's timeouts are per operation: a read timeout starts again with every byte, so an agent
that trickles one byte a second is read for ever. Here the call's deadline (an instant on
``time.monotonic()``) sits in a context variable, and every operation on the call's thread cuts
its timeout to what is left of it, computed afresh right before each system call: connect (per
address), TLS handshake (one call, which CPython bounds as a whole), every ``recv`` and every
``send``. The kernel thus ends the call at the deadline whatever the agent does; no thread is
cancelled and no socket is shut from outside. Name resolution, which no socket timeout covers,
runs on a helper thread the caller stops waiting for at the deadline.

Socket timeouts run on real time, so this module reads ``time.monotonic()`` itself: the
injected :class:`khook.clock.Clock` cannot make a socket wait.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore

_DEADLINE: ContextVar[float | None] = ContextVar("khook_agent_deadline", default=None)


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Run the block's socket operations under the deadline ``at`` (``time.monotonic()``)."""
    token = _DEADLINE.set(at)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of the deadline; ``error`` once nothing is left."""
    at = _DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the agent call's deadline passed")
    return left if timeout is None else min(timeout, left)


def _resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of ``host``; waits at most ``timeout`` for the system resolver."""
    with contextlib.suppress(ValueError):
        return [str(ipaddress.ip_address(host))]
    found: list[Any] = []
    failure: list[OSError] = []

    def lookup() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failure.append(exc)

    # A daemon thread: if the resolver hangs, the call gives up at its deadline and the
    # thread ends when the resolver does (its own timeouts, resolv.conf).
    thread = threading.Thread(target=lookup, name="khook-resolve", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise httpcore.ConnectTimeout(f"resolving {host} took too long")
    if failure:
        raise httpcore.ConnectError(f"cannot resolve {host}: {failure[0]}")
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if not addresses:
        raise httpcore.ConnectError(f"{host} has no address")
    return addresses


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's synchronous backend, every operation cut to the call's deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        error: Exception | None = None
        for address in _resolve(host, port, _left(timeout, httpcore.ConnectTimeout)):
            try:
                stream = self._inner.connect_tcp(
                    address,
                    port,
                    _left(timeout, httpcore.ConnectTimeout),
                    local_address,
                    socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        assert error is not None  # _resolve returns at least one address
        raise error

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # One recv (or one TLS record read): bounded by what is left of the deadline.
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # httpcore loops over send() with one fixed timeout, which a peer opening its window a
        # byte at a time could stretch; here each send() gets what is left.
        sock: socket.socket = self._inner.get_extra_info("socket")
        view = memoryview(buffer)
        try:
            while view:
                sock.settimeout(_left(timeout, httpcore.WriteTimeout))
                sent = sock.send(view)
                view = view[sent:]
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc)) from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
