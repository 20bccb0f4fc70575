"""Messages between khook and its render processes: a 4-byte big-endian length, then JSON.

orjson refuses what a hostile event can carry (a lone surrogate, an integer past 64 bits,
nesting past 255 levels); such a message is scrubbed (``jsonable``) and sent again, so a
strange event never stops a render.
"""

from __future__ import annotations

import os
import select
import struct
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from khook.core.prompt import PromptFacts

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # far above any request (an object is at most the body limit)
_DEPTH = 64  # jsonable cuts deeper nesting (the template sees 12 levels of an object)
_INT64 = (-(2**63), 2**64)


class FrameError(Exception):
    """The other side sent something that is not a frame."""


def encode(message: Mapping[str, Any]) -> bytes:
    try:
        body = orjson.dumps(message)
    except TypeError:
        body = orjson.dumps(jsonable(message))
    return HEADER.pack(len(body)) + body


def jsonable(value: Any, depth: int = 0) -> Any:
    """A copy orjson can encode: lone surrogates dropped (as text.fence drops them), huge
    integers as text, nesting cut."""
    if isinstance(value, str):
        return value.encode("utf-8", "ignore").decode("utf-8")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value < _INT64[1] else str(value)
    if depth >= _DEPTH:
        return None
    if isinstance(value, Mapping):
        return {jsonable(str(k)): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, depth + 1) for v in value]
    return jsonable(str(value))


def write_frame(fd: int, message: Mapping[str, Any]) -> None:
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_exact(fd: int, size: int, deadline: float | None = None) -> bytes | None:
    """``size`` bytes from ``fd``; None at end of file before any byte; TimeoutError past
    ``deadline`` (a time.monotonic() value)."""
    chunks: list[bytes] = []
    missing = size
    while missing:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            if missing == size:
                return None
            raise FrameError("the stream ended inside a frame")
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> dict[str, Any] | None:
    """The next message; None when the other side has closed the stream."""
    header = read_exact(fd, HEADER.size, deadline)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise FrameError(f"a frame of {size} bytes")
    body = read_exact(fd, size, deadline) if size else b""
    if body is None:
        raise FrameError("the stream ended inside a frame")
    message = orjson.loads(body)
    if not isinstance(message, dict):
        raise FrameError("a frame that is not a JSON object")
    return message


_TIMES = ("timestamp", "first_seen", "last_seen")


def facts_to_wire(facts: PromptFacts) -> dict[str, Any]:
    wire = {name: getattr(facts, name) for name in PromptFacts.__dataclass_fields__}
    for name in _TIMES:
        wire[name] = wire[name].isoformat()
    return wire


def facts_from_wire(wire: Mapping[str, Any]) -> PromptFacts:
    values = {name: wire[name] for name in PromptFacts.__dataclass_fields__ if name in wire}
    for name in _TIMES:
        values[name] = datetime.fromisoformat(values[name])
    for name in ("affected", "workloads"):
        if name in values:
            values[name] = tuple(str(item) for item in values[name])
    return PromptFacts(**values)
