"""Load: wrk (8 connections, 2 threads, a Lua script that fills in each request), or, where wrk
is not installed, a small asyncio generator in a process of its own (tests/bench/loadgen.py).
Either prints one JSON line; :func:`run` reads it into a :class:`Result`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.streams import Template

LUA = Path(__file__).with_name("stream.lua")
CONNECTIONS = 8
THREADS = 2
MARKER = "KHOOK-BENCH "


@dataclass
class Result:
    generator: str
    requests: int
    seconds: float
    non202: int  # answers other than 202: a run with any is not a valid measurement
    errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    outcomes: dict[str, int] = field(default_factory=dict)  # X-Khook-Outcome, summed

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "rate": round(self.rate, 1)}


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "python"


def missing_wrk_note() -> str | None:
    if generator() == "wrk":
        return None
    return (
        "wrk is not on PATH (apt-get install wrk): load comes from the built-in asyncio "
        "generator, which is slower than wrk; compare only runs made with the same generator"
    )


def lua_string(text: str) -> str:
    """A Lua long string holding ``text`` exactly (level chosen so it cannot end early)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    # A long string drops a newline right after its opening bracket: never one here.
    return f"[{eq}[{text}]{eq}]"


def write_templates(templates: tuple[Template, ...], path: Path) -> Path:
    lines = ["return {"]
    for t in templates:
        headers = ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in t.headers.items())
        lines.append(f"  {{headers = {{{headers}}}, body = {lua_string(t.body)}}},")
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


def run(
    url: str,
    templates: tuple[Template, ...],
    *,
    seconds: float,
    run_id: str,
    workdir: Path,
) -> Result:
    """Load ``url`` with the templates for ``seconds`` (whole seconds with wrk)."""
    if generator() == "wrk":
        return _wrk(url, templates, seconds, run_id, workdir)
    return _python(url, templates, seconds, run_id)


def _wrk(
    url: str,
    templates: tuple[Template, ...],
    seconds: float,
    run_id: str,
    workdir: Path,
) -> Result:
    data = write_templates(templates, workdir / f"templates-{run_id}.lua")
    argv = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(data),
        run_id,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return _parse("wrk", done)


def _python(url: str, templates: tuple[Template, ...], seconds: float, run_id: str) -> Result:
    config = {
        "url": url,
        "templates": [{"headers": t.headers, "body": t.body} for t in templates],
        "seconds": seconds,
        "run": run_id,
        "connections": CONNECTIONS,
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.loadgen"],
        input=json.dumps(config),
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    return _parse("python", done)


def _parse(name: str, done: subprocess.CompletedProcess[str]) -> Result:
    for line in done.stdout.splitlines():
        if line.startswith(MARKER):
            doc = json.loads(line[len(MARKER) :])
            break
    else:
        raise RuntimeError(f"{name} printed no result (exit {done.returncode}): {done.stderr}")
    errors = doc["errors"]
    latency = doc["latency_us"]
    return Result(
        generator=name,
        requests=doc["requests"],
        seconds=doc["duration_us"] / 1e6,
        non202=doc["non202"],
        errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        outcomes=doc["outcomes"],
    )
