"""Per-call cost of khook's A2A client, measured, not asserted: ``python -m tests.bench_agent``.

Two local agents, each in its own process (so the client does not share a GIL with them): the
real a2a-sdk test agent, and a canned agent that answers every request at once with the same
task (so what is measured there is mostly the client). Against each: khook's A2AClient, a bare
httpx.Client POST of the same body (what the client used before the deadline and size cap),
sequentially and from 8 threads.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson

from khook.agent import A2AClient, AgentRequest
from khook.clock import SystemClock
from khook.core.hooks import AgentRef

REQUEST = AgentRequest(
    agent=AgentRef("kagent", "k8s-agent"),
    prompt="Pod web-1 was OOM-killed. " * 40,
    message_id="6a1f1e0e-0000-4000-8000-000000000003",
    metadata={"khook.dev/hook": "shop/h"},
    hook_namespace="shop",
    hook_name="h",
)
CANNED = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": REQUEST.message_id,
        "result": {
            "kind": "task",
            "id": "0b8f3c52-3a4e-4a43-9d0e-1d1d0c4f1a11",
            "contextId": "5e0d7e0e-6f7d-4b8e-9d34-2a0f1f1a2b33",
            "status": {"state": "submitted"},
        },
    }
)

SDK_AGENT = """
import sys, threading
from tests.support.agent import A2AAgentServer
with A2AAgentServer() as agent:
    print(agent.url, flush=True)
    sys.stdin.read()
"""


async def _canned(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    answer = head % len(CANNED) + CANNED
    try:
        while True:
            headers = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            writer.write(answer)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def serve_canned() -> None:
    async def main() -> None:
        server = await asyncio.start_server(_canned, "127.0.0.1", 0)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


def start(code: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def timings(call: Callable[[], object], n: int, threads: int) -> tuple[float, float, float]:
    """p50 and p99 latency (ms) and calls per second."""

    def timed(_: int) -> float:
        started = time.perf_counter()
        call()
        return (time.perf_counter() - started) * 1000

    for _ in range(20):
        call()  # warm up: connections, caches
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        samples = sorted(pool.map(timed, range(n)))
    rate = n / (time.perf_counter() - started)
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1], rate


def bench(name: str, url: str, n: int) -> None:
    khook = A2AClient(url, clock=SystemClock())
    http = khook.http_request(REQUEST)
    plain = httpx.Client(timeout=30.0)
    body = orjson.dumps(http.body)

    def bare() -> object:
        response = plain.post(http.url, content=body, headers=dict(http.headers))
        return orjson.loads(response.content)

    for threads in (1, 8):
        for label, call in (("khook A2AClient", lambda: khook.send(REQUEST)), ("bare httpx", bare)):
            p50, p99, rate = timings(call, n, threads)
            print(
                f"{name:>10} {threads} thread(s) {label:>16}: "
                f"p50 {p50:6.3f} ms  p99 {p99:6.3f} ms  {rate:7.0f} calls/s"
            )
    khook.close()
    plain.close()


def main() -> None:
    canned, canned_url = start("from tests.bench_agent import serve_canned; serve_canned()")
    sdk, sdk_url = start(SDK_AGENT)
    try:
        bench("canned", canned_url, 2000)
        bench("a2a-sdk", sdk_url, 500)
    finally:
        for proc in (canned, sdk):
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
