"""Per-stage timings, in process, on the pipeline ``build_pipeline`` makes (memory store, the
sample Hooks, dry-run agent, prompts rendered in the sandbox process): each stage called as
the pipeline calls it, on its own collaborators, for an event no Hook wants, a new incident
and a repeat of a live incident. ``whole`` is parse + ``Pipeline.process`` (everything a
request costs but HTTP), on requests of its own.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from khook import metrics
from khook.agent import DryRunClient
from khook.clock import SystemClock
from khook.core.classify import classify
from khook.core.cloudevent import parse
from khook.core.correlate import Incident, correlate
from khook.core.events import ClusterEvent, decode
from khook.core.match import match
from khook.core.messages import prompt_facts
from khook.core.outcome import Outcome
from khook.core.reasons import Code, Reason
from khook.pipeline import Pipeline
from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.bench import servers, streams
from tests.bench.timing import Timing, timeit
from tests.support.events import HOOKS

T = TypeVar("T")
STAGES = ("parse", "decode", "classify", "match", "correlate", "dedup", "render", "whole")
KINDS = ("not of interest", "new incident", "repeat")


class Stopwatch:
    """Per-stage samples of one kind of event."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {stage: [] for stage in STAGES}

    def time(self, stage: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        value = fn()
        self.samples[stage].append(time.perf_counter() - start)
        return value

    def timings(self) -> dict[str, Timing]:
        return {s: Timing(s, v) for s, v in self.samples.items() if v}


def stages(pipeline: Pipeline, request: tuple[dict[str, str], bytes], watch: Stopwatch) -> None:
    """One event through the stages, as Pipeline.process_event takes it (file mode: no owner
    lookups), stopping where the pipeline would."""
    control = pipeline.config.control_namespace
    envelope = watch.time("parse", lambda: parse(*request))
    event = watch.time("decode", lambda: decode(envelope, pipeline.clock.now()))
    assert isinstance(event, ClusterEvent)
    detections = watch.time("classify", lambda: classify(event, pipeline.rules))
    if not detections:
        return
    matches = watch.time(
        "match",
        lambda: match(
            event,
            detections,
            pipeline.hooks.current().visible_to(event.namespace, control),
            control,
        ),
    )

    def placed() -> list[tuple[Any, Incident]]:
        pipeline.memory.observe(event, detections)
        out = []
        for m in matches:
            for d in m.detections:
                facts = pipeline.memory.facts(event, d)
                item = correlate(
                    event,
                    m.hook,
                    m.config,
                    d,
                    table=pipeline.correlation,
                    facts=facts,
                    control_namespace=control,
                )
                assert isinstance(item, Incident)
                out.append((m.hook, item))
        return out

    hook, item = watch.time("correlate", placed)[0]
    claim = watch.time("dedup", lambda: pipeline.dedup.claim(item.key, item.sighting, item.policy))
    if claim.record is None or claim.previous is not None:
        return  # a repeat: nothing to render
    facts = prompt_facts(event, hook, item, claim.record)
    watch.time("render", lambda: pipeline.renderer.render(item.config.prompt, facts, event.object))


def measure(samples: int) -> dict[str, dict[str, Timing]]:
    settings = Settings.coerce(
        {
            "hooks": (str(HOOKS),),
            "dedup": "memory",
            "max_sessions_per_minute": servers.SESSIONS_PER_MINUTE,
        }
    )
    agent = DryRunClient(out=io.StringIO())
    pipeline = build_pipeline(settings, SystemClock(), agent=agent)
    try:
        return _measure(pipeline, samples)
    finally:
        pipeline.close()


def _measure(pipeline: Pipeline, samples: int) -> dict[str, dict[str, Timing]]:
    now = datetime.now(UTC)
    ignored = streams.sample(now)
    new = streams.new_incident(now)
    live = streams.live_incidents(now)[0]
    pipeline.process(parse(*live.render("open", 1)))
    requests: dict[str, Callable[[str], tuple[dict[str, str], bytes]]] = {
        KINDS[0]: ignored,
        KINDS[1]: lambda token: new.render(token, 1),
        KINDS[2]: lambda token: live.render(token, 1),
    }
    out = {}
    for kind, make in requests.items():
        for i in range(20):  # warm: the sandbox's processes, caches
            pipeline.process(parse(*make(f"warm{i}")))
        watch = Stopwatch()
        for i in range(samples):
            stages(pipeline, make(f"s{i}"), watch)
        for i in range(samples):
            request = make(f"w{i}")
            watch.time("whole", lambda r=request: pipeline.process(parse(*r)))  # type: ignore[misc]
        out[kind] = watch.timings()
    return out


def metrics_costs(samples: int) -> dict[str, Timing]:
    """What metrics add to an event no Hook wants (the pipeline's count, the HTTP entry's two),
    and what formatting a scrape of GET /metrics costs the event loop."""
    ignored = Outcome(ignored=Reason(Code.NO_RULE, "no classification rule matched"))

    def count(_: int) -> None:
        metrics.event_processed(ignored)
        metrics.answered(202, "no-rule; no classification rule matched")
        metrics.body_size(1500)

    return {
        "metrics of an event not of interest": timeit("metrics", count, samples * 20),
        "GET /metrics, formatting the scrape": timeit(
            "scrape", lambda _: metrics.scrape(), samples
        ),
    }
