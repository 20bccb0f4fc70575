"""When to try an agent again: its ``Retry-After`` (capped), else backoff with jitter; and one
time budget for the whole call."""

from __future__ import annotations

import email.utils
import random
import re
import time
from datetime import UTC, datetime

from khook.clock import Clock

_SECONDS = re.compile(r"[0-9]+")
_MAX_DIGITS = 15  # more digits than this is "longer than any cap" (and no huge int parsing)


def retry_after(value: str | None, now: datetime, cap: float) -> float | None:
    """Seconds an agent's ``Retry-After`` asks for (delay-seconds or an HTTP-date), at most
    ``cap``; None when there is no usable value."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        seconds = cap if len(value) > _MAX_DIGITS else float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        try:
            seconds = (when - now).total_seconds()
        except OverflowError:
            seconds = cap
    return min(max(0.0, seconds), cap)


def backoff(attempt: int, base: float, ceiling: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": between half and all of the step."""
    step = min(ceiling, base * 2.0 ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2)


class Budget:
    """What is left of one agent call's time (``KHOOK_AGENT_TIMEOUT``, retries included).

    Backoff sleeps run on the injected clock, socket waits on real time (a socket knows no
    other). In production both are the system clock, so this is one deadline; with a test clock
    the smaller of the two remainders counts."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.seconds = seconds
        self._clock = clock
        self._clock_end = clock.monotonic() + seconds
        self._real_end = time.monotonic() + seconds

    def left(self) -> float:
        return min(self._clock_end - self._clock.monotonic(), self._real_end - time.monotonic())

    def until(self, at_most: float | None = None) -> float:
        """The real instant (``time.monotonic()``) the next exchange must end by."""
        left = self.left() if at_most is None else min(self.left(), at_most)
        return time.monotonic() + left
