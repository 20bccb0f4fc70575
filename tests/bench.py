"""Benchmarks (``make bench``): timings live here, never in pass/fail tests.

Prints how long the hot paths take on this machine: classification, one event through the
whole pipeline (memory and tinydb dedup, dry-run agent), and HTTP round trips to the function.
"""

from __future__ import annotations

import io
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from khook.agent import DryRunClient
from khook.clock import SystemClock
from khook.core.classify import classify
from khook.core.events import Action, ClusterEvent, decode_object
from khook.files import builtin_rules
from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.support.events import HOOKS, apiserver_event, binary, oom_status, pod, sample_object
from tests.support.function import FunctionServer


def timeit(label: str, fn: Callable[[int], object], rounds: int) -> None:
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    samples.sort()
    p50 = statistics.median(samples) * 1e6
    p99 = samples[int(len(samples) * 0.99) - 1] * 1e6
    print(f"{label:<48} p50 {p50:9.1f} us   p99 {p99:9.1f} us   ({rounds} rounds)")


def oom_event(name: str, owner: str, now: datetime) -> ClusterEvent:
    finished = (now - timedelta(seconds=5)).isoformat()
    obj = pod(name=name, owner=owner, container_statuses=[oom_status(finished=finished)])
    event = decode_object(obj, action=Action.UPDATE, observed_at=now)
    assert isinstance(event, ClusterEvent)
    return event


def bench_pipeline(dedup: str, now: datetime) -> None:
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": dedup})
    pipeline = build_pipeline(settings, SystemClock(), agent=DryRunClient(out=io.StringIO()))
    store = dedup.split(":", maxsplit=1)[0]
    timeit(
        f"pipeline, new incident ({store})",
        lambda i: pipeline.process_event(oom_event(f"p-{i}", f"rs-{i}", now)),
        300,
    )
    duplicate = oom_event("web-1", "web-7d4b9c8f5", now)
    pipeline.process_event(duplicate)
    timeit(f"pipeline, duplicate ({store})", lambda _: pipeline.process_event(duplicate), 300)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("khook").setLevel(logging.ERROR)
    table = builtin_rules()
    now = datetime.now(UTC)
    pod_event = decode_object(
        sample_object("oom-kill-pod-status"), action=Action.UPDATE, observed_at=now
    )
    assert isinstance(pod_event, ClusterEvent)
    timeit("classify a Pod update", lambda _: classify(pod_event, table), 5000)

    with tempfile.TemporaryDirectory() as tmp:
        for dedup in ("memory", f"tinydb:{tmp}/bench.json"):
            bench_pipeline(dedup, now)
        settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True})
        with FunctionServer(settings, SystemClock()) as fn:
            headers, body = binary(apiserver_event(sample_object("ignored-started-event")))
            fn.post(headers, body)
            timeit("HTTP round trip, event not of interest", lambda _: fn.post(headers, body), 500)
    print(f"(python {Path(__file__).name}; machine-dependent numbers, compare runs on one host)")


if __name__ == "__main__":
    main()
