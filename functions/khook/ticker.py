"""A background writer's heartbeat."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger("khook")


class Ticker:
    """Calls ``tick`` every ``interval`` seconds on a daemon thread, started on first need:
    after gunicorn has forked the worker, never in the master. ``interval`` 0 means never;
    whoever owns the writer then calls its flush itself (tests do)."""

    def __init__(self, name: str, interval: float, tick: Callable[[], object]) -> None:
        self._name = name
        self._interval = interval
        self._tick = tick
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        if self._interval <= 0 or self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._tick()
            except Exception:  # a writer's bug must not stop its heartbeat
                logger.exception("background writer failed", extra={})

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
