"""Store decisions (``python -m tests.bench stores`` runs this part alone): one decision is one
``Deduplicator.claim``, which reads the key's record, decides and writes it back.

memory and tinydb hold 10,000 live incidents behind 100,000 older records (windows ended, kept
for their occurrences), each with a busy cluster's content. Lease and ConfigMap run against the
in-repo API double (tests/support/apiserver.py, the official client over HTTP), behind the
replica cache khook puts in front of them, with fewer live incidents (each one an object the
double holds): the first sighting of a live incident on a replica goes to the API server, a
repeat of one it knows to be live and confirmed is decided locally.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from khook.core.dedup import DedupKey, Observation, Record
from khook.stores import (
    CachedRecords,
    ConfigMapRecords,
    Deduplicator,
    LeaseRecords,
    MemoryRecords,
    RecordStore,
    TinyDBRecords,
)
from tests.bench.timing import Timing, timeit
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock

WINDOW = timedelta(minutes=10)
RETENTION = timedelta(minutes=15)
STATE_NAMESPACE = "khook-system"


@dataclass(frozen=True)
class Size:
    live: int = 10_000
    older: int = 100_000
    cluster_live: int = 1_000  # Lease and ConfigMap: objects in the API double
    samples: int = 2_000
    sender_samples: int = 250  # per sender, 8 senders


@dataclass
class StoreResult:
    store: str
    filled: str  # what the store held
    fill_seconds: float
    timings: list[Timing] = field(default_factory=list)
    notes: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "filled": self.filled,
            "fill_seconds": round(self.fill_seconds, 2),
            "timings": {t.label: t.to_json() for t in self.timings},
            **{k: round(v, 3) for k, v in self.notes.items()},
        }


def incident(i: int, fired: datetime, hook: str = "") -> Record:
    """A record as a busy cluster leaves them: a few occurrences, two pods, a task; of one of
    50 tenants' Hooks, or of ``hook``."""
    hook = hook or f"team-{i % 50}/pods"
    key = DedupKey(hook, "oom-kill", hook.split("/")[0], f"Deployment/app-{i}")
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


def fill(
    store: RecordStore, now: datetime, live: int, older: int, hook: str = ""
) -> list[DedupKey]:
    """``older`` records whose windows ended (kept for their occurrences) behind ``live``
    incidents; returns the live incidents' keys."""
    old = [incident(i, now - timedelta(minutes=20), hook) for i in range(older)]
    current = [incident(older + i, now - timedelta(minutes=1), hook) for i in range(live)]
    if isinstance(store, TinyDBRecords):
        store.add_missing(old + current)
    else:
        for record in old + current:
            store.update(record.key, lambda _, r=record: r)  # type: ignore[misc]
    return [r.key for r in current]


@contextlib.contextmanager
def api_double() -> Iterator[APIServer]:
    """The API double with Nagle's algorithm off on its sockets, as on the real API server's
    (Go's net package sets TCP_NODELAY on every TCP connection). The double answers in two
    writes, headers then body; with Nagle on, the body waits for the client's delayed ACK of
    the headers, 40 ms on Linux, and that wait, not khook, would be what is measured."""
    with APIServer() as server:
        assert server._server is not None
        server._server.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
        yield server


@contextlib.contextmanager
def opened(name: str, directory: Path, clock: FakeClock) -> Iterator[tuple[RecordStore, Any]]:
    """The store, and for Lease and ConfigMap the store without the replica cache (to fill it
    as other replicas would have)."""
    if name == "memory":
        store: RecordStore = MemoryRecords(clock)
        yield store, store
    elif name == "tinydb":
        store = TinyDBRecords(directory / "dedup", clock)
        yield store, store
    else:
        with api_double() as server:
            api = server.api_client()
            inner: RecordStore = (
                LeaseRecords(api, STATE_NAMESPACE, "khook-bench", clock)
                if name == "lease"
                else ConfigMapRecords(api, STATE_NAMESPACE, clock, RETENTION)
            )
            cached = CachedRecords(inner, clock, sync_every=5.0)
            try:
                yield cached, inner
            finally:
                cached.close()


def measure(directory: Path, size: Size, names: tuple[str, ...]) -> list[StoreResult]:
    return [measure_one(name, directory / name, size) for name in names]


def measure_one(name: str, directory: Path, size: Size) -> StoreResult:
    clock = FakeClock(datetime.now(UTC))
    cluster = name in ("lease", "configmap")
    live_n, older_n = (size.cluster_live, 0) if cluster else (size.live, size.older)
    with opened(name, directory, clock) as (store, raw):
        start = time.perf_counter()
        live = fill(raw, clock.now(), live_n, older_n)
        result = StoreResult(name, f"{live_n} live + {older_n} older", time.perf_counter() - start)
        dedup = Deduplicator(store, clock, RETENTION)
        rng = random.Random(7)

        def observe(i: int) -> Observation:
            return Observation(f"bench-{i}", None, clock.now(), "Pod/x")

        def new_key(i: int) -> DedupKey:
            # Spread over the tenants' Hooks, as the live ones are: one ConfigMap holds one
            # Hook's records, at most 900 KiB of them.
            tenant = f"team-{i % 50}"
            return DedupKey(f"{tenant}/pods", "oom-kill", tenant, f"Deployment/new-{i}")

        n = size.samples
        if cluster:
            first = min(n, len(live))
            result.timings.append(
                timeit(
                    "duplicate of a live incident, first on this replica",
                    lambda i: dedup.claim(live[i], observe(i), WINDOW),
                    first,
                )
            )
        result.timings.append(
            timeit(
                "duplicate of a live incident",
                lambda i: dedup.claim(rng.choice(live), observe(n + i), WINDOW),
                n,
            )
        )
        result.timings.append(
            timeit("new incident", lambda i: dedup.claim(new_key(i), observe(i), WINDOW), n)
        )
        result.timings.append(concurrent(dedup, live, observe, size))
        prune(store, clock, result)
    return result


def concurrent(
    dedup: Deduplicator, live: list[DedupKey], observe: Callable[[int], Observation], size: Size
) -> Timing:
    """Eight senders at once, as a busy Knative source delivers: each its own thread."""
    samples: list[float] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        rng = random.Random(n)
        mine = []
        for i in range(size.sender_samples):
            start = time.perf_counter()
            dedup.claim(rng.choice(live), observe(10_000_000 + n * 100_000 + i), WINDOW)
            mine.append(time.perf_counter() - start)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return Timing("duplicate, 8 concurrent senders", samples)


def prune(store: RecordStore, clock: FakeClock, result: StoreResult) -> None:
    """A pass with nothing due, then one a retention later, which removes the older records."""
    start = time.perf_counter()
    store.prune(RETENTION)
    result.notes["prune_nothing_due_s"] = time.perf_counter() - start
    clock.advance(RETENTION)
    start = time.perf_counter()
    result.notes["pruned_records"] = store.prune(RETENTION)
    result.notes["prune_removing_s"] = time.perf_counter() - start
    if isinstance(store, TinyDBRecords):
        sizes = sorted(p.stat().st_size for p in store.path.glob("shard-*.json"))
        result.notes["shard_files"] = len(sizes)
        result.notes["largest_shard_kib_after_prune"] = sizes[-1] / 1024 if sizes else 0
