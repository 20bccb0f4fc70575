"""One set of numbers for all of gunicorn's workers: prometheus-client's multiprocess mode.

Each worker is a process with its own memory, and a scrape reaches one of them. With more than
one worker (``WORKERS``), each writes its metrics to files in a directory the workers share
(``PROMETHEUS_MULTIPROC_DIR``), and a scrape sums them up (counters and histograms: every
worker that ever ran since the start, so a restarted worker loses nothing; gauges: as each
says, see _families). prometheus-client decides between memory and files when it is *imported*,
so gunicorn's master sets the directory before it forks (the ``on_starting`` hook) and before
anything imports prometheus_client (khook.metrics imports it on first use, in the worker).

The directory is wiped at start: values of an earlier run would otherwise be added in. It is
``PROMETHEUS_MULTIPROC_DIR`` if the operator sets it, else a new directory under /dev/shm
(memory; the root filesystem may be read-only), removed when the master exits. A worker that
exits has its live gauges' files removed (gunicorn's ``child_exit``): they no longer count.
With one worker and no ``PROMETHEUS_MULTIPROC_DIR``, metrics stay in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from khook.logs import log

logger = logging.getLogger("khook.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
SHM = Path("/dev/shm")  # noqa: S108 - memory, private to the pod; the workers share it
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_created: Path | None = None  # the directory this master made, and removes at exit


def prepare(workers: int) -> None:
    """In gunicorn's master, before it forks: the directory the workers share, made or wiped
    (nothing with one worker: metrics stay in memory). Raises if prometheus_client was
    imported already without it: the workers would then each count alone, and a scrape would
    show one worker's share."""
    global _created  # noqa: PLW0603 - the master's one directory
    given = os.environ.get(ENV, "")
    if not given and workers <= 1:
        return
    if not given and "prometheus_client" in sys.modules:
        raise RuntimeError(
            "prometheus_client was imported before the metrics directory was set; "
            "set PROMETHEUS_MULTIPROC_DIR in the environment"
        )
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # an earlier run's: they would be added in
            stale.unlink()
    else:
        base = SHM if SHM.is_dir() else Path(tempfile.gettempdir())
        # The master's pid in the name: tests, and an operator, can tell whose it is.
        path = Path(tempfile.mkdtemp(prefix=f"khook-metrics-{os.getpid()}-", dir=base))
        _created = path
        os.environ[ENV] = str(path)
    log(logger, logging.INFO, "metrics shared by the workers", directory=str(path))


def child_exit(_server: Any, worker: Any) -> None:
    """gunicorn's ``child_exit`` (in the master): a worker is gone; its live gauges go too."""
    if os.environ.get(ENV):
        # Only here, in the master, once the directory is set (see prepare).
        from prometheus_client import multiprocess as mp  # noqa: PLC0415

        mp.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(_server: Any) -> None:
    """gunicorn's ``on_exit`` (the master stops): remove the directory it made."""
    global _created  # noqa: PLW0603
    if _created is not None:
        shutil.rmtree(_created, ignore_errors=True)
        _created = None
