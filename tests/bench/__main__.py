"""``make bench``: ``python -m tests.bench [PART ...] [--quick] [--json PATH]``.

PARTs (default all, in this order): http coldstart rss agent stores stages.
``python -m tests.bench stores`` runs the store decisions alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import agentcall, coldstart, load, memory_rss, report, rounds, servers, stages
from tests.bench import stores as store_bench
from tests.bench.streams import NAMES, sample

PARTS = ("http", "coldstart", "rss", "agent", "stores", "stages")
STORES = ("memory", "tinydb", "lease", "configmap")


@dataclass(frozen=True)
class Plan:
    rounds: int = 3
    seconds: float = 8.0
    warmup: float = 2.0
    cold_runs: int = 5
    rss_events: int = 100_000
    rss_chunk_seconds: float = 10.0
    size: store_bench.Size = field(default_factory=store_bench.Size)
    agent_samples: int = 300
    stage_samples: int = 1_000


QUICK = Plan(
    rounds=1,
    seconds=2.0,
    warmup=1.0,
    cold_runs=1,
    rss_events=5_000,
    rss_chunk_seconds=2.0,
    size=store_bench.Size(live=1_000, older=5_000, cluster_live=50, samples=200, sender_samples=25),
    agent_samples=50,
    stage_samples=100,
)


def progress(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def http_part(plan: Plan, workdir: Path) -> dict[str, Any]:
    ids = itertools.count(1)
    probe = sample()("probe")
    running: dict[str, servers.Server] = {}
    try:
        for kind in servers.KINDS:
            running[kind] = servers.launch(kind, workdir / kind.replace(" ", "-"), probe)
        out = {}
        for name in NAMES:
            progress(f"http: {name}, {plan.rounds} round(s) of {plan.seconds:g} s per server")
            comparison = rounds.compare(
                name,
                running,
                rounds=plan.rounds,
                seconds=plan.seconds,
                warmup=plan.warmup,
                workdir=workdir,
                ids=ids,
            )
            out[name] = comparison.to_json()
        return out
    finally:
        for server in running.values():
            server.stop()


def run(parts: tuple[str, ...], plan: Plan, quick: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "machine": report.machine(),
        "plan": {
            "quick": quick,
            "generator": load.generator(),
            "connections": load.CONNECTIONS,
            "threads": load.THREADS,
            "rounds": plan.rounds,
            "seconds": plan.seconds,
            "warmup_seconds": plan.warmup,
            "image_env": servers.image_env(),
            "khook_env": servers.khook_env(),
            "khook_log_level": "info (the default)",
        },
    }
    note = load.missing_wrk_note()
    if note:
        print(note, file=sys.stderr)
        doc["plan"]["note"] = note
    # khook's own log lines from the in-process parts would drown the progress lines.
    logging.getLogger("khook").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="khook-bench-") as tmp:
        workdir = Path(tmp)
        if "http" in parts:
            doc["http"] = http_part(plan, workdir / "http")
        if "coldstart" in parts:
            progress(f"cold start: {plan.cold_runs} run(s) per server")
            cold = coldstart.measure(workdir / "cold", plan.cold_runs)
            doc["coldstart"] = {kind: c.to_json() for kind, c in cold.items()}
        if "rss" in parts:
            doc["rss"] = {}
            for kind in (servers.BARE, servers.KHOOK_FF):
                progress(f"memory: {plan.rss_events} realistic events to a fresh {kind}")
                memory = memory_rss.measure(
                    workdir / "rss", plan.rss_events, plan.rss_chunk_seconds, kind
                )
                doc["rss"][kind] = memory.to_json()
        if "agent" in parts:
            progress("new incident -> agent call, per store")
            calls = agentcall.measure(workdir / "agent", plan.size, plan.agent_samples, STORES)
            doc["agent_call"] = {c.store: c.to_json() for c in calls}
        if "stores" in parts:
            progress("store decisions, per store (filling takes a while)")
            results = store_bench.measure(workdir / "stores", plan.size, STORES)
            doc["stores"] = {r.store: r.to_json() for r in results}
        if "stages" in parts:
            progress("pipeline stages, in process")
            timed = stages.measure(plan.stage_samples)
            doc["stages"] = {
                kind: {s: t.to_json() for s, t in per.items()} for kind, per in timed.items()
            }
            costs = stages.metrics_costs(plan.stage_samples)
            doc["metrics_costs"] = {k: t.to_json() for k, t in costs.items()}
    doc["machine"]["load_average_after"] = report.load_average()
    doc["targets"] = report.targets(doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=" ".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s, small counts")
    parser.add_argument("--json", type=Path, default=Path(".khook/bench.json"), metavar="PATH")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}: use {', '.join(PARTS)}")
    parts = tuple(args.parts) or PARTS
    doc = run(parts, QUICK if args.quick else Plan(), args.quick)
    print(report.table(doc))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n(written to {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
