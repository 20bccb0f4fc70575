"""Every metric khook exports, defined once, in one registry.

Imported only when khook.metrics is first used, in the process that serves (a gunicorn worker):
prometheus-client picks its storage (in memory, or files shared by the workers) when it is
imported, from ``PROMETHEUS_MULTIPROC_DIR``, which gunicorn's master sets before it forks
(khook.metrics._process). Every label value is bounded: event types (the rules'), outcomes,
reason codes and failure classes (closed sets), Hooks and agents (the ones configured), store
kinds, A2A versions; never a pod name, a message or other free text.

Gauges say how several workers' values combine (``multiprocess_mode``): ``livemax`` for what
every worker computes alike from shared state (Hooks loaded, incidents in the shared store) or
what is worst in any worker (a circuit breaker), counting only workers that are alive.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from khook.metrics._process import ENV
from khook.metrics._tally import CounterTally, HistogramTally

# An agent call may take KHOOK_AGENT_TIMEOUT (30 s by default) in all.
AGENT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
# A store decision: microseconds in memory or a local cache, milliseconds in tinydb, one or a
# few API round trips in the Kubernetes stores (a client timeout of 10 s each).
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
# Request bodies up to KHOOK_MAX_BODY_BYTES (1 MiB by default); a Pod is a few KiB.
BODY_BUCKETS = (256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0)

HOOK = ("hook_namespace", "hook_name")
AGENT = ("agent_namespace", "agent_name")


class Families:
    """The metric families; one instance per process (khook.metrics makes it)."""

    def __init__(self, registry: CollectorRegistry, *, shared: bool) -> None:
        r = registry
        # Counters and histograms: prometheus-client's own in the workers' shared files, else
        # tallies (khook.metrics._tally), cheaper to count in; gauges are prometheus-client's.
        counter: Callable[..., Any] = Counter if shared else _counter_tally
        histogram: Callable[..., Any] = Histogram if shared else _histogram_tally
        # ---- the Go khook's four names, with the meaning it gives them ---------------------
        self.go_events = counter(
            "kagent_hook_events_total",
            "Events processed: CloudEvents khook judged, by the first event type it "
            "classified them as (none: no type).",
            ["event_type"],
            registry=r,
        )
        self.go_api_calls = counter(
            "kagent_hook_api_calls_total",
            "Kagent API calls: messages sent to an agent (a session's first message, a "
            "follow-up, a resolution), retries inside one call included in it.",
            [*AGENT, "result"],
            registry=r,
        )
        self.go_api_duration = histogram(
            "kagent_hook_api_call_duration_seconds",
            "Duration of Kagent API calls (each one whole call, retries included).",
            list(AGENT),
            buckets=AGENT_BUCKETS,
            registry=r,
        )
        self.go_active = Gauge(
            "kagent_hook_active_events",
            "Incidents currently active (firing: a session is open), per Hook, as the shared "
            "dedup store holds them (updated by the background sweep, every 30 s).",
            list(HOOK),
            multiprocess_mode="livemax",
            registry=r,
        )
        # ---- khook's own ------------------------------------------------------------------
        self.requests = counter(
            "khook_requests_total",
            "HTTP requests to the event endpoint (not the probes or /metrics), by status "
            "class and reason code (X-Khook-Reason).",
            ["status_class", "reason"],
            registry=r,
        )
        self.body_bytes = histogram(
            "khook_request_body_bytes",
            "Sizes of the request bodies read whole (within KHOOK_MAX_BODY_BYTES).",
            buckets=BODY_BUCKETS,
            registry=r,
        )
        self.events = counter(
            "khook_events_total",
            "What became of events: per incident (per Hook) an event touched, the state it "
            "came to (fired, followup, failed, held, duplicate, stale; as X-Khook-Outcome "
            "counts them), and per event nothing was acted on: ignored (reason: its code) or "
            "error (reason: its code; redelivered). reason is the failure class for failed.",
            ["outcome", "reason", "event_type"],
            registry=r,
        )
        self.sessions = counter(
            "khook_sessions_opened_total",
            "Agent sessions opened: an incident's own, or the Hook's overflow session.",
            list(HOOK),
            registry=r,
        )
        self.followups = counter(
            "khook_followups_sent_total",
            "Follow-ups the agent accepted into an open session (changes, resolutions, new "
            "incidents told to the overflow session).",
            list(HOOK),
            registry=r,
        )
        self.overflows = counter(
            "khook_overflows_total",
            "Incidents over the Hook's KHOOK_MAX_SESSIONS_PER_MINUTE that joined its overflow "
            "session.",
            list(HOOK),
            registry=r,
        )
        self.agent_duration = histogram(
            "khook_agent_call_duration_seconds",
            "Duration of agent calls that reached the network, by A2A version and result.",
            ["a2a_version", "result"],
            buckets=AGENT_BUCKETS,
            registry=r,
        )
        self.agent_errors = counter(
            "khook_agent_errors_total",
            "Agent calls that failed, by error kind (circuit-open: refused by khook's "
            "breaker without a call) and A2A version.",
            [*AGENT, "kind", "a2a_version"],
            registry=r,
        )
        self.circuit = Gauge(
            "khook_agent_circuit_state",
            "Circuit breaker per agent: 0 closed, 1 open, 2 half-open (a trial call under "
            "way); the highest of the live workers.",
            list(AGENT),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.circuit_opens = counter(
            "khook_agent_circuit_opens_total",
            "Times a circuit opened (after 5 failures in a row, or a failed trial call).",
            list(AGENT),
            registry=r,
        )
        self.store_seconds = histogram(
            "khook_store_decision_seconds",
            "Duration of one dedup store decision (an atomic read-modify-write of a record).",
            ["store"],
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.store_conflicts = counter(
            "khook_store_conflicts_total",
            "409 answers in the Kubernetes stores (another replica wrote first: read again).",
            ["store"],
            registry=r,
        )
        self.store_errors = counter(
            "khook_store_errors_total",
            "Dedup store operations that failed (the event is answered 503 and redelivered).",
            ["store"],
            registry=r,
        )
        self.hooks_in_force = Gauge(
            "khook_hooks_in_force",
            "Hooks in force (loaded and admitted).",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.hooks_not_in_force = Gauge(
            "khook_hooks_not_in_force",
            "Hooks not in force, by the reason of their Ready=False condition.",
            ["reason"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.watch_restarts = counter(
            "khook_watch_restarts_total",
            "Watches that failed or were cut and were resumed after a backoff.",
            ["watch"],
            registry=r,
        )
        self.watch_relists = counter(
            "khook_watch_relists_total",
            "Watches whose history had expired (410 Gone): listed again.",
            ["watch"],
            registry=r,
        )
        self.build = Gauge(
            "khook_build_info",
            "khook's version, Python's and the A2A version configured; always 1.",
            ["version", "python", "a2a_version"],
            multiprocess_mode="livemax",
            registry=r,
        )


def _counter_tally(
    name: str, documentation: str, labelnames: Sequence[str] = (), *, registry: CollectorRegistry
) -> CounterTally:
    tally = CounterTally(name, documentation, labelnames)
    registry.register(tally)
    return tally


def _histogram_tally(
    name: str,
    documentation: str,
    labelnames: Sequence[str] = (),
    *,
    buckets: Sequence[float],
    registry: CollectorRegistry,
) -> HistogramTally:
    tally = HistogramTally(name, documentation, labelnames, buckets)
    registry.register(tally)
    return tally


def make() -> tuple[CollectorRegistry, Families]:
    """This process's registry and families."""
    # A _created series per counter and histogram would double what is scraped, and
    # multiprocess mode has none: the same series whatever WORKERS is.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    return registry, Families(registry, shared=bool(os.environ.get(ENV)))


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format of every metric: summed over the workers' files in multiprocess mode
    (a registry of its own per scrape, as prometheus-client's documentation says), else this
    process's registry."""
    if os.environ.get(ENV):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)  # type: ignore[no-untyped-call]
        return prometheus_client.generate_latest(shared)
    return prometheus_client.generate_latest(registry)
