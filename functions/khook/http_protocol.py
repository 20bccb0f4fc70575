"""The HTTP/1.1 protocol khook's workers serve: uvicorn's httptools protocol, with bounds on
what a client may cost before it has sent a whole request.

httptools (llhttp, Node's parser, in C) rather than h11 (pure Python), which uvicorn picks
when httptools is not installed: under `make bench`'s load h11 took about 80 µs of every
request, more than the bare function's whole work; with httptools the same stack serves
about 1.7 times the requests. uvicorn's httptools protocol bounds neither the request line
and headers nor the time to send them; this one does:

- the request line and headers together: at most ``HEAD_LIMIT`` bytes, answered 400 and the
  connection closed. A head is measured twice: as it arrives, the bytes received since the
  previous request ended (a head still incomplete past the limit is refused at the first read
  past it, so at most one read, 256 KiB, is ever held), and once complete, exactly (as
  sent, for a head written the usual way: one space after each colon, none at a line's end);
- the time to send them: ``HEAD_TIMEOUT`` seconds from the connection (or from the end of the
  previous response on a kept-alive connection), after which the connection is closed. A
  client that sends one header line and stops holds a socket for that long, never a thread.

The body is read by the function itself, within ``KHOOK_REQUEST_TIMEOUT`` and
``KHOOK_MAX_BODY_BYTES`` (khook.body); uvicorn stops reading a connection whose unread body
passes 64 KiB until the function reads it.
"""

from __future__ import annotations

import asyncio
from itertools import chain

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 10.0
# Of a head, what the parser does not hand over: the request line's two spaces, its version
# ("HTTP/1.1") and end, and the blank line that ends the head; of each header line, the
# colon, one space and the line's end.
_HEAD_EXTRA = len("  HTTP/1.1\r\n\r\n")
_HEADER_EXTRA = len(": \r\n")


class HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops and uvicorn answers 400 and closes."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline for each request's line
    and headers.

    The deadline moves with every request on a kept-alive connection, so it is a time, not a
    timer: one timer per connection, which, when it fires early (the deadline moved on since),
    waits for the rest. A timer armed and cancelled for every request cost the event loop a
    few microseconds each, on every event."""

    head_timeout = HEAD_TIMEOUT
    head_limit = HEAD_LIMIT
    _head_due: float | None = None  # loop time by which the head must have come; None: not now
    _head_timer: asyncio.TimerHandle | None = None
    _head_bytes: int | None = 0  # received towards the head being read; None: not reading one

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after all of it was parsed: the head alone is over the limit.
        if self._head_bytes is not None and self._head_bytes > self.head_limit:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        headers = self.headers
        size = len(self.parser.get_method()) + len(self.url) + _HEAD_EXTRA
        size += _HEADER_EXTRA * len(headers)
        if size + sum(map(len, chain.from_iterable(headers))) > self.head_limit:
            raise HeadTooLarge  # uvicorn answers 400 ("Invalid HTTP request received.")
        self._head_bytes = None
        self._head_due = None  # a request's head arrived: the app takes over
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what comes next is the next request's head
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_due = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what it cannot parse (and to a head over the limit), written
        at once and the connection closed. When what cannot be parsed comes after a request
        that has all arrived and is still being answered (pipelined), that answer would be cut
        off: it is finished first, and the connection closed after it, reading nothing more.
        (A request whose own body cannot be parsed gets the 400.)"""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            cycle.keep_alive = False
            self.flow.pause_reading()
            self._head_bytes = None
            return
        super().send_400_response(msg)

    def _refuse_head(self) -> None:
        self._head_bytes = None
        if not self.transport.is_closing():
            self.send_400_response(f"Request line and headers exceed {self.head_limit} bytes.")

    def _arm_head_deadline(self) -> None:
        self._head_due = self.loop.time() + self.head_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_due, self._head_check)

    def _head_check(self) -> None:
        self._head_timer = None
        due = self._head_due
        if due is None:
            return  # a request is being served; the next response arms it again
        if self.loop.time() < due:  # moved on since this timer was set: wait for the rest
            self._head_timer = self.loop.call_at(due, self._head_check)
            return
        self._head_due = None
        self._head_too_slow()

    def _head_too_slow(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served; its body has its own deadline
        if not self.transport.is_closing():
            self.transport.close()
