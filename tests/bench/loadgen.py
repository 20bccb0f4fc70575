"""The fallback load generator, for a machine without wrk: ``python -m tests.bench.loadgen``
reads its configuration (JSON) on stdin and prints the same KHOOK-BENCH line as the wrk script.

asyncio, one process of its own (it must not share a GIL with anything it measures),
``connections`` kept-alive HTTP/1.1 connections each sending its next request as soon as the
previous answer is in, as wrk does. The placeholders are filled in as tests/bench/stream.lua
fills them. It is slower than wrk: on a small machine it may be what limits the rate.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit

OUTCOME = re.compile(rb"^x-khook-outcome:(.*)$", re.IGNORECASE | re.MULTILINE)
COUNTS = ("fired", "duplicate", "held", "followup", "failed", "stale")


class Load:
    def __init__(self, config: dict[str, Any]) -> None:
        url = urlsplit(config["url"])
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.templates = config["templates"]
        self.run = config["run"]
        self.deadline = time.monotonic() + float(config["seconds"])
        self.latencies: list[float] = []
        self.non202 = 0
        self.errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        self.outcomes = dict.fromkeys(COUNTS, 0)

    def request(self, connection: int, counter: int) -> bytes:
        template = self.templates[(counter + connection * 37) % len(self.templates)]
        token = f"r{self.run}t{connection + 1}n{counter}"
        body: bytes = template["body"].replace("@ID@", token).replace("@N@", str(counter)).encode()
        head = [f"POST / HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"]
        head += [f"{k}: {v.replace('@ID@', token)}\r\n" for k, v in template["headers"].items()]
        head.append(f"Content-Length: {len(body)}\r\n\r\n")
        return "".join(head).encode() + body

    def done(self) -> bool:
        return time.monotonic() >= self.deadline

    async def connection(self, n: int) -> None:
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.errors["connect"] += 1
            return
        counter = 0
        try:
            while not self.done():
                counter += 1
                started = time.perf_counter()
                writer.write(self.request(n, counter))
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
                if length:
                    await reader.readexactly(int(length.group(1)))
                self.latencies.append(time.perf_counter() - started)
                self.answer(head)
        except (OSError, asyncio.IncompleteReadError):
            self.errors["read"] += 1
        finally:
            writer.close()

    def answer(self, head: bytes) -> None:
        status = int(head[9:12])
        if status != 202:
            self.non202 += 1
        if status >= 400:
            self.errors["status"] += 1
        found = OUTCOME.search(head)
        if found:
            for part in found.group(1).decode().split():
                name, _, value = part.partition("=")
                if name in self.outcomes:
                    self.outcomes[name] += int(value)

    def report(self, seconds: float) -> dict[str, Any]:
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> int:
            return round(ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1e6)

        return {
            "requests": len(self.latencies),
            "duration_us": round(seconds * 1e6),
            "answers": len(self.latencies),
            "non202": self.non202,
            "errors": self.errors,
            "latency_us": {
                "p50": pct(0.50),
                "p90": pct(0.90),
                "p99": pct(0.99),
                "max": round(ordered[-1] * 1e6),
                "mean": sum(ordered) / len(ordered) * 1e6,
            },
            "outcomes": self.outcomes,
        }


async def main(config: dict[str, Any]) -> dict[str, Any]:
    load = Load(config)
    started = time.perf_counter()
    await asyncio.gather(*(load.connection(n) for n in range(int(config["connections"]))))
    return load.report(time.perf_counter() - started)


if __name__ == "__main__":
    result = asyncio.run(main(json.loads(sys.stdin.read())))
    print("KHOOK-BENCH " + json.dumps(result), flush=True)
