"""khook.metrics._tally: counters and histograms counted in plain numbers per thread must scrape
as prometheus-client's own families do, lose nothing to threads, and not grow with them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import prometheus_client
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram

from khook.metrics._families import BODY_BUCKETS, STORE_BUCKETS
from khook.metrics._tally import Count, CounterTally, HistogramTally

# khook's families are made with _created series off (khook.metrics._families.make).
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

LABELS = st.tuples(st.sampled_from(["a", "b", ""]), st.sampled_from(["x", "y"]))
# Bounds themselves (a bucket counts what is equal to its bound), around them, and beyond.
AMOUNTS = st.one_of(
    st.sampled_from([0.0, *STORE_BUCKETS, *BODY_BUCKETS]),
    st.floats(min_value=0, max_value=2e6, allow_nan=False),
    st.integers(min_value=0, max_value=2_000_000).map(float),
    # Never khook's (sizes and durations), but each written as prometheus-client writes it.
    st.sampled_from([-1.0, float("inf"), float("-inf"), float("nan")]),
)
# What is recorded: (labels, None) a counter increment, (labels, amount) an observation.
STEPS = st.lists(st.tuples(LABELS, st.one_of(st.none(), AMOUNTS)), max_size=60)


def pair() -> tuple[CollectorRegistry, CollectorRegistry, CounterTally, HistogramTally]:
    """prometheus-client's registry with its own families, and one with the tallies."""
    own, tallied = CollectorRegistry(), CollectorRegistry()
    Counter("things_total", "Things.", ["k", "l"], registry=own)
    Histogram("wait_seconds", "Waits.", ["k", "l"], buckets=STORE_BUCKETS, registry=own)
    Histogram("size_bytes", "Sizes.", buckets=BODY_BUCKETS, registry=own)
    counter = CounterTally("things_total", "Things.", ["k", "l"])
    histogram = HistogramTally("wait_seconds", "Waits.", ["k", "l"], STORE_BUCKETS)
    unlabelled = HistogramTally("size_bytes", "Sizes.", [], BODY_BUCKETS)
    for tally in (counter, histogram, unlabelled):
        tallied.register(tally)
    return own, tallied, counter, histogram


@settings(max_examples=200, deadline=None)
@given(STEPS)
def test_tallies_scrape_as_prometheus_clients_own_families(
    steps: list[tuple[tuple[str, str], float | None]],
) -> None:
    own, tallied, counter, histogram = pair()
    families = {name: own._names_to_collectors[name] for name in ("things", "wait_seconds")}
    sizes = own._names_to_collectors["size_bytes"]
    unlabelled = tallied._names_to_collectors["size_bytes"]
    for labels, amount in steps:
        if amount is None:
            families["things"].labels(*labels).inc()  # type: ignore[attr-defined]
            counter(*labels).inc()
        else:
            families["wait_seconds"].labels(*labels).observe(amount)  # type: ignore[attr-defined]
            histogram(*labels).observe(amount)
            sizes.observe(amount)  # type: ignore[attr-defined]
            unlabelled().observe(amount)  # type: ignore[operator]
    assert prometheus_client.generate_latest(tallied) == prometheus_client.generate_latest(own)


def test_counts_of_many_threads_are_summed_and_none_is_lost() -> None:
    counter = CounterTally("things_total", "Things.", ["k"])
    histogram = HistogramTally("size_bytes", "Sizes.", [], BODY_BUCKETS)
    threads, per_thread = 8, 2_000
    scraped: list[bytes] = []
    registry = CollectorRegistry()
    registry.register(counter)
    registry.register(histogram)
    scrapers = 2
    start = threading.Barrier(threads + scrapers)
    counts: list[int] = []

    def work() -> None:
        start.wait()
        for i in range(per_thread):
            counter("a" if i % 2 else "b").inc()
            histogram().observe(300.0)

    def scrape() -> None:  # two at once, while the threads count and end
        start.wait()
        while True:
            running = any(w.is_alive() for w in workers)
            scraped.append(prometheus_client.generate_latest(registry))
            seen = counter.totals().get(("a",))
            counts.append(seen.value if seen is not None else 0)
            if not running:
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    everyone = [*workers, *(threading.Thread(target=scrape) for _ in range(scrapers))]
    for thread in everyone:
        thread.start()
    for thread in everyone:
        thread.join()
    final = {
        s.name + str(sorted(s.labels.items())): s.value
        for family in registry.collect()
        for s in family.samples
    }
    half = threads * per_thread / 2
    assert final["things_total[('k', 'a')]"] == half
    assert final["things_total[('k', 'b')]"] == half
    assert final["size_bytes_count[]"] == threads * per_thread
    assert final["size_bytes_bucket[('le', '1024.0')]"] == threads * per_thread
    assert final["size_bytes_bucket[('le', '256.0')]"] == 0
    assert final["size_bytes_sum[]"] == 300.0 * threads * per_thread
    assert scraped  # the scrapes during the counting ran (and raised nothing)
    # No scrape saw more than was counted, whatever ended while it summed.
    assert all(n <= half for n in counts)


