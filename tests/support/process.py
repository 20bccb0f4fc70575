"""khook as a real process: `khook serve` or `functions-framework --target handle`, with its
stdout and stderr kept in files (read while it runs, or after; a pipe nobody reads could block
the server), and the one-shot runs of a process that must refuse to start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.events import ROOT

KHOOK = str(Path(sys.executable).with_name("khook"))
FUNCTIONS_FRAMEWORK = str(Path(sys.executable).with_name("functions-framework"))
START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(home: Path, **env: str) -> dict[str, str]:
    """The test's environment without any khook, Kagent or Kubernetes setting of the machine
    running the tests (and a HOME of its own, so no ~/.kube/config is found), plus ``env``."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KHOOK_", "KAGENT_", "KUBE", "GUNICORN_"))
        and k not in ("HOST", "PORT", "THREADS", "WORKERS", "POD_NAME", "POD_NAMESPACE")
    }
    return {**base, "HOME": str(home), **env}


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=10)

    def post(self, headers: Mapping[str, str], body: bytes) -> httpx.Response:
        return httpx.post(self.url + "/", headers=dict(headers), content=body, timeout=60)

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; the exit code once it has stopped."""
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=60)

    def err_lines(self) -> list[str]:
        return self.stderr.read_text().splitlines()

    def out_lines(self) -> list[str]:
        return self.stdout.read_text().splitlines()

    def logs(self) -> list[dict[str, Any]]:
        """stderr, each line parsed as the JSON object it must be."""
        return [json.loads(line) for line in self.err_lines()]


@contextmanager
def serving(
    argv: list[str],
    port: int,
    directory: Path,
    env: Mapping[str, str],
    *,
    ready: bool = True,
    cwd: Path = ROOT,
) -> Iterator[Served]:
    """Run a server process (in ``cwd``) until it answers /readyz 200 (``ready``) or /healthz
    at all; stop it afterwards. Its output goes to ``directory``/stdout and stderr."""
    stdout, stderr = directory / "stdout", directory / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdout=out, stderr=err)
    served = Served(f"http://127.0.0.1:{port}", proc, stdout, stderr)
    try:
        deadline = time.monotonic() + START_SECONDS
        probe = "/readyz" if ready else "/healthz"
        while True:
            try:
                if served.get(probe).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start: {stderr.read_text()}")
            time.sleep(0.1)
        yield served
    finally:
        served.stop()


def khook_serve(
    *args: str, directory: Path, env: Mapping[str, str], ready: bool = True
) -> AbstractContextManager[Served]:
    port = free_port()
    argv = [KHOOK, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    return serving(argv, port, directory, env, ready=ready)


def functions_framework(
    directory: Path, env: Mapping[str, str], ready: bool = True
) -> AbstractContextManager[Served]:
    port = free_port()
    argv = [FUNCTIONS_FRAMEWORK, "--target", "handle", "--source", "functions/main.py"]
    return serving([*argv, "--port", str(port)], port, directory, env, ready=ready)


def refused(argv: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a process that must refuse to start; it gets 30 s to do so."""
    return subprocess.run(
        argv, cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=30, check=False
    )
