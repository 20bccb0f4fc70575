"""Assembly: the Pipeline built from Settings, once per process.

The pipeline is built on first use, not at import: gunicorn imports the function in its
master process and then forks workers, and threads or open files made before the fork would
not survive into the worker that serves requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from khook import metrics
from khook.admission import Admission, policy_from_settings
from khook.agent import (
    A2AClient,
    A2AVersion,
    AgentClient,
    CircuitBreaker,
    DryRunClient,
    MeteredAgent,
)
from khook.auth import build_authenticator
from khook.clock import Clock, SystemClock
from khook.cluster import (
    ClusterHookSource,
    ClusterObjectReader,
    HookEventWriter,
    HookStatusWriter,
    KubeRecorder,
)
from khook.core.memory import ObjectMemory
from khook.core.tenancy import AgentPolicy, PolicyError
from khook.files import FileHookSource, HookSource, load_correlation, load_rules
from khook.kubeapi import connect, identify, kubeconfig_namespace
from khook.logs import configure, log
from khook.pipeline import Background, Pipeline, PipelineConfig
from khook.recorder import LogRecorder, Recorder
from khook.sandbox import ProcessRenderer, Renderer
from khook.sessions import Budget
from khook.settings import Settings, SettingsError
from khook.startup import preflight, shown_url
from khook.stores import CachedRecords, Deduplicator, MeteredRecords, open_store

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger("khook")

RETRY_BUILD_SECONDS = 5.0
T = TypeVar("T")


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
        max_response_bytes=settings.agent_max_response_bytes,
        max_retry_after=settings.max_retry_after,
        # Waiting for a free connection counts against the call's deadline: room for every
        # event thread and every call they fan out to.
        max_connections=settings.threads + 4 * settings.agent_concurrency,
    )


def build_renderer(settings: Settings) -> ProcessRenderer:
    """Prompts render in sandbox processes (shared by every renderer of the process)."""
    return ProcessRenderer(
        timeout=settings.render_timeout,
        memory_bytes=settings.render_memory_bytes,
        workers=settings.render_workers,
    )


def build_admission(
    settings: Settings,
    known_types: frozenset[str],
    renderer: Renderer,
    policy: AgentPolicy | None = None,
) -> Admission:
    """Which Hooks are in force, as the settings say: agent policy, quota, prompt checks."""
    return Admission(
        known_types=known_types,
        control_namespace=settings.control_namespace,
        policy=policy or policy_from_settings(settings),
        max_hooks_per_namespace=settings.max_hooks_per_namespace,
        prompt_check=renderer.check,
        check_workers=settings.render_workers,
    )


CLAIM_MARGIN_SECONDS = 5.0


def claim_timeout(settings: Settings) -> timedelta:
    """The longest one firing can hold its claim unconfirmed: the render and agent deadlines
    (both hard), plus a margin for the store's own round trips."""
    seconds = settings.render_timeout + settings.agent_timeout + CLAIM_MARGIN_SECONDS
    return timedelta(seconds=seconds)


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
    preflight(settings)
    rules = load_rules(settings.rules)
    correlation = load_correlation(settings.rules)
    for warning in (*rules.warnings, *correlation.warnings):
        log(logger, logging.WARNING, "rule pattern noted", warning=warning)
    try:
        policy = policy_from_settings(settings)
    except PolicyError as exc:
        raise SettingsError(f"KHOOK_AGENT_NAMESPACES / KHOOK_AGENT_GRANTS: {exc}") from exc
    renderer = build_renderer(settings)
    admission = build_admission(settings, rules.event_types, renderer, policy)
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
    # Measured from here on (khook.metrics): every decision and failure of the store, every
    # agent call, the breaker's refusals included (so around it).
    store = MeteredRecords(store)
    metered_agent = MeteredAgent(breaker)
    metrics.build_info(settings.a2a_version)
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
            admission=admission,
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
            admission=admission,
        )
        file_hooks.current()  # load now, so problems show at start-up
        hooks, recorder = file_hooks, LogRecorder(clock)
    try:
        authenticator = build_authenticator(settings, api, clock)
    except ValueError as exc:
        hooks.close()
        raise SettingsError(f"auth: {exc}") from exc
    pipeline = Pipeline(
        hooks=hooks,
        rules=rules,
        dedup=Deduplicator(store, clock, settings.max_signal_age, claim_timeout(settings)),
        agent=metered_agent,
        recorder=recorder,
        clock=clock,
        config=PipelineConfig(
            settings.control_namespace,
            settings.max_signal_age,
            max_calls_per_event=settings.max_calls_per_event,
            agent_concurrency=settings.agent_concurrency,
            sweep_every=30.0 * every,
        ),
        reader=ClusterObjectReader(api, clock) if api is not None else None,
        background=tuple(parts),
        authenticator=authenticator,
        renderer=renderer,
        correlation=correlation,
        memory=ObjectMemory(correlation),
        budget=Budget(sessions_per_minute=settings.max_sessions_per_minute),
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
        agent="dry-run" if settings.effective_dry_run else shown_url(settings.agent_url),
        auth=settings.auth,
        a2aVersion=settings.a2a_version,
        controlNamespace=settings.control_namespace,
    )
    return pipeline


