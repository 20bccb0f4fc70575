"""The bench's streams (tests/bench/streams.py) are what they claim to be, answered by the real
function with the bench's settings: nothing of interest is all ignored, a new incident fires
once, a repeat of a live incident is a duplicate, the storm is one incident, every answer is
202. And the load generators fill the placeholders in as the templates mean. No timings here:
the bench is the measurement."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from khook.clock import SystemClock
from khook.settings import Settings
from tests.bench import load, servers, streams
from tests.support.events import outcome
from tests.support.function import FunctionServer

OUTCOME = "X-Khook-Outcome"
NOTHING = outcome()


@pytest.fixture
def fn() -> Iterator[FunctionServer]:
    # The bench's khook settings (sample Hooks, memory store, dry run, the breaker counting
    # but never tripping); the system clock, as the streams' times are now.
    settings = Settings.from_env(servers.khook_env())
    with FunctionServer(settings, SystemClock()) as server:
        yield server


def send(fn: FunctionServer, template: streams.Template, token: str, n: int = 1) -> str:
    answer = fn.post(*template.render(token, n))
    assert answer.status_code == 202, (template.kind, answer.headers.get("X-Khook-Reason"))
    return answer.headers[OUTCOME]


def test_nothing_of_interest_is_all_ignored(fn: FunctionServer) -> None:
    stream = streams.build("nothing")
    assert {t.kind for t in stream.templates} == {streams.IGNORED}
    kinds = Counter(t.headers["ce-kind"] for t in stream.templates)
    assert set(kinds) == {"Event", "Pod", "Node"}
    for i, template in enumerate(stream.templates * 2):
        assert send(fn, template, f"t{i}") == NOTHING


def test_realistic_new_incidents_fire_once_and_repeats_are_duplicates(fn: FunctionServer) -> None:
    stream = streams.build("realistic")
    assert (stream.share(streams.IGNORED), stream.share(streams.REPEAT)) == (0.85, 0.10)
    assert stream.share(streams.NEW) == 0.05
    for template in stream.prime:
        assert send(fn, template, "prime") == outcome(fired=1)
    expected = {
        streams.IGNORED: NOTHING,
        streams.NEW: outcome(fired=1),
        streams.REPEAT: outcome(duplicate=1),
    }
    for i, template in enumerate(stream.templates):
        assert send(fn, template, f"r1t1n{i}") == expected[template.kind], template.kind
    # New only by its token: the same request again is a duplicate.
    new = next(t for t in stream.templates if t.kind == streams.NEW)
    assert send(fn, new, "r1t1n0") == outcome(fired=1)
    assert send(fn, new, "r1t1n0") == outcome(duplicate=1)


def test_the_storm_is_one_incident(fn: FunctionServer) -> None:
    stream = streams.build("storm")
    totals: Counter[str] = Counter()
    for round_ in range(2):
        for i, template in enumerate(stream.templates):
            answer = send(fn, template, f"s{round_}n{i}", n=round_ * 1000 + i + 1)
            counts = {k: int(v) for k, v in (part.split("=") for part in answer.split())}
            assert sum(counts.values()) == 1, answer  # each request counts in the incident
            totals.update(counts)
    assert totals["fired"] == 1
    assert totals["failed"] == totals["stale"] == 0
    assert totals["duplicate"] > 0.9 * len(stream.templates) * 2


@pytest.mark.parametrize("generator", ["wrk", "python"])
def test_load_generators_fill_in_the_placeholders(
    fn: FunctionServer, generator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if generator == "wrk" and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install wrk)")
    if generator == "python":
        monkeypatch.setattr(load, "generator", lambda: "python")
    stream = streams.build("realistic")
    for template in stream.prime:
        send(fn, template, "prime")
    result = load.run(fn.url, stream.templates, seconds=1, run_id="7", workdir=tmp_path)
    assert result.generator == generator
    assert result.requests > 20
    assert result.non202 == result.errors == 0
    # Every new incident fired (unique names), every repeat was a duplicate, nothing failed:
    # twice as many repeats as new incidents, give or take where each sender stopped in the
    # sequence (any stretch of it is within 6 of that ratio; wrk has 2 senders, the fallback 8).
    fired, duplicate = result.outcomes["fired"], result.outcomes["duplicate"]
    assert fired > 0
    assert abs(fired * 2 - duplicate) <= 6 * load.CONNECTIONS
    assert result.outcomes["failed"] == result.outcomes["stale"] == 0
