"""What khook does, counted for Prometheus (``GET /metrics``).

Every recording function here is cheap: label sets come from bounded closed sets or from the
configuration, and each family's children are cached by their label values, so counting an
event costs dictionary lookups and increments, never a new label set once warm. With metrics
in memory (one worker), counters and histograms are tallies (khook.metrics._tally): plain
numbers per thread, summed at a scrape. The metric
families are made on first use (khook.metrics._families), in the process that records them:
prometheus_client is imported only then, after gunicorn's master has told it, through the
environment, whether its workers share their numbers (khook.metrics._process).

Outcomes are counted where they are made (khook.pipeline: every event, and what the background
sweep resolves); agent calls around the agent client and its breaker (khook.agent), store
decisions around the dedup store (khook.stores), Hooks as they are loaded (khook.files,
khook.cluster), watches where they restart (khook.listwatch), requests at the HTTP entry.
"""

from __future__ import annotations

import platform
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from khook import __version__
from khook.core.hooks import Reason as HookReason
from khook.core.outcome import Outcome, Status
from khook.core.reasons import Code
from khook.metrics._process import CONTENT_TYPE, child_exit, on_exit, prepare

if TYPE_CHECKING:
    from khook.metrics._families import Families

__all__ = [
    "CLOSED",
    "CONTENT_TYPE",
    "HALF_OPEN",
    "OPEN",
    "active_incidents",
    "agent_call",
    "agent_error",
    "answered",
    "body_size",
    "build_info",
    "child_exit",
    "circuit",
    "event_processed",
    "hooks_loaded",
    "on_exit",
    "prepare",
    "scrape",
    "store_conflict",
    "store_decision",
    "store_error",
    "swept",
    "watch_relisted",
    "watch_restarted",
]

CLOSED, OPEN, HALF_OPEN = 0, 1, 2

_lock = threading.Lock()
_registry: Any = None


class _Children:
    """A family's children by label values, cached: ``labels()`` validates its arguments and
    takes the family's lock on every call; a warm lookup here is one dict get."""

    __slots__ = ("_cache", "_family")

    def __init__(self, family: Any, *, unlabelled: bool = False) -> None:
        self._family = family
        # A family without labels is its own child (its labels() would raise).
        self._cache: dict[tuple[str, ...], Any] = {(): family} if unlabelled else {}

    def __call__(self, *values: str) -> Any:
        child = self._cache.get(values)
        if child is None:
            child = self._cache.setdefault(values, self._family.labels(*values))
        return child


def _children(family: Any, *, unlabelled: bool = False) -> Any:
    """How a family's children are reached: a tally (khook.metrics._tally, the only callable
    family) is its own per-thread cache; prometheus-client's families are cached here."""
    return family if callable(family) else _Children(family, unlabelled=unlabelled)


class _Metrics:
    """The families and their cached children."""

    def __init__(self, families: Families) -> None:
        self.f = families
        self.go_events = _children(families.go_events)
        self.go_api_calls = _children(families.go_api_calls)
        self.go_api_duration = _children(families.go_api_duration)
        self.go_active = _children(families.go_active)
        self.requests = _children(families.requests)
        self.body_bytes = _children(families.body_bytes, unlabelled=True)
        self.events = _children(families.events)
        self.sessions = _children(families.sessions)
        self.followups = _children(families.followups)
        self.overflows = _children(families.overflows)
        self.agent_duration = _children(families.agent_duration)
        self.agent_errors = _children(families.agent_errors)
        self.circuit = _children(families.circuit)
        self.circuit_opens = _children(families.circuit_opens)
        self.store_seconds = _children(families.store_seconds)
        self.store_conflicts = _children(families.store_conflicts)
        self.store_errors = _children(families.store_errors)
        self.hooks_not_in_force = _children(families.hooks_not_in_force)
        self.watch_restarts = _children(families.watch_restarts)
        self.watch_relists = _children(families.watch_relists)
        self.active_hooks: set[tuple[str, str]] = set()  # Hooks the active gauge was set for


_metrics: _Metrics | None = None


def _m() -> _Metrics:
    metrics = _metrics
    return metrics if metrics is not None else _make()


def _make() -> _Metrics:
    global _metrics, _registry  # noqa: PLW0603 - the process's one set of families
    with _lock:
        if _metrics is None:
            # The one import of prometheus_client, on first use: see the module's docstring.
            from khook.metrics._families import make  # noqa: PLC0415

            _registry, families = make()
            _metrics = _Metrics(families)
        return _metrics


# ---- the HTTP entry -------------------------------------------------------------------------

_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_CODES = frozenset(code.value for code in Code)


