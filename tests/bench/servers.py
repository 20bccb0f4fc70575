"""The servers under load, each a real process with the image's settings:

- ``bare``: ``functions-framework --target handle --source tests/bench/bare.py``;
- ``khook``: ``functions-framework --target handle --source functions/main.py``, the same
  command and stack (functions-framework sees the ``functions_framework.aio.http`` target and
  serves it as ASGI: gunicorn with uvicorn workers, WORKERS of them), but each worker hands
  a POST straight to the function, past functions-framework's router and middlewares, which
  the bare function's requests go through (khook.function.direct_posts);
- ``khook serve``: the image's entrypoint (gunicorn with khook's own uvicorn worker; POSTs
  straight to the function too).

All three parse HTTP with httptools: uvicorn picks its own httptools protocol for the bare
function, and khook's workers serve with khook's, built on it (khook.http_protocol).

All get the Containerfile's ENV (THREADS, WORKERS, ...; PORT and PATH aside). khook runs on
the sample Hooks with the memory store, a dry-run agent and its default log level (info).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.events import HOOKS, ROOT
from tests.support.process import FUNCTIONS_FRAMEWORK, KHOOK, clean_env, free_port

BARE, KHOOK_FF, KHOOK_SERVE = "bare", "khook", "khook serve"
KINDS = (BARE, KHOOK_FF, KHOOK_SERVE)
BARE_SOURCE = Path(__file__).with_name("bare.py")
KHOOK_SOURCE = ROOT / "functions" / "main.py"
START_SECONDS = 60.0
POLL_SECONDS = 0.01
# The storm breaker counts every session a Hook opens but, this high, never trips: each new
# incident of the stream is rendered and sent (to the dry-run agent), the most it can cost.
# With the default (10 a minute) most of them would join one overflow session instead.
SESSIONS_PER_MINUTE = 1_000_000


def image_env() -> dict[str, str]:
    """The Containerfile's ENV instruction, but PATH (the image's venv) and PORT (ours)."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return {k: v for k, v in env.items() if k not in ("PATH", "PORT")}


def khook_env(sessions_per_minute: int = SESSIONS_PER_MINUTE) -> dict[str, str]:
    return {
        "KHOOK_HOOKS": str(HOOKS),
        "KHOOK_DEDUP": "memory",
        "KHOOK_DRY_RUN": "true",
        "KHOOK_MAX_SESSIONS_PER_MINUTE": str(sessions_per_minute),
    }


def argv(kind: str, port: int) -> list[str]:
    if kind == KHOOK_SERVE:
        return [KHOOK, "serve", "--host", "127.0.0.1", "--port", str(port)]
    source = BARE_SOURCE if kind == BARE else KHOOK_SOURCE
    ff = [FUNCTIONS_FRAMEWORK, "--target", "handle", "--source", str(source)]
    return [*ff, "--host", "127.0.0.1", "--port", str(port)]


def post(port: int, headers: dict[str, str], body: bytes, timeout: float = 30) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    started_in: float  # seconds from Popen to the first 202

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def post(self, headers: dict[str, str], body: bytes) -> int:
        return post(self.port, headers, body)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def processes(self) -> dict[str, list[int]]:
        """The master (the process started), its gunicorn workers, and what they started (the
        prompt sandbox's render processes)."""
        workers = children(self.process.pid)
        return {
            "master": [self.process.pid],
            "workers": workers,
            "others": [p for w in workers for p in descendants(w)],
        }


def launch(
    kind: str,
    directory: Path,
    probe: tuple[dict[str, str], bytes],
    *,
    sessions_per_minute: int = SESSIONS_PER_MINUTE,
) -> Server:
    """Start a server and wait, polling every 10 ms, for its first 202 to ``probe``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = clean_env(directory, **image_env())
    if kind != BARE:
        env.update(khook_env(sessions_per_minute))
    with (directory / "stdout").open("wb") as out, (directory / "stderr").open("wb") as err:
        started = time.perf_counter()
        # In its own directory: whatever a server writes stays there.
        process = subprocess.Popen(argv(kind, port), cwd=directory, env=env, stdout=out, stderr=err)
    server = Server(kind, port, process, directory, 0.0)
    deadline = started + START_SECONDS
    while True:
        status = 0
        with contextlib.suppress(OSError, http.client.HTTPException):
            status = post(port, *probe)
        if status == 202:
            server.started_in = time.perf_counter() - started
            return server
        if status not in (0, 503) or process.poll() is not None or time.perf_counter() > deadline:
            server.stop()
            errors = (directory / "stderr").read_text()[-2000:]
            raise RuntimeError(f"{kind} did not start (answered {status or 'nothing'}): {errors}")
        time.sleep(POLL_SECONDS)


@contextlib.contextmanager
def serving(kind: str, directory: Path, probe: tuple[dict[str, str], bytes]) -> Iterator[Server]:
    server = launch(kind, directory, probe)
    try:
        yield server
    finally:
        server.stop()


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            # The parent is the field after the command, which may hold spaces and ")".
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def descendants(pid: int) -> list[int]:
    out = []
    for child in children(pid):
        out += [child, *descendants(child)]
    return out


def status_kib(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in KiB (VmRSS, VmHWM); 0 for a process that is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them, so the
    processes' sum is what they hold together (RSS counts a forked worker's shared pages twice)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def cpu_count() -> int:
    return os.cpu_count() or 1
