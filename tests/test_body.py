"""Reading a request's body (khook.body): a body that is there costs no timer and no system
call; one that has to be waited for is waited for until the deadline. (Through the served
function: tests/test_hostile_input.py, a short body and trickled bodies answered 408.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from khook.body import BodyTooLarge, read_body

Message = dict[str, Any]


def chunks(*parts: bytes) -> Callable[[], Any]:
    """An ASGI receive() that has every part at once, as uvicorn has an event's body."""
    messages: Iterator[Message] = iter(
        [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]
    )

    async def receive() -> Message:
        return next(messages)

    return receive


def test_a_body_that_is_there_asks_nothing_of_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Python 3.11 asyncio.get_running_loop() is a getpid system call: it was one per
    request, on every event."""
    asked: list[int] = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        asked.append(1)
        return real()

    async def read() -> tuple[bytes, bytes]:
        monkeypatch.setattr(asyncio, "get_running_loop", counted)
        whole = await read_body(chunks(b'{"kind":"Pod"}'), 1024, 10.0)
        parts = await read_body(chunks(b"ab", b"", b"cd"), 1024, 10.0)
        return whole, parts

    assert asyncio.run(read()) == (b'{"kind":"Pod"}', b"abcd")
    assert asked == []


def test_a_body_that_has_to_be_waited_for_is_read_by_the_deadline() -> None:
    async def read() -> bytes:
        arrived: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def receive() -> Message:
            return await arrived

        asyncio.get_running_loop().call_soon(
            arrived.set_result, {"type": "http.request", "body": b"late", "more_body": False}
        )
        return await read_body(receive, 1024, 10.0)

    assert asyncio.run(read()) == b"late"


def test_past_the_deadline_a_waiting_read_is_a_timeout_and_let_go() -> None:
    """With no time left (timeout 0) a read that would wait ends at once: TimeoutError, and
    the read it waited on is abandoned (cancelled)."""
    closed: list[bool] = []

    async def read() -> None:
        never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

        async def receive() -> Message:
            try:
                return await never
            except (asyncio.CancelledError, GeneratorExit):
                closed.append(True)
                raise

        await read_body(receive, 1024, 0.0)

    with pytest.raises(TimeoutError):
        asyncio.run(read())
    assert closed == [True]


def test_too_much_or_a_client_gone_is_said() -> None:
    with pytest.raises(BodyTooLarge):
        asyncio.run(read_body(chunks(b"x" * 600, b"y" * 600), 1024, 10.0))

    async def gone() -> Message:
        return {"type": "http.disconnect"}

    with pytest.raises(ClientDisconnect):
        asyncio.run(read_body(gone, 1024, 10.0))
