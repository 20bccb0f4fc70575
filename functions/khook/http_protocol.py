"""The HTTP/1.1 protocol khook's workers serve: uvicorn's httptools protocol, with bounds on
what a client may cost before the function has a request to read.

httptools (llhttp, Node's parser, in C) rather than h11 (pure Python), which uvicorn picks
when httptools is not installed: under `make bench`'s load h11 took about 80 µs of every
request, more than the bare function's whole work; with httptools the same stack serves
about 1.7 times the requests. uvicorn's httptools protocol bounds neither the request line
and headers nor the time to send them, nor a chunked body's trailers, nor how many requests a
client pipelines behind one being answered; this one does:

- the request line and headers together: at most ``HEAD_LIMIT`` bytes, answered 400 and the
  connection closed. A complete head is measured as the parser reads it (the request line's
  parts and each header line, as ``name: value`` and its end; other spaces around a header's
  value are not counted, so on the wire a head can be larger, by at most what one read holds,
  256 KiB), the same however the reads fall; an unfinished one by the
  bytes received since the request before it ended (reads are parsed in slices of
  ``HEAD_LIMIT`` bytes, and the rest of the slice where that request ended is not counted),
  so it is refused by the time twice the limit has come;
- a chunked body's trailers: at most ``HEAD_LIMIT`` bytes too, counted the same two ways, and
  dropped (ASGI gives an application no request trailers);
- pipelined requests: at most ``PIPELINE_LIMIT`` wait behind the one being answered, and the
  connection is not read while any wait (uvicorn would read on after each answer and at each
  ``receive()``); one more is refused;
- the time to send a head: ``HEAD_TIMEOUT`` seconds from the connection (or from the end of
  the previous response on a kept-alive connection), after which the connection is closed. A
  client that sends one header line and stops holds a socket for that long, never a thread.

A refusal never cuts off an answer owed to an earlier request on the connection: those
answers are made, then the connection is closed. The body is read by the function itself,
within ``KHOOK_REQUEST_TIMEOUT`` and ``KHOOK_MAX_BODY_BYTES`` (khook.body); uvicorn stops
reading a connection whose unread body passes 64 KiB until the function reads it.
"""

from __future__ import annotations

import asyncio
from itertools import chain

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

HEAD_LIMIT = 16 * 1024
HEAD_TIMEOUT = 10.0
PIPELINE_LIMIT = 8  # requests waiting behind the one being answered, on one connection
# Of a head, what the parser does not hand over: the request line's two spaces, its version
# ("HTTP/1.1") and end, and the blank line that ends the head; of each header line, the
# colon, one space and the line's end.
_HEAD_EXTRA = len("  HTTP/1.1\r\n\r\n")
_HEADER_EXTRA = len(": \r\n")


class Refused(Exception):
    """Raised in a parser callback: httptools stops, and uvicorn asks for a 400
    (:meth:`GuardedHttpToolsProtocol.send_400_response` decides what is still answered)."""


