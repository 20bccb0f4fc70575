"""A serving worker's interpreter settings (khook.serving.tune_worker), set as gunicorn starts
the worker, and what it holds frozen out of the garbage collector once its pipeline is built."""

from __future__ import annotations

import gc
import sys
import threading
import types
from collections.abc import Iterator

import pytest
import uvicorn

from khook import runtime, serving
from khook.settings import Settings
from tests.support.events import HOOKS


@pytest.fixture
def restored() -> Iterator[None]:
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    yield
    sys.setswitchinterval(interval)
    gc.set_threshold(*threshold)
    gc.unfreeze()


@pytest.mark.usefixtures("restored")
def test_a_worker_hands_the_gil_over_often_and_collects_rarely() -> None:
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True})
    rt = runtime.for_settings(settings)
    built: list[int] = []
    rt.warm = lambda on_built=None: built.append(on_built is gc.freeze)  # type: ignore[method-assign]
    hook = serving.hooks(settings, rt)["post_worker_init"]
    hook(object())
    assert sys.getswitchinterval() == pytest.approx(serving.SWITCH_INTERVAL)
    assert gc.get_threshold()[0] == serving.GC_THRESHOLD
    assert built == [True], "the pipeline is built, then what it holds is frozen"


@pytest.mark.usefixtures("restored")
def test_warm_freezes_only_once_the_pipeline_is_built() -> None:
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True})
    rt = runtime.Runtime(settings, lambda: runtime.build_pipeline(settings))
    frozen: list[bool] = []
    try:
        done = threading.Event()
        rt.warm(on_built=lambda: (frozen.append(rt.built() is not None), done.set()))
        assert done.wait(30)
        assert frozen == [True]
    finally:
        rt.close()


@pytest.mark.usefixtures("restored")
def test_a_worker_serves_the_app_made_from_the_one_it_loaded() -> None:
    """Each worker serves the app it loaded with every POST handed straight to the function
    (functions/main.py and khook serve pass khook.function.direct_posts)."""
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True})
    rt = runtime.for_settings(settings)
    rt.warm = lambda on_built=None: None  # type: ignore[method-assign]
    worker = types.SimpleNamespace(wsgi="the loaded app")
    serving.hooks(settings, rt, wrap_app=lambda app: ("wrapped", app))["post_worker_init"](worker)
    assert worker.wsgi == ("wrapped", "the loaded app")
    unwrapped = types.SimpleNamespace(wsgi="the loaded app")
    serving.hooks(settings, rt)["post_worker_init"](unwrapped)
    assert unwrapped.wsgi == "the loaded app"
    # khook serve's gunicorn gets the same hook.
    served = types.SimpleNamespace(wsgi="the loaded app")
    options = serving.gunicorn_options(settings, rt, None, wrap_app=lambda app: ("w", app))
    options["post_worker_init"](served)
    assert served.wsgi == ("w", "the loaded app")


@pytest.mark.usefixtures("restored")
def test_a_worker_sends_no_server_header_and_reads_no_forwarded_address() -> None:
    """functions-framework's uvicorn worker is configured as khook serve's is (TRIMMED): set
    on its configuration before it starts serving, as gunicorn runs post_worker_init."""
    settings = Settings.coerce({"hooks": (str(HOOKS),), "dedup": "memory", "dry_run": True})
    rt = runtime.for_settings(settings)
    rt.warm = lambda on_built=None: None  # type: ignore[method-assign]
    worker = types.SimpleNamespace(wsgi="app", config=uvicorn.Config(app="app"))
    assert worker.config.server_header and worker.config.proxy_headers  # uvicorn's defaults
    serving.hooks(settings, rt)["post_worker_init"](worker)
    assert not worker.config.server_header and not worker.config.proxy_headers
    assert serving.Worker.CONFIG_KWARGS["server_header"] is False
    assert serving.Worker.CONFIG_KWARGS["proxy_headers"] is False
    # No WebSocket upgrades (outside khook's HTTP bounds), and khook's HTTP protocol.
    assert worker.config.ws == "none" and serving.Worker.CONFIG_KWARGS["ws"] == "none"
    assert worker.config.http is serving.Worker.CONFIG_KWARGS["http"]
