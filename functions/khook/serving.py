"""The HTTP server around the function: gunicorn, uvicorn workers, khook's HTTP protocol.

functions-framework serves an ASGI function with gunicorn and uvicorn workers. khook keeps
that stack; each worker, under either command, serves with khook's protocol
(khook.http_protocol: httptools, with bounds on what a client may cost before it has sent a
whole request: the request line and headers at most ``HEAD_LIMIT`` bytes, sent within
``HEAD_TIMEOUT`` seconds); the body is read by the function itself, within
``KHOOK_REQUEST_TIMEOUT`` and ``KHOOK_MAX_BODY_BYTES``.

It also makes gunicorn's own lines JSON (:class:`JSONLogger`) and gives gunicorn khook's
hooks: a start line once it listens, the pipeline built in each worker as it starts, and what
background writers hold written as a worker exits. ``khook serve`` runs gunicorn itself
(:class:`GunicornApp`, gunicorn's documented custom-application API); under the
``functions-framework`` command, which builds gunicorn's configuration itself,
:func:`under_functions_framework` does the same through gunicorn's setting defaults.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import gunicorn.config  # type: ignore[import-untyped]
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]
from gunicorn.glogging import Logger as GunicornLogger  # type: ignore[import-untyped]
from uvicorn_worker import UvicornWorker

from khook import metrics, runtime
from khook.http_protocol import HEAD_TIMEOUT, GuardedHttpToolsProtocol
from khook.logs import JSONFormatter, configure, log
from khook.settings import Settings
from khook.startup import settings_or_exit, shown_url

logger = logging.getLogger("khook")

KEEP_ALIVE = 5


# What uvicorn does by default for every request and khook has no use for: a ``Server:
# uvicorn`` header on every answer (it tells a scanner the software, and costs a header on
# every answer), and the client's address and scheme rewritten from X-Forwarded-For/-Proto (khook
# never reads them; behind Knative's queue-proxy the client is always 127.0.0.1, which uvicorn
# trusts, so it copied every request's headers to look); and WebSockets (were a WebSocket
# library installed, uvicorn would hand an upgraded connection to a protocol outside khook's
# bounds). Set in both commands' workers (see :func:`hooks`).
TRIMMED = {"server_header": False, "proxy_headers": False, "ws": "none"}


def uvicorn_options(head_timeout: float = HEAD_TIMEOUT) -> dict[str, Any]:
    """What uvicorn needs, the same under gunicorn (khook serve) and in tests."""
    return {
        "http": http_protocol(head_timeout),
        "loop": "asyncio",
        "timeout_keep_alive": KEEP_ALIVE,
        **TRIMMED,
        "log_level": "warning",
        "access_log": False,
    }


def http_protocol(head_timeout: float = HEAD_TIMEOUT) -> type[GuardedHttpToolsProtocol]:
    """khook's HTTP protocol (khook.http_protocol), with its head deadline."""
    if head_timeout == HEAD_TIMEOUT:
        return GuardedHttpToolsProtocol

    class Protocol(GuardedHttpToolsProtocol):
        pass

    Protocol.head_timeout = head_timeout
    return Protocol


class Worker(UvicornWorker):  # type: ignore[misc]
    """The gunicorn worker ``khook serve`` runs: uvicorn with the protocol above."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        k: v for k, v in uvicorn_options().items() if k not in ("log_level", "access_log")
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # In-flight events may finish within gunicorn's graceful timeout after SIGTERM.
        self.config.timeout_graceful_shutdown = max(1, int(self.cfg.graceful_timeout))


class JSONLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's logger, its lines (and uvicorn's, which its workers route here) one JSON
    object each, like khook's: a worker's traceback is one line's ``error`` field."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in (*self.error_log.handlers, *self.access_log.handlers):
            handler.setFormatter(JSONFormatter())


# The event loop answers every request, the pipeline's threads do the rest, and they share
# one GIL: with Python's default 5 ms switch interval the loop, wanting the GIL back, waits up
# to 5 ms behind a thread that computes, and a thread handed an event waits as long behind a
# busy loop. Measured under make bench's realistic stream (loop saturated): at 0.5 ms an event
# waited 1.5 ms (p50) to 13 ms (p99) to start on a thread, and the stream's p99 was 26 ms; at
# 0.1 ms, 12 ms, with slightly more throughput; at 0.05 ms throughput fell by a tenth.
SWITCH_INTERVAL = 0.0001
# Cyclic garbage is rare here (events are trees of dicts, freed by reference counts), but the
# default young-generation threshold (700 allocations) starts a collection every few requests,
# and a full one walked everything khook holds, up to 34 ms at once. So: collections less often,
# and once the worker has built its pipeline, what it holds for good is frozen out of them.
GC_THRESHOLD = 20_000


def tune_worker() -> None:
    """The interpreter settings of a serving worker (see SWITCH_INTERVAL, GC_THRESHOLD)."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])


