"""Log sampling: most of what an ApiServerSource sends is of no interest, and one line per
ignored event would drown the lines that matter. A key (an ignored event's reason code) is
let through at most once per interval; what was held back is counted and told with the next
line, so nothing is hidden, only summarised."""

from __future__ import annotations

import threading
from typing import Protocol

MAX_KEYS = 256  # keys remembered; reason codes are a closed set far below this


class Monotonic(Protocol):
    """What a sampler needs of a clock (khook.clock's clocks have it)."""

    def monotonic(self) -> float: ...


class OncePer:
    """``due(key)``: whether a line for ``key`` may be logged now, and how many were held
    back since the last one."""

    def __init__(self, seconds: float, clock: Monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> tuple[bool, int]:
        now = self._clock.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._seconds:
                self._held[key] = self._held.get(key, 0) + 1
                return False, 0
            if last is None and len(self._last) >= MAX_KEYS:
                return False, 0  # an unbounded key set is a bug; never grow with it
            self._last[key] = now
            return True, self._held.pop(key, 0)
