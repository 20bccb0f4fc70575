"""Benchmarks (``make bench``): timings live here, never in pass/fail tests.

Prints how long the hot paths take on this machine: classification, one event through the
whole pipeline (memory and tinydb dedup, dry-run agent), HTTP round trips to the function, and
dedup decisions on a store holding 10,000 live incidents and 100,000 older records
(``python -m tests.bench stores`` runs that part alone).
"""

from __future__ import annotations

import io
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from khook import metrics
from khook.agent import DryRunClient
from khook.clock import SystemClock
from khook.core.classify import classify
from khook.core.dedup import DedupKey, Observation, Record
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.outcome import Outcome
from khook.core.reasons import Code, Reason
from khook.files import builtin_rules
from khook.runtime import build_pipeline
from khook.settings import Settings
from khook.stores import Deduplicator, MemoryRecords, RecordStore, TinyDBRecords
from tests.support.clock import FakeClock
from tests.support.events import HOOKS, apiserver_event, binary, oom_status, pod, sample_object
from tests.support.function import FunctionServer


def timeit(label: str, fn: Callable[[int], object], rounds: int) -> None:
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    report(label, samples)


def report(label: str, samples: list[float]) -> None:
    samples = sorted(samples)
    rounds = len(samples)
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


def bench_metrics() -> None:
    """What metrics add to an event no Hook wants: the pipeline's two increments and the HTTP
    entry's two (in memory: one worker; PROMETHEUS_MULTIPROC_DIR set: files)."""
    ignored = Outcome(ignored=Reason(Code.NO_RULE, "no classification rule matched"))

    def count(_: int) -> None:
        metrics.event_processed(ignored)
        metrics.answered(202, "no-rule; no classification rule matched")
        metrics.body_size(1500)

    timeit("metrics of an event not of interest", count, 20000)


LIVE_INCIDENTS = 10_000
OLDER_RECORDS = 100_000
WINDOW = timedelta(minutes=10)
RETENTION = timedelta(minutes=15)


def incident(i: int, fired: datetime) -> Record:
    """A record as a busy cluster leaves them: a few occurrences, two pods, a task."""
    key = DedupKey(f"team-{i % 50}/pods", "oom-kill", f"team-{i % 50}", f"Deployment/app-{i}")
    pods = (f"Pod/app-{i}-7d4b9c8f5-x2x9z", f"Pod/app-{i}-7d4b9c8f5-k8s2q")
    return Record(
        key=key,
        first_seen=fired,
        last_seen=fired + timedelta(seconds=30),
        fired_at=fired,
        window=WINDOW,
        count=3,
        holder=uuid.uuid4().hex,
        confirmed=True,
        occurrences=(*(f"{p}/app/{fired.isoformat()}" for p in pods), "Event/abc/3"),
        resources=pods,
        task_id=str(uuid.uuid4()),
        context_id=str(uuid.uuid4()),
    )


def fill(store: RecordStore, clock: FakeClock) -> list[DedupKey]:
    """100,000 records whose windows ended (kept for their occurrences) behind 10,000 live
    incidents; returns the live incidents' keys."""
    now = clock.now()
    old = [incident(i, now - timedelta(minutes=20)) for i in range(OLDER_RECORDS)]
    live = [incident(OLDER_RECORDS + i, now - timedelta(minutes=1)) for i in range(LIVE_INCIDENTS)]
    if isinstance(store, TinyDBRecords):
        store.add_missing(old + live)
    else:
        for record in old + live:
            store.update(record.key, lambda _, r=record: r)  # type: ignore[misc]
    return [r.key for r in live]


def bench_stores(directory: Path) -> None:
    """One decision is one Deduplicator.claim: read the key's record, decide, write it back."""
    memory_clock = FakeClock()
    bench_store("memory", MemoryRecords(memory_clock), memory_clock)
    tinydb_clock = FakeClock()
    bench_store("tinydb", TinyDBRecords(directory / "dedup", tinydb_clock), tinydb_clock)


def bench_store(name: str, store: RecordStore, clock: FakeClock) -> None:
    start = time.perf_counter()
    live = fill(store, clock)
    filled = time.perf_counter() - start
    print(f"{name}: filled with {OLDER_RECORDS + LIVE_INCIDENTS} records in {filled:.1f} s")
    dedup = Deduplicator(store, clock, RETENTION)
    rng = random.Random(7)

    def observe(i: int) -> Observation:
        return Observation(f"bench-{i}", None, clock.now(), "Pod/x")

    def new_incident(i: int) -> DedupKey:
        return DedupKey("bench/h", "oom-kill", "bench", f"Deployment/new-{i}")

    timeit(
        f"decision, duplicate of a live incident ({name})",
        lambda i: dedup.claim(rng.choice(live), observe(i), WINDOW),
        2000,
    )
    timeit(
        f"decision, new incident ({name})",
        lambda i: dedup.claim(new_incident(i), observe(i), WINDOW),
        2000,
    )
    concurrent_decisions(name, dedup, live, observe)
    start = time.perf_counter()
    store.prune(RETENTION)
    took = time.perf_counter() - start
    print(f"{name}: prune pass, nothing due: {took:.2f} s")
    clock.advance(RETENTION)
    start = time.perf_counter()
    gone = store.prune(RETENTION)
    took = time.perf_counter() - start
    print(f"{name}: prune pass removing {gone} records: {took:.2f} s")
    if isinstance(store, TinyDBRecords):
        sizes = sorted(p.stat().st_size for p in store.path.glob("shard-*.json"))
        print(f"{name}: {len(sizes)} shard files, largest {sizes[-1] / 1024:.0f} KiB after pruning")


def concurrent_decisions(
    name: str, dedup: Deduplicator, live: list[DedupKey], observe: Callable[[int], Observation]
) -> None:
    """Eight senders at once, as a busy Knative source delivers: each its own thread."""
    samples: list[float] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        rng = random.Random(n)
        mine = []
        for i in range(250):
            start = time.perf_counter()
            dedup.claim(rng.choice(live), observe(n * 1000 + i), WINDOW)
            mine.append(time.perf_counter() - start)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report(f"decision, 8 concurrent senders ({name})", samples)


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("khook").setLevel(logging.ERROR)
    if sys.argv[1:] == ["stores"]:
        with tempfile.TemporaryDirectory() as tmp:
            bench_stores(Path(tmp))
        return
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
            # What a scrape costs khook's event loop (a round trip's time on loopback is
            # mostly delayed ACKs: an answer with a body is two writes).
            timeit("GET /metrics: formatting the scrape", lambda _: metrics.scrape(), 500)
        bench_metrics()
        bench_stores(Path(tmp))
    print(f"(python {Path(__file__).name}; machine-dependent numbers, compare runs on one host)")


if __name__ == "__main__":
    main()