def hooks(
    settings: Settings, rt: runtime.Runtime, wrap_app: Callable[[Any], Any] | None = None
) -> dict[str, Callable[..., None]]:
    """gunicorn's server hooks for khook. ``wrap_app``: what each worker serves in place of
    the app it loaded, made from it (khook.function.direct_posts, under either command)."""

    def when_ready(server: Any) -> None:  # the master, once it listens
        log(
            logger,
            logging.INFO,
            "khook listening",
            address=[str(listener) for listener in server.LISTENERS],
            mode="cluster" if settings.hooks_from_cluster else "files",
            hooks=None if settings.hooks_from_cluster else list(settings.hooks),
            dedup=settings.effective_dedup,
            agent="dry-run" if settings.effective_dry_run else shown_url(settings.agent_url),
            auth=settings.auth,
            workers=settings.workers,
            threads=settings.threads,
            pid=os.getpid(),
        )

    def post_worker_init(worker: Any) -> None:
        tune_worker()
        # uvicorn's worker made its configuration, and reads it as it starts serving, after
        # this hook: functions-framework's worker gets what khook serve's has (TRIMMED, and
        # khook's HTTP protocol where uvicorn would pick its own).
        config = getattr(worker, "config", None)
        for name, value in {**TRIMMED, "http": GuardedHttpToolsProtocol}.items():
            if hasattr(config, name):
                setattr(config, name, value)
        if wrap_app is not None:  # gunicorn's worker serves its ``wsgi``, the app, from now on
            worker.wsgi = wrap_app(worker.wsgi)
        rt.warm(on_built=gc.freeze)

    return {
        # Before the first fork: where the workers share their metrics (khook.metrics), set
        # before any process imports prometheus_client; removed as the master exits; a
        # worker's live gauges go when it does.
        "on_starting": lambda _server: metrics.prepare(settings.workers),
        "child_exit": metrics.child_exit,
        "on_exit": metrics.on_exit,
        "when_ready": when_ready,
        # Build the pipeline in each worker as it starts (in the background: the probes
        # answer meanwhile), so the first event does not wait for it; it logs the Hook count.
        "post_worker_init": post_worker_init,
        # On SIGTERM the worker stops accepting and lets in-flight requests finish; then it
        # writes what its background writers hold.
        "worker_exit": lambda _server, _worker: rt.close(),
    }


# gunicorn 25.1+ opens a control socket under $HOME for its gunicornc tool: nothing in a pod
# uses it, a read-only root filesystem has no room for it, and two servers on one machine
# would share its path. Turned off where gunicorn has it.
OPTIONAL = {"control_socket_disable": True}


def _optional() -> dict[str, Any]:
    known = {s.name for s in gunicorn.config.KNOWN_SETTINGS}
    return {name: value for name, value in OPTIONAL.items() if name in known}


def gunicorn_options(
    settings: Settings,
    rt: runtime.Runtime,
    tmp_dir: str | None,
    wrap_app: Callable[[Any], Any] | None = None,
) -> dict[str, Any]:
    """How ``khook serve`` runs gunicorn (``wrap_app``: see :func:`hooks`)."""
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return {
        "bind": f"{host}:{settings.port}",
        "workers": settings.workers,
        "worker_class": "khook.serving.Worker",
        # No heartbeat deadline, as under functions-framework: an event may take the agent's
        # whole timeout, and the event loop answers the probes meanwhile.
        "timeout": 0,
        "graceful_timeout": max(1, round(settings.graceful_timeout)),
        "worker_tmp_dir": tmp_dir,
        "logger_class": JSONLogger,
        "loglevel": settings.log_level,
        **_optional(),
        **hooks(settings, rt, wrap_app),
    }


class GunicornApp(BaseApplication):  # type: ignore[misc]
    """gunicorn serving ``app`` with ``options`` (gunicorn's custom-application API)."""

    def __init__(self, app: Any, options: dict[str, Any]) -> None:
        self._app = app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._app


def adopt_gunicorn_defaults(defaults: dict[str, Any]) -> list[str]:
    """Make ``defaults`` gunicorn's defaults for the settings they name, for a gunicorn that
    someone else configures (functions-framework). Returns the names gunicorn does not know.

    The seam: a gunicorn release that renames these settings breaks a test (test_logs), not
    khook, which then serves with gunicorn's own logging and without the hooks."""
    known = {s.name: s for s in gunicorn.config.KNOWN_SETTINGS}
    unknown = []
    for name, value in defaults.items():
        setting = known.get(name)
        if setting is None:
            unknown.append(name)
            continue
        setting.default = (
            staticmethod(value) if callable(value) and name != "logger_class" else value
        )
    return unknown


def under_functions_framework(wrap_app: Callable[[Any], Any] | None = None) -> None:
    """For the functions-framework source file, imported by ``functions-framework --target
    handle`` in gunicorn's master before it serves: the configuration is checked (a mistake
    stops the process with one JSON line and exit 2, so a Knative revision never becomes
    ready and says why in its log), logs are JSON, gunicorn's included, and gunicorn gets
    khook's hooks; each worker serves ``wrap_app`` of functions-framework's app (see
    :func:`hooks`)."""
    settings = settings_or_exit(Settings.from_env)
    configure(settings.log_level)
    rt = runtime.for_settings(settings)
    runtime.install(rt)
    adopt_gunicorn_defaults(_optional())
    defaults = {"logger_class": JSONLogger, **hooks(settings, rt, wrap_app)}
    unknown = adopt_gunicorn_defaults(defaults)
    if unknown:
        log(logger, logging.WARNING, "gunicorn does not know these settings", names=unknown)
