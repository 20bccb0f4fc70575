"""The khook function on a real HTTP port, in this process so that tests control its clock.

The app is the one functions-framework builds from khook's entry file, exactly as
``khook serve`` and ``functions-framework --target handle`` build it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
from functions_framework import create_app
from werkzeug.serving import make_server

from khook import runtime
from khook.cli.serve import ENTRY
from khook.clock import Clock
from khook.pipeline import Pipeline
from khook.settings import Settings


class FunctionServer:
    def __init__(
        self, settings: Settings, clock: Clock, build: Callable[[], Pipeline] | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.pipeline: Pipeline | None = None
        make = build or (lambda: runtime.build_pipeline(settings, clock))

        def build_once() -> Pipeline:
            self.pipeline = make()
            return self.pipeline

        self.runtime = runtime.Runtime(settings, build_once)
        runtime.install(self.runtime)
        app = create_app(target="handle", source=str(ENTRY), signature_type="http")
        self.handled = 0
        wsgi = app.wsgi_app

        def counting(environ: Any, start_response: Any) -> Any:
            self.handled += 1
            return wsgi(environ, start_response)

        app.wsgi_app = counting
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def post(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self.http.post("/", headers=headers, content=body)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def __enter__(self) -> FunctionServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.close()
        self._server.shutdown()
        self._thread.join(timeout=10)
        if self.pipeline is not None:
            self.pipeline.close()
