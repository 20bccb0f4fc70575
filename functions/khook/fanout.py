"""Running the agent calls of one event side by side, boundedly."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class FanOut:
    """Runs ``fn`` over the items of one event at most ``limit`` at a time, on a pool shared by
    every event of the process (made on first use, so after gunicorn forks). One item runs on
    the caller's thread: most events concern one Hook, and pay nothing for this."""

    def __init__(self, limit: int, pool_size: int) -> None:
        self.limit = max(1, limit)
        self._pool_size = max(1, pool_size)
        self._executor: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if len(items) <= 1 or self.limit == 1:
            return [fn(item) for item in items]
        slots = threading.Semaphore(self.limit)

        def run(item: T) -> R:
            try:
                return fn(item)
            finally:
                slots.release()

        futures: list[Future[R]] = []
        executor = self._pool()
        for item in items:
            slots.acquire()
            # The caller's context along (each call its own copy): the event's trace and log
            # fields reach the agent call (khook.trace).
            futures.append(executor.submit(contextvars.copy_context().run, run, item))
        return [future.result() for future in futures]

    def _pool(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        with self._lock:
            if self._executor is None or self._pid != pid:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._pool_size, thread_name_prefix="khook-call"
                )
                self._pid = pid
            return self._executor

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
