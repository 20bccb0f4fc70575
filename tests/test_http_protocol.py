"""khook's HTTP protocol (khook.http_protocol): httptools, with the request line and headers
bounded to HEAD_LIMIT bytes however they arrive (in one write, in pieces, after a kept-alive
request, pipelined behind one), a chunked body's trailers bounded too, at most PIPELINE_LIMIT
requests waiting behind the one being answered, no answer owed cut off by a refusal, and
served by the workers of both commands.

uvicorn's own httptools protocol bounds none of these: these tests fail with it. The head
deadline is a minute here: a connection closed within the test was closed by a refusal."""

from __future__ import annotations

import socket
import types
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from khook.http_protocol import HEAD_LIMIT, PIPELINE_LIMIT, GuardedHttpToolsProtocol, _Flow
from khook.serving import uvicorn_options
from khook.settings import Settings
from tests.support.clock import FakeClock
from tests.support.events import HOOKS, apiserver_event, binary, pod
from tests.support.function import FunctionServer
from tests.support.process import Served, clean_env, functions_framework, khook_serve


@pytest.fixture(scope="module")
def server() -> Iterator[FunctionServer]:
    values = {"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True}
    with FunctionServer(Settings.coerce(values), FakeClock(), head_timeout=60.0) as fn:
        yield fn


def request(head_size: int, pad: str = "X-Pad") -> bytes:
    """A healthy Pod's CloudEvent (202) whose request line and headers are ``head_size``
    bytes exactly, the blank line included; the body after them."""
    headers, body = binary(apiserver_event(pod()))
    lines = [b"POST / HTTP/1.1", b"Host: khook"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items() if k.lower() != "content-length"]
    lines.append(f"Content-Length: {len(body)}".encode())
    head = b"\r\n".join(lines) + b"\r\n"
    padding = head_size - len(head) - len(f"{pad}: \r\n\r\n")
    assert padding >= 0, "the head without padding is larger than asked for"
    head += f"{pad}: ".encode() + b"p" * padding + b"\r\n\r\n"
    assert len(head) == head_size
    return head + body


def exchange(port: int, *pieces: bytes) -> list[int]:
    """Send ``pieces`` one write each on one connection; the statuses of the answers, in
    order, read until there is one for each request sent or the server closes (a refused
    head closes the connection), 5 s at most without a byte."""
    return talk(port, *pieces)[0]


def talk(port: int, *pieces: bytes) -> tuple[list[int], bool]:
    """:func:`exchange`, and whether the server closed the connection (rather than falling
    silent for 5 s)."""
    sent = b"".join(pieces)
    requests = sent.count(b"POST / HTTP/1.1")
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break  # closed while this was still sending: refused
        data = b""
        while len(statuses := _statuses(data)) < requests:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    return statuses, closed


def _statuses(data: bytes) -> list[int]:
    return [int(line.split(b" ")[1]) for line in data.split(b"\r\n") if line[:9] == b"HTTP/1.1 "]


def _ask(sock: socket.socket, data: bytes) -> list[int]:
    """Send ``data`` on a kept-alive connection; the statuses of what first comes back."""
    sock.sendall(data)
    answer = b""
    while not _statuses(answer):
        answer += sock.recv(65536)
    return _statuses(answer)


def _whole_answer(sock: socket.socket) -> bytes:
    """One answer, its body included (Content-Length): what follows it on the connection then
    starts a line of its own for :func:`_statuses` (a body read in a later recv() would be
    joined to the next status line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_the_server_serves_with_khooks_protocol() -> None:
    assert issubclass(uvicorn_options()["http"], GuardedHttpToolsProtocol)


def test_a_head_of_the_limit_is_served_and_one_byte_more_is_refused(
    server: FunctionServer,
) -> None:
    assert exchange(server.port, request(HEAD_LIMIT)) == [202]
    assert exchange(server.port, request(HEAD_LIMIT + 1)) == [400]


@pytest.mark.parametrize("piece", [1000, 4096, HEAD_LIMIT + 1])
def test_the_limit_holds_however_the_head_arrives(server: FunctionServer, piece: int) -> None:
    for size, status in ((HEAD_LIMIT, 202), (HEAD_LIMIT + 1, 400), (4 * HEAD_LIMIT, 400)):
        sent = request(size)
        pieces = [sent[i : i + piece] for i in range(0, len(sent), piece)]
        assert exchange(server.port, *pieces) == [status], (size, piece)


def _without_spaces(size: int) -> bytes:
    """:func:`request` of ``size`` bytes on the wire, its Host header written ``Host:khook``
    (the space after a colon is optional): measured as the parser reads it, a byte more."""
    head, _, body = request(size - 1).partition(b"\r\n\r\n")
    assert b"\r\nHost: khook\r\n" in head
    head = head.replace(b"\r\nHost: khook\r\n", b"\r\nHost:khook\r\n") + b"pp"
    assert len(head) + 4 == size
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("piece", [1, 1000, HEAD_LIMIT + 1])
def test_a_head_is_measured_the_same_however_it_arrives(server: FunctionServer, piece: int) -> None:
    """A header line is measured as ``name: value`` and its end, so one written without the
    space counts a byte more than it is on the wire: 16,383 bytes so written pass, 16,384 do
    not, in one write, in pieces, or behind another request (where the head is measured
    itself), never depending on where the reads fall."""
    for size, status in ((HEAD_LIMIT - 1, 202), (HEAD_LIMIT, 400)):
        sent = _without_spaces(size)
        pieces = [sent[i : i + piece] for i in range(0, len(sent), piece)]
        assert exchange(server.port, *pieces) == [status], (size, piece)
        # Behind another request's answer on the connection (its head counted from there)...
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            assert _ask(sock, request(600)) == [202]
            assert _ask(sock, sent) == [status], size
        # ...and behind it in the same write (measured itself): the first answered, then the
        # second's 400, or the connection closed if the second was waiting its turn.
        together = exchange(server.port, request(600) + sent)
        assert together == [202, 202] if status == 202 else together in ([202], [202, 400])


def test_an_unfinished_head_past_the_limit_is_refused_at_once(server: FunctionServer) -> None:
    """Answered 400 as soon as it passes the limit, not closed by the head deadline (which
    answers nothing)."""
    endless = b"POST / HTTP/1.1\r\nHost: khook\r\nX-Pad: " + b"p" * (HEAD_LIMIT + 1)
    assert exchange(server.port, endless) == [400]


def test_the_limit_holds_for_the_next_request_on_a_kept_alive_connection(
    server: FunctionServer,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for size, status in ((2000, 202), (HEAD_LIMIT, 202), (HEAD_LIMIT + 1, 400)):
            assert _ask(sock, request(size)) == [status]
        assert sock.recv(65536) == b"", "closed after the refusal"


def test_a_pipelined_head_over_the_limit_closes_the_connection_after_the_answer_before(
    server: FunctionServer,
) -> None:
    """Both requests in one write: the first is answered in full, then the connection is
    closed (a 400 at once would cut the first answer off)."""
    assert exchange(server.port, request(2000) + request(HEAD_LIMIT)) == [202, 202]
    assert exchange(server.port, request(2000) + request(HEAD_LIMIT + 1)) == [202]
    assert exchange(server.port, request(2000) + b"NOT HTTP\r\n\r\n") == [202]


def chunked(trailers: bytes, body: bytes = b"{}") -> bytes:
    """A CloudEvent (a healthy Pod's) with a chunked body and ``trailers`` after it."""
    headers, data = binary(apiserver_event(pod()))
    lines = [b"POST / HTTP/1.1", b"Host: khook", b"Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}".encode() for k, v in headers.items() if k.lower() != "content-length"]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return head + f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + trailers


def test_trailers_are_bounded_as_a_head_is(server: FunctionServer) -> None:
    assert exchange(server.port, chunked(b"X-Checksum: abc\r\n\r\n")) == [202]
    big = b"X-Pad: " + b"p" * (HEAD_LIMIT + 1) + b"\r\n\r\n"
    assert exchange(server.port, chunked(big)) == [400]
    many = b"".join(b"X-T%d: v\r\n" % i for i in range(HEAD_LIMIT // 8)) + b"\r\n"
    assert exchange(server.port, chunked(many)) == [400]
    # An endless trailer, in reads: refused once past the limit, not held till a deadline.
    assert exchange(server.port, chunked(b"X-Pad: "), *[b"p" * 4096] * 16) == [400]
    assert exchange(server.port, chunked(b"X-Pad: " + b"p" * (4 * HEAD_LIMIT))) == [400]


def test_pipelined_requests_wait_in_a_bounded_queue(server: FunctionServer) -> None:
    """One being answered and PIPELINE_LIMIT waiting are answered; the next is refused, and
    the connection closed after the last answer owed (uvicorn queued all it could read)."""
    statuses, closed = talk(server.port, request(2000) * (PIPELINE_LIMIT + 10))
    assert (statuses, closed) == ([202] * (PIPELINE_LIMIT + 1), True)
    statuses, closed = talk(server.port, request(2000) * (PIPELINE_LIMIT + 1))
    assert statuses == [202] * (PIPELINE_LIMIT + 1)


def test_a_waiting_requests_bad_body_does_not_answer_the_one_before(
    server: FunctionServer,
) -> None:
    """A, then B whose chunked body cannot be parsed, in one write: A's 202 is A's answer and
    B is never run (a 400 at once would have gone out as A's answer)."""
    before = server.handled
    bad = chunked(b"").replace(b"\r\n0\r\n", b"\r\nZZZ\r\n")
    statuses, closed = talk(server.port, request(2000) + bad)
    assert (statuses, closed) == ([202], True)
    assert server.handled - before == 1


def test_an_unfinished_head_behind_a_request_in_the_same_write_is_refused_at_once(
    server: FunctionServer,
) -> None:
    """The next head's bytes that came in the read where the previous request ended count."""
    unfinished = b"POST / HTTP/1.1\r\nHost: khook\r\nX-Pad: " + b"p" * (4 * HEAD_LIMIT)
    assert talk(server.port, request(2000) + unfinished) == ([202], True)


def test_a_request_answered_before_its_body_ended_does_not_take_the_next_ones_400(
    server: FunctionServer,
) -> None:
    """A body declared over KHOOK_MAX_BODY_BYTES is answered 413 at once and the connection
    kept; its body is then read and dropped; what follows it that cannot be parsed is the new
    request's fault, and told so (uvicorn leaves the first request's more_body set)."""
    headers, _ = binary(apiserver_event(pod()))
    declared = 2 * 1024 * 1024
    lines = [b"POST / HTTP/1.1", b"Host: khook", b"Content-Length: %d" % declared]
    lines += [f"{k}: {v}".encode() for k, v in headers.items() if k.lower() != "content-length"]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        answer = _whole_answer(sock)
        assert _statuses(answer) == [413] and b"connection: close" not in answer.lower()
        sock.sendall(b"x" * declared + b"NOT HTTP\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    assert _statuses(rest) == [400]


class _Transport:
    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def test_reading_does_not_resume_while_requests_wait_or_once_refused() -> None:
    """uvicorn resumes reading after every answer and at every receive(): khook's flow
    control does not while a request waits its turn (its body, or more requests, would pile
    up), nor once the connection is refused."""
    transport = _Transport()
    protocol = types.SimpleNamespace(pipeline=deque(), _refused=False)
    flow = _Flow(transport, protocol)  # type: ignore[arg-type]
    flow.pause_reading()
    protocol.pipeline.append(("waiting", "app"))
    flow.resume_reading()
    assert not transport.reading
    protocol.pipeline.clear()
    flow.resume_reading()
    assert transport.reading
    flow.pause_reading()
    protocol._refused = True
    flow.resume_reading()
    assert not transport.reading


def _served_head_limit(served: Served) -> None:
    port = int(served.url.rsplit(":", 1)[1])
    assert exchange(port, request(HEAD_LIMIT)) == [202]
    assert exchange(port, request(HEAD_LIMIT + 1)) == [400]


def test_khook_serve_bounds_the_head(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KHOOK_HOOKS=str(HOOKS), KHOOK_DEDUP="memory", KHOOK_DRY_RUN="true")
    with khook_serve(directory=tmp_path, env=env) as served:
        _served_head_limit(served)


def test_the_functions_framework_command_bounds_the_head(tmp_path: Path) -> None:
    """functions-framework would serve with uvicorn's own httptools protocol: each worker is
    given khook's (khook.serving.hooks)."""
    env = clean_env(tmp_path, KHOOK_HOOKS=str(HOOKS), KHOOK_DEDUP="memory", KHOOK_DRY_RUN="true")
    with functions_framework(tmp_path, env) as served:
        _served_head_limit(served)
