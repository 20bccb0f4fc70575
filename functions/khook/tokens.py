"""Tokens that must never repeat: a claim's holder, a counted occurrence.

``uuid.uuid4().hex`` costs a system call (os.urandom) and a UUID object for each: a few
microseconds on every sighting of a live incident, which is decided on the event loop. A
token here is the same shape (32 hex digits): a random 64-bit prefix drawn once per process,
again in a forked child (gunicorn's workers must not share it), then a 64-bit counter. Two
processes repeat a token only if they draw the same prefix.
"""

from __future__ import annotations

import itertools
import os


class _Source:
    __slots__ = ("counter", "prefix")

    def __init__(self) -> None:
        self.draw()

    def draw(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()


_source = _Source()
os.register_at_fork(after_in_child=_source.draw)


def new_token() -> str:
    """A token no other call, in this process or another, returns (32 lowercase hex digits)."""
    # next() on an itertools.count is one C call: atomic under the GIL, so threads never
    # share a number.
    return f"{_source.prefix}{next(_source.counter):016x}"
