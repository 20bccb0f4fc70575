"""Memory after 100,000 events: a fresh khook (functions-framework, the image's settings)
takes the realistic stream until it has answered that many, then each process's VmRSS is read
from /proc: the gunicorn master, its worker, and the worker's render processes (the prompt
sandbox). The bare function, measured the same way, shows what the stack itself holds.

RSS counts the pages a forked worker shares with its master in both; PSS (shared pages divided
among their sharers) is given too: its sum is what the processes hold together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import load, servers, streams

MB = 1_000_000 / 1024  # KiB in a megabyte (decimal, as the target is stated)


@dataclass
class Memory:
    kind: str
    events: int
    start: dict[str, float]  # MB, just after the first answer
    after: dict[str, float]  # MB, after ``events``
    rounds: list[load.Result] = field(default_factory=list)

    @property
    def master_worker_mb(self) -> float:
        return self.after["master_rss"] + self.after["worker_rss"]

    def to_json(self) -> dict[str, Any]:
        non202 = sum(r.non202 for r in self.rounds)
        return {
            "events": self.events,
            "non202": non202,
            "start_mb": self.start,
            "after_mb": self.after,
            "master_plus_worker_rss_mb": round(self.master_worker_mb, 1),
        }


def snapshot(server: servers.Server) -> dict[str, float]:
    tree = server.processes()
    master, workers, others = tree["master"], tree["workers"], tree["others"]
    every = master + workers + others

    def rss(pids: list[int]) -> float:
        return round(sum(servers.status_kib(p, "VmRSS") for p in pids) / MB, 1)

    return {
        "master_rss": rss(master),
        "worker_rss": rss(workers),
        "worker_peak_rss": round(sum(servers.status_kib(p, "VmHWM") for p in workers) / MB, 1),
        "sandbox_rss": rss(others),
        "all_rss": rss(every),
        "all_pss": round(sum(servers.pss_kib(p) for p in every) / MB, 1),
    }


def measure(workdir: Path, events: int, chunk_seconds: float, kind: str) -> Memory:
    stream = streams.build("realistic")
    probe = streams.sample()("rss-probe")
    with servers.serving(kind, workdir / kind.replace(" ", "-"), probe) as server:
        for t in stream.prime:
            server.post(*t.render("prime", 1))
        memory = Memory(kind, events, snapshot(server), {})
        sent = 0
        while sent < events:
            # wrk runs for a duration, not a count: chunks, the last one sized by the rate.
            rate = memory.rounds[-1].rate if memory.rounds else 0.0
            seconds = min(chunk_seconds, (events - sent) / rate + 0.5) if rate else chunk_seconds
            result = load.run(
                server.url,
                stream.templates,
                seconds=seconds,
                run_id=f"m{len(memory.rounds)}",
                workdir=workdir,
            )
            memory.rounds.append(result)
            sent += result.requests
        memory.events = sent
        memory.after = snapshot(server)
    return memory