def answered(status: int, reason_header: str) -> None:
    """An answer of the event endpoint; ``reason_header`` is its ``X-Khook-Reason``
    (``<code>; <text>``): only the code is a label."""
    code = reason_header.partition(";")[0].strip()
    _m().requests(_CLASSES.get(status // 100, "other"), code if code in _CODES else "other").inc()


def body_size(size: int) -> None:
    _m().body_bytes().observe(size)


def scrape() -> bytes:
    """The exposition in Prometheus's text format (``CONTENT_TYPE``)."""
    _m()  # made by now, so _families is imported
    from khook.metrics._families import exposition  # noqa: PLC0415 - loaded by _m()

    return exposition(_registry)


def build_info(a2a_version: str) -> None:
    _m().f.build.labels(__version__, platform.python_version(), a2a_version).set(1)


# ---- outcomes -------------------------------------------------------------------------------

# How each incident state is counted: as X-Khook-Outcome counts it.
_OUTCOMES = {
    Status.FIRED: "fired",
    Status.FOLLOWUP: "followup",
    Status.RESOLVED: "followup",
    Status.FAILED: "failed",
    Status.HELD: "held",
    Status.DUPLICATE: "duplicate",
    Status.IN_FLIGHT: "duplicate",
    Status.STALE: "stale",
}


def event_processed(outcome: Outcome) -> None:
    """One CloudEvent judged by the pipeline. An event no Hook wants (most events) costs two
    counter increments."""
    m = _m()
    types = outcome.event_types
    first = types[0] if types else "none"
    m.go_events(first).inc()
    if outcome.results:
        for result in outcome.incidents():
            reason = result.failure if result.status is Status.FAILED else ""
            m.events(_OUTCOMES[result.status], reason, result.config.event_type).inc()
        _sessions(m, outcome)
    if outcome.error is not None:
        m.events("error", outcome.error.code, first).inc()
    elif not outcome.results:
        # A Code is a str (StrEnum): its own label value, without the enum's .value lookup.
        code = outcome.ignored.code if outcome.ignored else Code.NO_HOOK
        m.events("ignored", code, first).inc()


def swept(outcome: Outcome) -> None:
    """What the background sweep resolved: not events, but resolutions told to sessions."""
    _sessions(_m(), outcome)


def _sessions(m: _Metrics, outcome: Outcome) -> None:
    for r in outcome.results:
        hook = (r.hook.namespace, r.hook.name)
        if r.status is Status.FIRED:
            m.sessions(*hook).inc()
        elif r.status is Status.FOLLOWUP or (r.status is Status.RESOLVED and r.agent_called):
            m.followups(*hook).inc()
        if r.overflow:
            m.overflows(*hook).inc()


def active_incidents(
    counts: Mapping[tuple[str, str], int], unlisted: Iterable[tuple[str, str]] = ()
) -> None:
    """Per Hook (namespace, name), the incidents firing now. Hooks gone since the last call
    show 0 (a multiprocess gauge cannot drop a label set); ``unlisted`` ones, whose incidents
    could not be read, keep what they showed."""
    m = _m()
    with _lock:
        kept = m.active_hooks & set(unlisted)
        gone = m.active_hooks - counts.keys() - kept
        m.active_hooks = set(counts) | kept
    for hook, count in counts.items():
        m.go_active(*hook).set(count)
    for hook in gone:
        m.go_active(*hook).set(0)


# ---- Hooks, watches -------------------------------------------------------------------------


def hooks_loaded(in_force: int, not_in_force: Iterable[str]) -> None:
    """The Hooks now in force, and the reason (a ``Ready=False`` reason) of each that is not;
    every reason is set, 0 when no Hook has it."""
    m = _m()
    m.f.hooks_in_force.set(in_force)
    tally = dict.fromkeys((reason.value for reason in HookReason), 0)
    for reason in not_in_force:
        tally[reason] = tally.get(reason, 0) + 1
    for reason, count in tally.items():
        m.hooks_not_in_force(reason).set(count)


def watch_restarted(watch: str) -> None:
    _m().watch_restarts(watch).inc()


def watch_relisted(watch: str) -> None:
    _m().watch_relists(watch).inc()


# ---- agents ---------------------------------------------------------------------------------


def agent_call(namespace: str, name: str, version: str, seconds: float, *, ok: bool) -> None:
    """A call that reached the network (or the dry run's printer)."""
    m = _m()
    result = "success" if ok else "error"
    m.go_api_calls(namespace, name, result).inc()
    m.go_api_duration(namespace, name).observe(seconds)
    m.agent_duration(version, result).observe(seconds)


def agent_error(namespace: str, name: str, kind: str, version: str) -> None:
    _m().agent_errors(namespace, name, kind, version).inc()


def circuit(agent: str, state: int, *, opened: bool = False) -> None:
    """The breaker of ``agent`` (``namespace/name``) is now ``state``."""
    namespace, _, name = agent.partition("/")
    m = _m()
    m.circuit(namespace, name).set(state)
    if opened:
        m.circuit_opens(namespace, name).inc()


# ---- the dedup store ------------------------------------------------------------------------


def store_decision(store: str, seconds: float) -> None:
    _m().store_seconds(store).observe(seconds)


def store_error(store: str) -> None:
    _m().store_errors(store).inc()


def store_conflict(store: str) -> None:
    _m().store_conflicts(store).inc()
