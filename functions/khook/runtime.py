"""Assembly: the Pipeline built from Settings, once per process.

The pipeline is built on first use, not at import: gunicorn imports the function in its
master process and then forks workers, and threads or open files made before the fork would
not survive into the worker that serves requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from kubernetes.client import ApiClient

from khook.agent import A2AClient, A2AVersion, AgentClient, CircuitBreaker, DryRunClient
from khook.clock import Clock, SystemClock
from khook.cluster import (
    ClusterHookSource,
    ClusterObjectReader,
    HookEventWriter,
    HookStatusWriter,
    KubeRecorder,
)
from khook.files import FileHookSource, HookSource, load_rules
from khook.kubeapi import connect, identify, kubeconfig_namespace
from khook.logs import configure, log
from khook.pipeline import Background, Pipeline, PipelineConfig
from khook.recorder import LogRecorder, Recorder
from khook.settings import Settings
from khook.stores import CachedRecords, Deduplicator, open_store

logger = logging.getLogger("khook")

RETRY_BUILD_SECONDS = 5.0


def build_agent(settings: Settings, clock: Clock) -> AgentClient:
    version = A2AVersion(settings.a2a_version)
    if settings.effective_dry_run:
        return DryRunClient(
            version=version,
            user_id=settings.user_id,
            blocking=settings.agent_blocking,
            base_url=settings.agent_url or None,
        )
    return A2AClient(
        settings.agent_url,
        clock=clock,
        version=version,
        timeout=settings.agent_timeout,
        attempts=settings.agent_attempts,
        user_id=settings.user_id,
        token=settings.read_token,
        blocking=settings.agent_blocking,
    )


def state_namespace(settings: Settings) -> str:
    return (
        settings.state_namespace
        or settings.pod_namespace
        or kubeconfig_namespace(settings.kubeconfig)
        or "default"
    )


def build_pipeline(
    settings: Settings,
    clock: Clock | None = None,
    agent: AgentClient | None = None,
    *,
    api: ApiClient | None = None,
    background: bool = True,
) -> Pipeline:
    """The pipeline and its collaborators, as the settings say. ``api`` and ``background``
    are for tests: a client for an API double, and writers that only write when flushed."""
    clock = clock or SystemClock()
    rules = load_rules(settings.rules)
    if api is None and settings.uses_cluster:
        api = connect(in_cluster=settings.in_cluster, kubeconfig=settings.kubeconfig)
    elif api is not None:
        identify(api)
    every = 1.0 if background else 0.0
    namespace = state_namespace(settings) if api is not None else ""
    store = open_store(
        settings.effective_dedup,
        clock,
        api=api,
        namespace=namespace,
        identity=settings.identity,
        retention=settings.max_signal_age,
        sync_every=5.0 * every,
    )
    breaker = CircuitBreaker(agent or build_agent(settings, clock), clock)
    parts: list[Background] = [store] if isinstance(store, CachedRecords) else []
    hooks: HookSource
    recorder: Recorder
    if settings.hooks_from_cluster:
        assert api is not None
        events = HookEventWriter(api, clock, settings.identity, interval=every)
        status = HookStatusWriter(
            api,
            store,
            clock,
            events=events,
            unavailable_agents=breaker.unavailable,
            interval=2.0 * every,
        )
        breaker.on_change = status.agents_changed
        cluster_hooks = ClusterHookSource(
            api,
            known_types=rules.event_types,
            control_namespace=settings.control_namespace,
            clock=clock,
            namespaces=settings.watch_namespaces,
            on_change=status.hooks_changed,
            cold_start_wait=settings.cold_start_wait,
        )
        cluster_hooks.start()
        hooks, recorder = cluster_hooks, KubeRecorder(status, events)
        parts += [status, events]
    else:
        file_hooks = FileHookSource(
            settings.hooks,
            known_types=rules.event_types,
            control_namespace=settings.control_namespace,
            clock=clock,
        )
        file_hooks.current()  # load now, so problems show at start-up
        hooks, recorder = file_hooks, LogRecorder()
    pipeline = Pipeline(
        hooks=hooks,
        rules=rules,
        dedup=Deduplicator(store, clock, settings.max_signal_age),
        agent=breaker,
        recorder=recorder,
        clock=clock,
        config=PipelineConfig(settings.control_namespace, settings.max_signal_age),
        reader=ClusterObjectReader(api, clock) if api is not None else None,
        background=tuple(parts),
    )
    log(
        logger,
        logging.INFO,
        "khook ready",
        hooks="cluster" if settings.hooks_from_cluster else list(settings.hooks),
        rules=list(settings.rules),
        eventTypes=sorted(rules.event_types),
        dedup=settings.effective_dedup,
        stateNamespace=namespace or None,
        agent="dry-run" if settings.effective_dry_run else settings.agent_url,
        a2aVersion=settings.a2a_version,
        controlNamespace=settings.control_namespace,
    )
    return pipeline


class NotReady(RuntimeError):
    pass


class Runtime:
    """Holds the process's pipeline; builds it on first use and retries a failed build."""

    def __init__(self, settings: Settings, factory: Callable[[], Pipeline]) -> None:
        self.settings = settings
        self._factory = factory
        self._pipeline: Pipeline | None = None
        self._error = ""
        self._failed_at = float("-inf")
        self._lock = threading.Lock()
        self._clock = SystemClock()

    def close(self) -> None:
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.close()

    def pipeline(self) -> Pipeline:
        if self._pipeline is not None:
            return self._pipeline
        with self._lock:
            if self._pipeline is None:
                if self._clock.monotonic() - self._failed_at < RETRY_BUILD_SECONDS:
                    raise NotReady(self._error)
                try:
                    self._pipeline = self._factory()
                except Exception as exc:
                    self._failed_at = self._clock.monotonic()
                    self._error = f"khook cannot start: {exc}"
                    log(logger, logging.ERROR, "khook cannot start", error=str(exc))
                    raise NotReady(self._error) from exc
            return self._pipeline


_lock = threading.Lock()
_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime  # noqa: PLW0603 - the process's one runtime, set by `khook serve` or tests
    with _lock:
        _runtime = runtime


def for_settings(settings: Settings) -> Runtime:
    return Runtime(settings, lambda: build_pipeline(settings))


def current() -> Runtime:
    """The installed runtime; under a bare ``functions-framework`` one is made from the env."""
    global _runtime  # noqa: PLW0603
    with _lock:
        if _runtime is None:
            settings = Settings.from_env()
            configure(settings.log_level)
            _runtime = for_settings(settings)
        return _runtime
