"""New incident -> agent call sent: in process, the pipeline ``khook.runtime.build_pipeline``
makes, with an agent double that notes the time it is called. Measured from the start of
``Pipeline.process_event`` (the event already decoded) to that call: classify, match,
correlate, the dedup claim and the storm breaker's count in the store, the prompt rendered in
the sandbox process. The agent itself is excluded; ``whole`` adds the confirm written after
its answer.

The store is memory, tinydb holding 10,000 live incidents (and 100,000 older records), and
Lease and ConfigMap against the API double (fewer live incidents there: each is an object the
double holds). The storm breaker's limit is set so high that it counts but never trips.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from khook.agent import AgentRequest, AgentResult
from khook.clock import SystemClock
from khook.core.events import Action, ClusterEvent, decode_object
from khook.pipeline import Pipeline
from khook.runtime import build_pipeline
from khook.settings import Settings
from khook.stores import TinyDBRecords
from tests.bench import servers, streams
from tests.bench.stores import STATE_NAMESPACE, Size, api_double, fill
from tests.bench.timing import Timing
from tests.support.clock import FakeClock
from tests.support.events import HOOKS

OWN_HOOK = "default/pod-incidents"  # the sample Hook the new incidents are of


class StopwatchAgent:
    """An AgentClient that answers at once and notes when each call came."""

    def __init__(self) -> None:
        self.called: list[float] = []

    def send(self, request: AgentRequest) -> AgentResult:
        self.called.append(time.perf_counter())
        return AgentResult("task-bench", f"context-{request.message_id}", "submitted", "task")

    def close(self) -> None:
        pass


@dataclass
class AgentCall:
    store: str
    filled: str
    to_call: Timing
    whole: Timing

    def to_json(self) -> dict[str, Any]:
        return {
            "filled": self.filled,
            "to_call": self.to_call.to_json(),
            "whole": self.whole.to_json(),
        }


def settings(dedup: str) -> Settings:
    return Settings.coerce(
        {
            "hooks": (str(HOOKS),),
            "dedup": dedup,
            "max_sessions_per_minute": servers.SESSIONS_PER_MINUTE,
            "state_namespace": STATE_NAMESPACE,
            "pod_name": "khook-bench",
        }
    )


@contextlib.contextmanager
def pipeline_for(
    store: str, directory: Path, size: Size, agent: StopwatchAgent
) -> Iterator[tuple[Pipeline, str]]:
    now = datetime.now(UTC)
    if store == "memory":
        built = build_pipeline(settings("memory"), SystemClock(), agent=agent)
        filled = "empty"
    elif store == "tinydb":
        path = directory / "dedup"
        fill(TinyDBRecords(path, FakeClock(now)), now, size.live, size.older)
        built = build_pipeline(settings(f"tinydb:{path}"), SystemClock(), agent=agent)
        filled = f"{size.live} live + {size.older} older"
    else:
        with api_double() as server:
            api = server.api_client()
            raw = build_pipeline(settings(store), SystemClock(), agent=agent, api=api)
            # Filled as other replicas would have: through the store, not this replica's cache.
            inner = raw.dedup.store
            while hasattr(inner, "inner"):
                inner = inner.inner
            fill(inner, now, size.cluster_live, 0)
            # A tenth more of the sample Hook's own (its ConfigMap is rewritten whole).
            own = size.cluster_live // 10
            fill(inner, now, own, 0, hook=OWN_HOOK)
            try:
                yield raw, f"{size.cluster_live} live + {own} of {OWN_HOOK} (API double)"
            finally:
                raw.close()
        return
    try:
        yield built, filled
    finally:
        built.close()


def oom_events(count: int, tag: str) -> list[ClusterEvent]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        name = f"new-{tag}{i}"
        obj = streams.oom_killed(f"{name}-7d4b9c8f5-x2x9z", f"{name}-7d4b9c8f5", now)
        event = decode_object(obj, action=Action.UPDATE, observed_at=now)
        assert isinstance(event, ClusterEvent)
        out.append(event)
    return out


def measure_one(store: str, directory: Path, size: Size, samples: int) -> AgentCall:
    agent = StopwatchAgent()
    with pipeline_for(store, directory, size, agent) as (pipeline, filled):
        # Warm: the render sandbox's processes start, the Hooks are loaded, caches fill.
        for event in oom_events(5, "warm"):
            pipeline.process_event(event)
        to_call, whole = [], []
        for event in oom_events(samples, "b"):
            before = len(agent.called)
            start = time.perf_counter()
            outcome = pipeline.process_event(event)
            end = time.perf_counter()
            if len(agent.called) != before + 1:
                raise RuntimeError(f"{store}: a new incident did not call the agent: {outcome}")
            to_call.append(agent.called[-1] - start)
            whole.append(end - start)
    return AgentCall(
        store, filled, Timing("to the agent call", to_call), Timing("whole event", whole)
    )


def measure(directory: Path, size: Size, samples: int, names: tuple[str, ...]) -> list[AgentCall]:
    return [measure_one(name, directory / f"agent-{name}", size, samples) for name in names]
