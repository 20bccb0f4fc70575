"""A request's body, read within a size limit and a deadline, without a timer when it is
already there.

An ApiServerSource's event is a few KiB: its body arrives in the same packets as its head,
and uvicorn has it before the function runs, so the first ``receive()`` returns at once. A
timer for every request (``asyncio.timeout``: a timer handle pushed on the event loop's heap,
then cancelled) cost about as much as deciding an event no Hook wants. So each read is first
stepped by hand: if it completes without waiting, no timer was ever armed; only a read that
has to wait is finished under the deadline, which counts from when the body's read began.
The loop itself is asked for only then too: on Python 3.11 ``asyncio.get_running_loop()``
makes a system call (getpid) every time, a few microseconds of every request on a VM.
"""

from __future__ import annotations

import asyncio
import time
import types
from collections.abc import Awaitable, Callable, Generator, Iterator, MutableMapping
from typing import Any

from starlette.requests import ClientDisconnect

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


class BodyTooLarge(ValueError):
    pass


async def read_body(receive: Receive, limit: int, timeout: float) -> bytes:
    """The whole body. BodyTooLarge past ``limit`` bytes, TimeoutError when it has not all
    arrived ``timeout`` seconds after this was called, ClientDisconnect if the client left."""
    began = time.monotonic()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await _now_or_by(receive(), began + timeout)
        if message["type"] != "http.request":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _now_or_by(awaitable: Awaitable[Message], deadline: float) -> Message:
    """``awaitable``'s answer, waited for until ``deadline`` (``time.monotonic()``) if it has
    to wait at all."""
    steps = awaitable.__await__()
    try:
        pending = steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    # The loop's clock is monotonic's for asyncio's loops; any other, the time left counts.
    due = asyncio.get_running_loop().time() + (deadline - time.monotonic())
    try:
        async with asyncio.timeout_at(due):
            return await _resume(steps, pending)
    finally:
        steps.close()  # nothing once it has finished; else the read is abandoned


@types.coroutine
def _resume(steps: Iterator[Any], pending: Any) -> Generator[Any, Any, Message]:
    """Go on with an awaitable already stepped once (what ``yield from`` would do had it
    started it): what it waits for goes to the task, the task's answer (a cancellation, from
    the deadline) goes back to it."""
    generator: Generator[Any, Any, Message] = steps  # type: ignore[assignment]
    while True:
        try:
            sent = yield pending
        except BaseException as exc:
            try:
                pending = generator.throw(exc)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
        else:
            try:
                pending = generator.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