class NotReady(RuntimeError):
    pass


class Runtime:
    """Holds the process's pipeline; builds it on first use and retries a failed build.

    The pipeline runs on a pool of ``settings.threads`` worker threads per process, made after
    gunicorn forks the worker (never in the master, whose threads would not survive the fork).
    """

    def __init__(
        self,
        settings: Settings,
        factory: Callable[[], Pipeline],
        *,
        prestart: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self._factory = factory
        self._prestart = prestart  # what warm() starts ahead of the build
        self._pipeline: Pipeline | None = None
        self._error = ""
        self._failed_at = float("-inf")
        self._lock = threading.Lock()
        self._clock = SystemClock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._warming = False

    def close(self) -> None:
        with self._lock:
            pipeline, self._pipeline = self._pipeline, None
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
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

    def built(self) -> Pipeline | None:
        """The pipeline, if it is built: never waits, never builds."""
        return self._pipeline

    def executor(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        if self._executor is None or self._executor_pid != pid:
            with self._lock:
                if self._executor is None or self._executor_pid != pid:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.settings.threads, thread_name_prefix="khook-event"
                    )
                    self._executor_pid = pid
        return self._executor

    async def run(self, work: Callable[[Pipeline], T]) -> T:
        """``work(pipeline)`` on a worker thread; the pipeline is built there first if need be
        (a cold start in cluster mode waits for the first list of Hooks)."""
        loop = asyncio.get_running_loop()
        # The caller's context goes along (run_in_executor does not copy it): the event's
        # trace and log fields (khook.trace.handling) reach the pipeline's thread.
        context = contextvars.copy_context()
        return await loop.run_in_executor(
            self.executor(), context.run, lambda: work(self.pipeline())
        )

    def warm(self, on_built: Callable[[], object] | None = None) -> None:
        """Build the pipeline in the background, so the first event does not wait for it;
        then call ``on_built``."""
        with self._lock:
            if self._warming or self._pipeline is not None:
                return
            self._warming = True
        if self._prestart is not None:
            self._prestart()

        def build() -> None:
            try:
                pipeline = self.pipeline()
            except NotReady:
                return  # logged; /readyz reports it
            finally:
                with self._lock:
                    self._warming = False
            if on_built is not None:
                on_built()
            self._announce(pipeline)

        threading.Thread(target=build, name="khook-warm", daemon=True).start()

    def _announce(self, pipeline: Pipeline) -> None:
        """Say once how many Hooks are in force, as soon as that is known (in cluster mode,
        after the first list: each wait is bounded by the cold-start wait)."""
        while self._pipeline is pipeline:
            hooks = pipeline.hooks.current(wait=True)
            if hooks.synced:
                log(
                    logger,
                    logging.INFO,
                    "khook serving",
                    hookCount=len(hooks.hooks),
                    invalidHooks=len(hooks.invalid),
                    pid=os.getpid(),
                )
                return
            self._clock.sleep(0.1)  # a source that does not wait must not spin

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports; never blocks (a build is started in the background)."""
        pipeline = self._pipeline
        if pipeline is None:
            self.warm()
            return {"ready": False, "status": "not ready", "error": self._error or "starting"}
        hooks = pipeline.hooks.current(wait=False)
        store = pipeline.dedup.health()
        state: dict[str, Any] = {
            "ready": True,
            "status": "ready",
            "hooks": len(hooks.hooks),
            "invalidHooks": len(hooks.invalid),
            "store": {"ready": store.ready, "problems": list(store.problems)},
        }
        if not hooks.synced:
            state.update(ready=False, status="not ready", error="listing Hooks")
        elif not store.ready:
            problem = store.problems[-1] if store.problems else "unavailable"
            state.update(ready=False, status="not ready", error=f"dedup store: {problem}")
        return state


_lock = threading.Lock()
_runtime: Runtime | None = None


def install(runtime: Runtime) -> None:
    global _runtime  # noqa: PLW0603 - the process's one runtime, set by `khook serve` or tests
    with _lock:
        _runtime = runtime


def for_settings(settings: Settings) -> Runtime:
    return Runtime(
        settings, lambda: build_pipeline(settings), prestart=lambda: prestart_renderer(settings)
    )


def prestart_renderer(settings: Settings) -> None:
    """Start the render processes in the background, ahead of the build: loading the Hooks
    trial-renders every prompt in them, and a process takes a while to start (on another
    CPU, while this process gets on with the build). Settings they cannot start with are left
    to the build to report."""
    with contextlib.suppress(ValueError):
        build_renderer(settings).prestart()


def current() -> Runtime:
    """The installed runtime; under a bare ``functions-framework`` one is made from the env."""
    global _runtime  # noqa: PLW0603
    installed = _runtime
    if installed is not None:
        return installed  # every request asks: no lock once there is one
    with _lock:
        if _runtime is None:
            settings = Settings.from_env()
            configure(settings.log_level)
            _runtime = for_settings(settings)
        return _runtime
