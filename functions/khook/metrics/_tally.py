"""Counters and histograms kept in plain numbers and summed when scraped: khook's counters and
histograms when its metrics live in the process's memory (one worker, the default).

prometheus-client's own counter takes a lock and makes three Python calls for every increment,
and its histogram walks its buckets in a Python loop besides: on the realistic stream of
``make bench``, metrics were about a twentieth of the instructions of a request. Here an
increment adds to a cell that only its own thread writes (each thread has cells of its own,
so no increment is lost and none takes a lock), and the cells are summed over the threads
when a scrape collects the family, through prometheus-client's custom collector interface:
the same text, sample for sample, as prometheus-client's own families give.

With several workers the numbers must be in prometheus-client's shared files
(khook.metrics._process), so there the families are prometheus-client's own.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

__all__ = ["Count", "CounterTally", "HistogramTally", "Observations"]

_INF = float("inf")


class Count:
    """One label set's counter, in one thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def add(self, other: Count) -> None:
        self.value += other.value


class Observations:
    """One label set's histogram, in one thread: a count per bucket (not cumulative; the last
    is +Inf's) and the sum of what was observed."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        self.sum += amount  # first: what cannot be added is counted nowhere
        if amount <= _INF:  # false for NaN only: into the sum only, as in prometheus-client
            # A bucket counts what is less than or equal to its bound ("le").
            self.counts[bisect_left(self.bounds, amount)] += 1

    def add(self, other: Observations) -> None:
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum


Cell = TypeVar("Cell", Count, Observations)


class _Tally(Generic[Cell]):
    """A family: its cells by thread and label values. A thread's cells are written by that
    thread only; a scrape reads them all under the family's lock (a dict copy and number
    reads: atomic under the GIL). The cells of threads that have ended are folded into
    ``_ended`` when a thread first records and at a scrape, so a pool that replaces its
    threads keeps the family as large as its live threads (a thread Python did not start, a
    "dummy" one, never ends for ``threading``: none of khook's records metrics)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._local = threading.local()
        self._lock = threading.Lock()  # guards _threads and _ended, never held by a recorder
        self._threads: list[tuple[threading.Thread, dict[tuple[str, ...], Cell]]] = []
        self._ended: dict[tuple[str, ...], Cell] = {}

    def __call__(self, *values: str) -> Cell:
        """The calling thread's cell for ``values`` (the label values, in order)."""
        try:
            cells: dict[tuple[str, ...], Cell] = self._local.cells
        except AttributeError:
            cells = self._thread_cells()
        cell = cells.get(values)
        return cell if cell is not None else self._new_cell(cells, values)

    def _thread_cells(self) -> dict[tuple[str, ...], Cell]:
        cells: dict[tuple[str, ...], Cell] = {}
        with self._lock:
            self._fold_ended()
            self._threads.append((threading.current_thread(), cells))
        self._local.cells = cells
        return cells

    def _fold_ended(self) -> None:
        """Under the lock: the cells of threads that have ended, into ``_ended``."""
        for entry in [e for e in self._threads if not e[0].is_alive()]:
            self._threads.remove(entry)
            _fold(self._ended, entry[1], self._cell)

    def _new_cell(self, cells: dict[tuple[str, ...], Cell], values: tuple[str, ...]) -> Cell:
        # As prometheus-client's labels() checks its arguments.
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected")
        if not all(isinstance(value, str) for value in values):
            raise TypeError(f"{self.name}: label values are strings")
        cell = cells[values] = self._cell()
        return cell

    def _cell(self) -> Cell:
        raise NotImplementedError

    def totals(self) -> dict[tuple[str, ...], Cell]:
        """Every label set's cell summed over the threads (new cells: nothing shared). All of
        it under the lock: a thread folded into ``_ended`` by another scrape meanwhile would
        otherwise be counted twice by this one."""
        totals: dict[tuple[str, ...], Cell] = {}
        if not self.labelnames:  # one series, shown from the start (as prometheus-client does)
            totals[()] = self._cell()
        with self._lock:
            self._fold_ended()
            _fold(totals, self._ended, self._cell)
            for _, cells in self._threads:
                _fold(totals, cells.copy(), self._cell)  # a copy: its thread may add a key
        return totals

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


def _fold(
    into: dict[tuple[str, ...], Cell], cells: dict[tuple[str, ...], Cell], new: Callable[[], Cell]
) -> None:
    for values, cell in cells.items():
        total = into.get(values)
        if total is None:
            total = into[values] = new()
        total.add(cell)


class CounterTally(_Tally[Count]):
    """A counter family (``name`` as prometheus-client's Counter takes it: ``_total`` added)."""

    def _cell(self) -> Count:
        return Count()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, cell in self.totals().items():
            family.add_metric(values, float(cell.value))
        yield family


class HistogramTally(_Tally[Observations]):
    """A histogram family with the bucket bounds given (+Inf added)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, documentation, labelnames)
        bounds = tuple(sorted(float(b) for b in buckets if b != _INF))
        if not bounds or len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: distinct finite bucket bounds expected")
        self.bounds = bounds
        # The "le" values as prometheus-client writes them.
        self._les = [*(floatToGoString(b) for b in bounds), "+Inf"]  # type: ignore[no-untyped-call]

    def _cell(self) -> Observations:
        return Observations(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, cell in self.totals().items():
            cumulative, buckets = 0, []
            for le, n in zip(self._les, cell.counts, strict=True):
                cumulative += n
                buckets.append((le, float(cumulative)))
            family.add_metric(values, buckets, cell.sum)
        yield family
