"""The virtual clock of a replay: time is the recording's, not the machine's."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

# Where the virtual monotonic clock starts: any number works, khook only takes differences.
_MONOTONIC_ORIGIN = 1_000_000.0


class VirtualClock:
    """A :class:`khook.clock.Clock` that stands still until it is moved.

    The replay moves it to each event's ``ce-time`` before the event is processed (it never
    goes back), and ``sleep`` advances it instead of waiting: an hour of storm plays in
    seconds, and every window, hold and rate limit sees the recording's time.
    """

    def __init__(self, start: datetime) -> None:
        self._start = start.astimezone(UTC)
        self._now = self._start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return _MONOTONIC_ORIGIN + (self._now - self._start).total_seconds()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(timedelta(seconds=seconds))

    def advance(self, delta: timedelta) -> None:
        if delta > timedelta(0):
            with self._lock:
                self._now += delta

    def move_to(self, moment: datetime) -> None:
        """Jump forward to ``moment``; a moment in the past leaves the clock where it is."""
        moment = moment.astimezone(UTC)
        with self._lock:
            self._now = max(self._now, moment)
