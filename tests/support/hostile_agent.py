"""Agents no HTTP server makes on purpose, for the agent client's deadline tests.

:class:`HostileAgent` is a bare TCP server for trickled status lines and headers, an answer
that never comes, a connection dropped mid-answer. :func:`unanswered_port` makes a port whose
connects hang (a full accept queue), :func:`deaf_port` one that never reads what it is sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class HostileAgent:
    """A bare TCP server that reads each request's head and then misbehaves:

    - ``stall``: never answers;
    - ``trickle-head``: sends the status line and headers one byte every ``interval``;
    - ``trickle-body``: sends the head at once, then a JSON body one byte every ``interval``;
    - ``hang-up``: sends the head and the start of the body, then closes the connection.

    ``lasted`` has, for each connection, how long it stayed open until the client hung up."""

    BODY = b'{"jsonrpc":"2.0","id":"1","result":{"kind":"task","id":"t","contextId":"c",'
    BODY += b'"status":{"state":"submitted"}}}'

    def __init__(self, mode: str, interval: float = 0.5) -> None:
        assert mode in ("stall", "trickle-head", "trickle-body", "hang-up")
        self.mode = mode
        self.interval = interval
        self.lasted: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> HostileAgent:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._server.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            if self.mode == "hang-up":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.BODY))
                conn.sendall(self.BODY[:10])
                out = b""
            elif self.mode == "stall":
                out = b""
            elif self.mode == "trickle-head":
                out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                out += b"X-Slow: " + b"x" * 10_000 + b"\r\n\r\n"
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(self.BODY)
                )
                out = self.BODY
            if self.mode != "hang-up":
                self._dribble(conn, out)
        with self._lock:
            self.lasted.append(time.monotonic() - started)

    def _dribble(self, conn: socket.socket, out: bytes) -> None:
        """Send ``out`` a byte per interval (then nothing) until the client hangs up."""
        conn.setblocking(False)
        sent = 0
        while not self._stop.wait(self.interval):
            try:
                if conn.recv(65536) == b"":
                    return  # the client hung up
            except BlockingIOError:
                pass
            except OSError:
                return
            if sent < len(out):
                try:
                    conn.send(out[sent : sent + 1])
                except OSError:
                    return
                sent += 1


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A local port whose connects hang: its accept queue (backlog 0) is full, so the kernel
    drops further SYNs and the client waits, as with a host that does not answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        yield port
    finally:
        filler.close()
        server.close()


@contextlib.contextmanager
def deaf_port() -> Iterator[int]:
    """A local port that takes connections (the kernel queues them) but never reads: a large
    request fills the socket buffers and the sender's writes stall."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