class _Flow(FlowControl):
    """uvicorn's flow control of one connection, except that reading does not resume while
    requests wait their turn, or once the connection is refused: uvicorn resumes it after
    every answer and at every ``receive()``, so what waits would go on growing."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedHttpToolsProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def resume_reading(self) -> None:
        # Nothing waiting can need it: a request waits only once the one before has all come.
        # (Called after every answer and at every receive(), mostly with reading not paused.)
        if self.read_paused and not (self._protocol.pipeline or self._protocol._refused):
            FlowControl.resume_reading(self)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on a request's head, a chunked body's
    trailers and pipelined requests, and a deadline for each head.

    The deadline moves with every request on a kept-alive connection, so it is a time, not a
    timer: one timer per connection, which, when it fires early (the deadline moved on since),
    waits for the rest. A timer armed and cancelled for every request cost the event loop a
    few microseconds each, on every event.

    What it adds runs for every request, so it is kept to a few attribute checks: a head is
    measured header by header only when the bytes received since it began, plus a byte a
    header, do not already show it within the limit, and uvicorn's methods are called by name
    rather than through ``super()``, which makes an object for every call on Python 3.11.
    Counted with callgrind (a request over a socket pair, a trivial app): 38,000 instructions
    a request more than uvicorn's own protocol before, 17,000 now (of about 267,000 with the
    client's)."""

    head_timeout = HEAD_TIMEOUT
    head_limit = HEAD_LIMIT
    _head_due: float | None = None  # loop time by which the head must have come; None: not now
    _head_timer: asyncio.TimerHandle | None = None
    # Bytes received towards the head (or trailers) being read; None: not reading one (a body).
    _head_bytes: int | None = 0
    # A request ended in the slice being parsed: what of the slice follows it is not in
    # _head_bytes, so a head that begins there is measured itself (_measure_head).
    _ended_here = False
    _measure_head = False
    _past_head = False  # the message's head is complete: a header now is a trailer
    _trailer_bytes = 0
    _running: RequestResponseCycle | None = None  # the request being answered
    _refused = False  # the connection is refused: answers owed are made, nothing more is read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _Flow(transport, self)  # before any request: each is handed this one
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        if len(data) > self.head_limit:
            # Parsed in slices of the limit: where a head or trailers begin in the middle of
            # what is parsed at once, the rest of it is not counted, so at most one slice goes
            # uncounted.
            for start in range(0, len(data), self.head_limit):
                if self._refused or self.transport.is_closing():
                    return
                self.data_received(data[start : start + self.head_limit])
            return
        if self._refused:  # a refused connection parses nothing more
            return
        self._ended_here = False
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        HttpToolsProtocol.data_received(self, data)
        if self._head_bytes is not None and self._head_bytes >= self.head_limit:
            # Still unfinished after the limit's worth of bytes: over it.
            self.send_400_response(f"Request line and headers exceed {self.head_limit} bytes.")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._past_head:  # a trailer of a chunked body: counted, dropped
            self._trailer_bytes += len(name) + len(value) + _HEADER_EXTRA
            if self._trailer_bytes > self.head_limit:
                raise Refused
            return
        # uvicorn's (0.55) own, in line: a call more for each header of every request costs.
        name = name.lower()
        value = value.rstrip(b" \t")  # trailing whitespace is not the value's (RFC 9110 5.5)
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        counted = self._head_bytes
        headers = self.headers
        # Every byte received since this head began is in ``counted`` (and more: the body's,
        # in the same read), unless it began in a slice where a request ended. The measure
        # below takes each header line as ``name: value`` plus its end, a byte more than
        # ``name:value`` is on the wire: so it is at most ``counted`` plus a byte a header,
        # and a head within the limit by that bound would pass it. Else, or if the head began
        # mid-slice, it is measured. (Measuring it costs every request.)
        if self._measure_head or counted is None or counted + len(headers) > self.head_limit:
            size = len(self.parser.get_method()) + len(self.url) + _HEAD_EXTRA
            size += _HEADER_EXTRA * len(headers)
            if size + sum(map(len, chain.from_iterable(headers))) > self.head_limit:
                raise Refused
        waiting = self.cycle is not None and not self.cycle.response_complete
        if waiting and len(self.pipeline) >= PIPELINE_LIMIT:
            raise Refused
        self._head_bytes = None
        self._past_head = True
        self._trailer_bytes = 0
        self._head_due = None  # a request's head arrived: the app takes over
        HttpToolsProtocol.on_headers_complete(self)
        if not waiting:
            self._running = self.cycle  # started at once; else queued (self.pipeline)

    def on_message_begin(self) -> None:
        self._measure_head = self._ended_here
        HttpToolsProtocol.on_message_begin(self)

    def on_chunk_header(self) -> None:
        self._head_bytes = 0  # the last chunk's trailers follow a chunk header: counted

    def on_body(self, body: bytes) -> None:
        self._head_bytes = None  # body data: the function bounds it
        HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # what comes next is the next request's head
        self._ended_here = True
        self._past_head = False
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        waiting = self.pipeline[-1][0] if self.pipeline else None
        HttpToolsProtocol.on_response_complete(self)  # starts the next request waiting, if any
        if waiting is not None and not (self.pipeline and self.pipeline[-1][0] is waiting):
            self._running = waiting
        if not self.transport.is_closing():
            self._arm_head_deadline()  # the next request on this kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_due = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what it cannot parse, and khook's to what is over a limit: a
        400 at once and the connection closed, when nothing is owed to an earlier request.
        When an answer is owed (being made, or a request waits its turn), those answers are
        made first and the connection closed after the last, nothing more read; a waiting
        request whose own body is at fault is dropped. (A request whose own body is at fault
        while it is being answered gets the 400, cutting its answer short, as uvicorn does.)"""
        cycle = self.cycle
        if self._refused or self.transport.is_closing():
            return
        # Whether the latest request's body is still coming (at fault, then), as the parser
        # stands: uvicorn leaves a request answered early (a 413) with more_body set for good.
        in_body = self._past_head
        if cycle is None or (cycle.response_complete and not in_body):
            super().send_400_response(msg)  # nothing owed: the request at fault is told
            return
        if cycle.response_complete:  # answered before its body ended, at fault: just close
            self.transport.close()
            return
        if cycle is self._running and in_body:
            super().send_400_response(msg)
            return
        self._refused = True
        self._head_bytes = None
        last: RequestResponseCycle | None = cycle
        if in_body:  # waiting, and its own body is at fault: it never runs
            for item in self.pipeline:
                if item[0] is cycle:
                    self.pipeline.remove(item)
                    break
            last = self.pipeline[0][0] if self.pipeline else self._running
        if last is not None:
            last.keep_alive = False  # uvicorn closes the connection after its answer
        self.flow.pause_reading()

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
