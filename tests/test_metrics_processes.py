"""/metrics with two gunicorn workers (WORKERS=2), both ways khook is served: `khook serve` and
`functions-framework --target handle`. Each worker counts in its own files; any worker's scrape
sums them all, so what was sent is counted exactly once, whichever worker took it.

Which worker takes a connection is the kernel's choice: the tests send until the workers'
files show that both took some (bounded), then compare the scrape with what was sent.
"""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from khook.metrics._process import SHM
from tests.support.cluster import wait_until
from tests.support.events import apiserver_event, binary, oom_status, outcome, pod
from tests.support.metrics import Scrape, as_labels, scrape
from tests.support.process import Served, clean_env, functions_framework, khook_serve

HOOKS = """
apiVersion: kagent.dev/v1alpha2
kind: Hook
metadata: {name: workers-hook, namespace: default}
spec:
  eventConfigurations:
    - eventType: oom-kill
      agentRef: {name: k8s-agent, namespace: kagent}
      prompt: "{{.ResourceName}} was OOM-killed."
"""
REQUEST = binary(apiserver_event(pod(container_statuses=[oom_status()])))
BATCH = 8  # concurrent sends: connections the workers race to accept
MAX_BATCHES = 25


def requests_per_worker(directory: Path) -> dict[int, float]:
    """khook_requests_total of each worker, read from its own counter file."""
    counts: dict[int, float] = {}
    for file in directory.glob("counter_*.db"):
        pid = int(file.stem.split("_")[1])
        merged = MultiProcessCollector.merge([str(file)], accumulate=False)  # type: ignore[no-untyped-call]
        counts[pid] = sum(
            s.value for m in merged for s in m.samples if s.name == "khook_requests_total"
        )
    return counts


def send_until_both_workers_served(served: Served, directory: Path) -> int:
    """The first delivery fires; then duplicates, in concurrent batches, until two workers have
    answered some. Returns how many were sent."""
    assert served.post(*REQUEST).headers["X-Khook-Outcome"] == outcome(fired=1)
    sent = 1
    with ThreadPoolExecutor(BATCH) as pool:
        for _ in range(MAX_BATCHES):
            answers = list(pool.map(lambda _i: served.post(*REQUEST), range(BATCH)))
            assert {r.headers["X-Khook-Outcome"] for r in answers} == {outcome(duplicate=1)}
            sent += BATCH
            if sum(1 for n in requests_per_worker(directory).values() if n > 0) >= 2:
                return sent
    raise AssertionError(f"one worker took all {sent} connections")


def check_sums(served: Served, directory: Path, sent: int) -> Scrape:
    per_worker = requests_per_worker(directory)
    assert sum(per_worker.values()) == sent
    assert all(n < sent for n in per_worker.values()), per_worker
    # Whichever worker answers the scrape, the sum over both.
    scrapes = [scrape(served.get) for _ in range(4)]
    for seen in scrapes:
        assert as_labels(seen.moved(Scrape(""), "khook_requests_total")) == {
            ("fired", "2xx"): 1,
            ("duplicate", "2xx"): sent - 1,
        }
        assert as_labels(seen.moved(Scrape(""), "khook_events_total")) == {
            ("oom-kill", "fired", ""): 1,
            ("oom-kill", "duplicate", ""): sent - 1,
        }
        assert seen.value("kagent_hook_events_total", event_type="oom-kill") == sent
        assert seen.value("khook_request_body_bytes_count") == sent
        # Gauges: every worker loaded the same Hook; the highest live value, not a sum.
        assert seen.value("khook_hooks_in_force") == 1
    return scrapes[-1]


def test_khook_serve_sums_two_workers(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(HOOKS)
    env = clean_env(tmp_path, WORKERS="2", THREADS="2")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    args = ("--hooks", str(hooks), "--dedup", f"tinydb:{tmp_path / 'dedup'}")
    with khook_serve(*args, directory=tmp_path, env=env) as served:
        # No PROMETHEUS_MULTIPROC_DIR: the master made one in memory, named after itself.
        base = SHM if SHM.is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
        [directory] = base.glob(f"khook-metrics-{served.process.pid}-*")
        sent = send_until_both_workers_served(served, directory)
        check_sums(served, directory, sent)

        # A worker that dies: its counts stay (its counter file), its live gauges go
        # (gunicorn's child_exit), and gunicorn starts another in its place.
        victim = max(requests_per_worker(directory))
        assert (directory / f"gauge_livemax_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: not (directory / f"gauge_livemax_{victim}.db").exists(),
            timeout=30,
            what="the dead worker's live gauges to go",
        )
        wait_until(lambda: _ready(served), timeout=30, what="a worker to answer again")
        check_sums(served, directory, sent)
    assert not directory.exists(), "the master removes the directory it made"


def test_functions_framework_sums_two_workers_and_wipes_an_old_run(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks.yaml"
    hooks.write_text(HOOKS)
    directory = tmp_path / "metrics"
    directory.mkdir()
    # What an earlier run left: 1000 requests, which must not be added to this run's.
    old = MmapedDict(str(directory / "counter_999999.db"))
    old.write_value(
        mmap_key(
            "khook_requests",
            "khook_requests_total",
            ["status_class", "reason"],
            ["2xx", "fired"],
            "old",
        ),
        1000.0,
        0.0,
    )
    old.close()
    env = clean_env(
        tmp_path,
        WORKERS="2",
        THREADS="2",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        KHOOK_HOOKS=str(hooks),
        KHOOK_DEDUP=f"tinydb:{tmp_path / 'dedup'}",
    )
    with functions_framework(tmp_path, env) as served:
        assert not (directory / "counter_999999.db").exists()
        sent = send_until_both_workers_served(served, directory)
        check_sums(served, directory, sent)


def _ready(served: Served) -> bool:
    try:
        return served.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
