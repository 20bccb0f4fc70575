"""A few render processes, shared by every renderer in one khook process.

Processes start on first use, or when khook asks ahead (:meth:`Pool.prestart`: a worker that
has just started, so its first render need not wait for a process), never at import (gunicorn
imports, then forks: a forked child drops what it inherited and starts its own). A render
that overruns its deadline has its process killed; the next render starts a fresh one. The
processes end with khook: at exit they are told to stop, and should khook die they read
end-of-file on stdin and exit.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from khook.core.prompt import PromptError
from khook.sandbox._wire import FrameError, read_frame, write_frame

SPAWN_TIMEOUT = 30.0  # starting a process is khook's time, not the template's
_STOP_WAIT = 1.0  # at shutdown, how long a process may take to leave after end-of-file
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding khook/


class SandboxError(RuntimeError):
    """khook could not render at all (no render process could start, or none was free):
    not the template's fault, and worth retrying later."""


class SandboxBusy(SandboxError):
    """Every render process stayed busy past the render's deadline."""


class _Process:
    def __init__(self, memory_bytes: int) -> None:
        started = time.monotonic()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env["PYTHONHASHSEED"] = "random"  # string hashes a template cannot predict or collide
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "khook.sandbox._worker", str(memory_bytes)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
                start_new_session=True,  # a Ctrl-C or a signal to khook's group is khook's
                env=env,
            )
        except OSError as exc:
            raise SandboxError(f"a render process could not start: {exc}") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin.fileno()
        self.stdout = self.proc.stdout.fileno()
        try:
            hello = read_frame(self.stdout, started + SPAWN_TIMEOUT)
        except (TimeoutError, FrameError, ValueError) as exc:
            self.kill()
            raise SandboxError(f"a render process did not start: {exc!r}") from None
        if not hello or not hello.get("ready"):
            code = self.kill()
            raise SandboxError(f"a render process did not start (exit status {code})")
        self.pid = self.proc.pid
        self.start_seconds = time.monotonic() - started

    def ask(self, request: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The answer; None if the process died first. TimeoutError past the deadline."""
        write_frame(self.stdin, request)
        try:
            return read_frame(self.stdout, deadline)
        except FrameError:
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.forget()
        return code

    def stop(self) -> None:
        """Ask it to leave (end-of-file on its stdin); kill it if it lingers."""
        self.forget()
        try:
            self.proc.wait(_STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.kill()

    def forget(self) -> None:
        """Close this process's copies of the pipes (after a fork: the parent's are kept)."""
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class Pool:
    def __init__(self, memory_bytes: int, size: int) -> None:
        self.memory_bytes = memory_bytes
        self.size = size
        self.starts = 0  # processes started, ever (diagnostics)
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._idle: list[_Process] = []
        self._busy: set[_Process] = set()
        # Callers waiting for a process, first come first served: one that keeps coming back
        # (a loop of quick renders) never takes a process from one that waited before it.
        self._queue: deque[object] = deque()
        self._count = 0  # processes idle, busy or starting
        self._starting = 0  # of those, started ahead (prestart) and not idle yet
        self._generation = 0  # bumped by stop(): what was out then is not counted back in

    def pids(self) -> list[int]:
        with self._cond:
            return sorted(p.pid for p in (*self._idle, *self._busy))

    def prestart(self) -> None:
        """Start the processes not running yet, each on a thread of its own, and return at
        once: they start on another CPU while khook gets on with starting. A render that
        comes meanwhile waits for one of them, its deadline counted from when it has one (a
        process's start is khook's time, not the template's). A process that cannot start is
        left to the render that needs it to report."""
        if self._pid != os.getpid():
            self.forget()
        with self._cond:
            missing = self.size - self._count
            if missing <= 0:
                return
            self._count += missing
            self._starting += missing
            generation = self._generation
        for _ in range(missing):
            threading.Thread(
                target=self._start_ahead, args=(generation,), name="khook-render-start", daemon=True
            ).start()

    def _start_ahead(self, generation: int) -> None:
        try:
            process: _Process | None = _Process(self.memory_bytes)
        except SandboxError:
            process = None
        with self._cond:
            current = generation == self._generation
            if current:
                self._starting -= 1
                if process is None:
                    self._count -= 1
                else:
                    self.starts += 1
                    self._idle.append(process)
                self._cond.notify_all()
        if process is not None and not current:
            process.kill()  # the pool was stopped meanwhile

    def run(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one render request; the answer, or PromptError(kind deadline or memory)."""
        if self._pid != os.getpid():  # belt and braces: register_at_fork resets us too
            self.forget()
        deadline = time.monotonic() + timeout
        for _ in range(2):  # a process that died while idle is replaced once
            process, deadline = self._checkout(deadline, timeout)
            request["cpu"] = timeout
            try:
                answer = process.ask(request, deadline)
            except BrokenPipeError:
                self._discard(process)
                continue
            except TimeoutError:
                self._discard(process)
                raise PromptError(
                    f"prompt took longer than {timeout:g} s to render", kind="deadline"
                ) from None
            except BaseException:  # interrupted mid-render: its answer would confuse the next
                self._discard(process)
                raise
            if answer is None:
                code = self._discard(process)
                raise _death(code, timeout)
            if answer.get("exit"):
                self._discard(process)
            else:
                self._checkin(process)
            return answer
        raise SandboxError("render processes keep dying")

    def _checkout(self, deadline: float, timeout: float) -> tuple[_Process, float]:
        with self._cond:
            generation = self._generation
            turn = object()
            self._queue.append(turn)
            try:
                while True:
                    if self._queue[0] is turn:
                        while self._idle:
                            process = self._idle.pop()
                            if process.alive():
                                self._busy.add(process)
                                return process, deadline
                            self._count -= 1
                            process.kill()  # already gone: this reaps it
                        if self._count < self.size:
                            self._count += 1
                            break
                        if self._starting:  # one started ahead is on its way: wait for it
                            waited = time.monotonic()
                            self._cond.wait(SPAWN_TIMEOUT)
                            # The wait is khook's time, not the template's.
                            deadline += time.monotonic() - waited
                            continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SandboxBusy(
                            f"no render process was free within {timeout:g} s "
                            f"(all {self.size} busy)"
                        )
                    self._cond.wait(remaining)
            finally:
                self._queue.remove(turn)
                self._cond.notify_all()  # the next in line may go
        started = time.monotonic()
        try:
            process = _Process(self.memory_bytes)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self.starts += 1
            if generation == self._generation:
                self._busy.add(process)
                return process, deadline + (time.monotonic() - started)
        process.kill()
        raise SandboxError("the render processes were stopped")

    def _checkin(self, process: _Process) -> None:
        with self._cond:
            if process in self._busy:
                self._busy.discard(process)
                self._idle.append(process)
                self._cond.notify_all()
                return
        process.kill()  # the pool was stopped while it rendered

    def _discard(self, process: _Process) -> int:
        with self._cond:
            if process in self._busy:
                self._busy.discard(process)
                self._count -= 1
                self._cond.notify_all()
        return process.kill()

    def stop(self) -> None:
        with self._cond:
            idle, busy = self._idle, list(self._busy)
            self._idle, self._busy, self._count, self._starting = [], set(), 0, 0
            self._generation += 1
            self._cond.notify_all()
        for process in busy:
            process.kill()
        for process in idle:
            process.stop()

    def forget(self) -> None:
        """In a forked child: let go of the parent's processes without touching them."""
        for process in (*self._idle, *self._busy):
            process.forget()
        self._reset()


def _death(code: int, timeout: float) -> PromptError:
    if code == -signal.SIGXCPU:
        return PromptError(f"prompt used more than {timeout:g} s of CPU", kind="deadline")
    if code < 0:
        try:
            cause = f"signal {signal.Signals(-code).name}"
        except ValueError:
            cause = f"signal {-code}"
    else:
        cause = f"exit status {code}"
    return PromptError(f"the render process died ({cause}): out of memory?", kind="memory")


_POOLS: dict[tuple[int, int], Pool] = {}
_POOLS_LOCK = threading.Lock()


def shared_pool(memory_bytes: int, size: int) -> Pool:
    """The process's pool for these settings; starts no process."""
    with _POOLS_LOCK:
        pool = _POOLS.get((memory_bytes, size))
        if pool is None:
            pool = _POOLS[memory_bytes, size] = Pool(memory_bytes, size)
        return pool


def shutdown() -> None:
    """Stop every render process of this process (at exit; tests)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
    for pool in pools:
        pool.stop()


def _after_fork_in_child() -> None:
    global _POOLS_LOCK  # noqa: PLW0603 - a lock held at fork time is never released here
    _POOLS_LOCK = threading.Lock()
    for pool in _POOLS.values():
        pool.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
