"""Assembly: the Pipeline built from Settings, once per process.

The pipeline is built on first use, not at import: gunicorn imports the function in its
master process and then forks workers, and threads or open files made before the fork would
not survive into the worker that serves requests.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from khook.agent import A2AClient, A2AVersion, AgentClient, DryRunClient
from khook.clock import Clock, SystemClock
from khook.files import FileHookSource, load_rules
from khook.logs import configure, log
from khook.pipeline import Pipeline, PipelineConfig
from khook.recorder import LogRecorder
from khook.settings import Settings
from khook.stores import Deduplicator, open_store

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


def build_pipeline(
    settings: Settings, clock: Clock | None = None, agent: AgentClient | None = None
) -> Pipeline:
    clock = clock or SystemClock()
    rules = load_rules(settings.rules)
    hooks = FileHookSource(
        settings.hooks,
        known_types=rules.event_types,
        control_namespace=settings.control_namespace,
        clock=clock,
    )
    hooks.current()  # load now, so problems show at start-up
    dedup = Deduplicator(open_store(settings.dedup, clock), clock, settings.max_signal_age)
    pipeline = Pipeline(
        hooks=hooks,
        rules=rules,
        dedup=dedup,
        agent=agent or build_agent(settings, clock),
        recorder=LogRecorder(),
        clock=clock,
        config=PipelineConfig(settings.control_namespace, settings.max_signal_age),
    )
    log(
        logger,
        logging.INFO,
        "khook ready",
        hooks=list(settings.hooks),
        rules=list(settings.rules),
        eventTypes=sorted(rules.event_types),
        dedup=settings.dedup,
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
