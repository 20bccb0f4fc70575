"""The khook function on a real HTTP port, in this process so that tests control its clock.

The app is the one ``khook serve`` runs (functions-framework's, built from khook's entry file,
every POST handed straight to the function), or with ``direct=False`` the one
``functions-framework --target handle`` runs, served by uvicorn with the protocol and limits
``khook serve`` gives its workers (khook.serving).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import uvicorn
from functions_framework import create_app

from khook import runtime
from khook.cli.serve import ENTRY
from khook.clock import Clock
from khook.function import direct_posts
from khook.http_protocol import HEAD_TIMEOUT
from khook.pipeline import Pipeline
from khook.serving import uvicorn_options
from khook.settings import Settings


class FunctionServer:
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        build: Callable[[], Pipeline] | None = None,
        *,
        head_timeout: float = HEAD_TIMEOUT,
        direct: bool = True,
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
        if direct:
            app = direct_posts(app)
        self.handled = 0

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.handled += 1
            await app(scope, receive, send)

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(counting, lifespan="off", **uvicorn_options(head_timeout))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def post(self, headers: dict[str, str], body: bytes) -> httpx.Response:
        return self.http.post("/", headers=headers, content=body)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def __enter__(self) -> FunctionServer:
        # As `khook serve` does in each worker as it starts (there in the background; here at
        # once, so that tests start from a known state).
        with contextlib.suppress(runtime.NotReady):
            self.runtime.pipeline()
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the function's server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.http.close()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.runtime.close()
