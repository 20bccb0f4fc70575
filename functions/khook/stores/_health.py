"""What a store tells /readyz and the Hook status: whether it can work, and what damage it
found and repaired lately."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from khook.clock import Clock
from khook.core.objects import format_time


@dataclass(frozen=True)
class StoreHealth:
    """``ready`` is False only while the store cannot work at all (e.g. its directory cannot
    be created or written); ``problems`` are the damage it found lately and what it did, each
    with its time (UTC), newest last."""

    ready: bool = True
    problems: tuple[str, ...] = ()


class Problems:
    """A short memory of damage found and repaired: at most ``LIMIT`` entries, none older than
    ``KEEP_FOR``. ``once`` names a problem so that seeing the same damaged object again (a
    status read every few seconds) is neither logged nor listed twice."""

    LIMIT = 10
    KEEP_FOR = timedelta(hours=1)
    SEEN_LIMIT = 1000

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._recent: deque[tuple[datetime, str]] = deque(maxlen=self.LIMIT)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def add(self, text: str, *, once: str = "") -> bool:
        """Remember a problem; False when ``once`` was already seen (the caller then does
        not log it again)."""
        with self._lock:
            if once:
                if once in self._seen:
                    return False
                self._seen[once] = None
                while len(self._seen) > self.SEEN_LIMIT:
                    self._seen.popitem(last=False)
            self._recent.append((self._clock.now(), text))
        return True

    def recent(self) -> tuple[str, ...]:
        since = self._clock.now() - self.KEEP_FOR
        with self._lock:
            return tuple(f"{format_time(at)} {text}" for at, text in self._recent if at >= since)

    def health(self, ready: bool = True, reason: str = "") -> StoreHealth:
        problems = self.recent()
        return StoreHealth(ready, (*problems, reason) if reason else problems)