def test_ended_threads_are_folded_in_and_the_family_does_not_grow() -> None:
    counter = CounterTally("things_total", "Things.", ["k"])
    for _round in range(5):
        batch = [threading.Thread(target=lambda: counter("a").inc()) for _ in range(10)]
        for thread in batch:
            thread.start()
        for thread in batch:
            thread.join()
        counter.totals()
        assert counter._threads == []  # every thread that counted has ended: folded
    assert counter.totals()[("a",)].value == 50
    counter("a").inc()  # this thread, which goes on
    assert counter.totals()[("a",)].value == 51
    assert len(counter._threads) == 1


def test_threads_that_come_and_go_do_not_grow_a_family_that_is_never_scraped() -> None:
    counter = CounterTally("things_total", "Things.", ["k"])
    for _ in range(50):
        thread = threading.Thread(target=lambda: counter("a").inc())
        thread.start()
        thread.join()
    # Each thread's first count folded in those that had ended: the last one is left.
    assert len(counter._threads) == 1
    assert counter.totals()[("a",)].value == 50


@pytest.mark.parametrize(
    "call", [lambda t: t("only-one"), lambda t: t("a", "b", "c")], ids=["too few", "too many"]
)
def test_a_wrong_number_of_label_values_raises_as_prometheus_client_does(
    call: Callable[[CounterTally], object],
) -> None:
    counter = CounterTally("things_total", "Things.", ["k", "l"])
    own = Counter("things_total", "Things.", ["k", "l"], registry=CollectorRegistry())
    with pytest.raises(ValueError, match="label"):
        call(counter)
    with pytest.raises(ValueError, match="label"):
        call(own.labels)  # type: ignore[arg-type]


def test_a_label_value_that_is_not_a_string_raises() -> None:
    # prometheus-client would write str(1); a tally keeps cells by the values as given, so 1
    # and "1" would be two series with one label set: refused instead.
    counter = CounterTally("things_total", "Things.", ["k", "l"])
    with pytest.raises(TypeError, match="strings"):
        counter("a", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("buckets", [(), (1.0, 1.0), (float("inf"),)])
def test_a_histogram_needs_distinct_finite_bounds(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="bucket bounds"):
        HistogramTally("size_bytes", "Sizes.", [], buckets)


class PausingCounter(CounterTally):
    """A counter whose next new cell, once armed, waits for ``go``: a scrape stopped while it
    sums, so that another scrape can run in the middle of it."""

    def __init__(self) -> None:
        super().__init__("things_total", "Things.", ["k"])
        self.armed, self.paused, self.go = False, threading.Event(), threading.Event()

    def _cell(self) -> Count:
        if self.armed:
            self.armed = False
            self.paused.set()
            self.go.wait()
        return super()._cell()


def test_a_scrape_during_another_does_not_count_a_thread_twice() -> None:
    counter = PausingCounter()

    def counts_then_waits(counted: threading.Event, release: threading.Event) -> None:
        counter("a").inc()
        counted.set()
        release.wait()

    first_counted, first_go = threading.Event(), threading.Event()
    first = threading.Thread(target=counts_then_waits, args=(first_counted, first_go))
    first.start()
    first_go.set()
    first.join()
    assert counter.totals()[("a",)].value == 1  # the ended thread is folded in
    second_counted, second_go = threading.Event(), threading.Event()
    second = threading.Thread(target=counts_then_waits, args=(second_counted, second_go))
    second.start()
    second_counted.wait()  # its first count registered it
    result: list[int] = []
    counter.armed = True
    scrape = threading.Thread(target=lambda: result.append(counter.totals()[("a",)].value))
    scrape.start()
    counter.paused.wait()  # the scrape is summing
    second_go.set()
    second.join()  # the second thread ends meanwhile
    if not counter._lock.locked():  # a scrape may run now: it folds the ended thread in
        assert counter.totals()[("a",)].value == 2
    counter.go.set()
    scrape.join()
    assert result == [2]  # not 3: the ended thread once, however the two scrapes met
    assert counter.totals()[("a",)].value == 2
