"""List, then watch: how khook follows a kind of object in the API server.

The list gives the current objects and a resourceVersion; the watch resumes from there (and
from the newest resourceVersion seen, bookmarks included, after every reconnect). ``410
Gone`` means the server no longer has that history: list again. Any other failure is retried
with backoff and jitter, until the watcher is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from khook import metrics
from khook.kubeapi import TIMEOUT, Gone, KubeError, api_errors, read_json
from khook.logs import log

logger = logging.getLogger("khook.watch")

Object = Mapping[str, Any]


def watch_lines(response: Any) -> Iterator[str]:
    """The lines of a watch stream (one JSON event each) as they arrive, empty lines skipped.

    The official client has such a reader, but only in ``kubernetes.watch.watch``, a module its
    package does not export, so it may change in any release; this uses only urllib3's public
    ``HTTPResponse.stream()``. A line may be split across chunks, and a UTF-8 character too:
    bytes are split at ``\\n`` (which never occurs inside a multi-byte character) before
    they are decoded. What a cut stream left unfinished is not a line and is dropped.
    """
    buffer = bytearray()
    for chunk in response.stream(amt=None, decode_content=False):
        buffer.extend(chunk)
        if b"\n" not in chunk:
            continue  # a long line in many chunks is copied once, not once per chunk
        *lines, rest = buffer.split(b"\n")
        buffer = bytearray(rest)
        for line in lines:
            if line.strip():
                yield line.decode("utf-8", errors="replace")


class ListWatch:
    def __init__(
        self,
        name: str,
        call: Callable[..., Any],
        *,
        on_list: Callable[[list[Object]], None],
        on_event: Callable[[str, Object], None],
        watch_timeout: int = 290,
        max_backoff: float = 30.0,
    ) -> None:
        """``call`` is a list function of the official client with its positional arguments
        bound (e.g. ``partial(core.list_namespaced_pod, "default")``)."""
        self.name = name
        self._call = call
        self._on_list = on_list
        self._on_event = on_event
        self._watch_timeout = watch_timeout
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self._version = ""  # the newest resourceVersion seen; "" means list first

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                if not self._version:
                    self._version = self._list()
                self._watch()
                delay = 1.0
            except Gone:
                log(logger, logging.INFO, "watch expired; listing again", watch=self.name)
                metrics.watch_relisted(self.name)
                self._version = ""
            except Exception as exc:
                if self._stop.is_set():
                    return  # closing the stream under the reader ends up here
                metrics.watch_restarted(self.name)
                log(
                    logger,
                    logging.WARNING,
                    "watch failed; retrying",
                    watch=self.name,
                    error=str(exc),
                    retryIn=round(delay, 1),
                )
                self._stop.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter
                delay = min(delay * 2, self._max_backoff)

    def _list(self) -> str:
        with api_errors():
            found = read_json(self._call(_preload_content=False, _request_timeout=TIMEOUT))
        items = [i for i in found.get("items") or [] if isinstance(i, Mapping)]
        self._on_list(items)
        return str((found.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self) -> None:
        with api_errors():
            self._response = self._call(
                watch=True,
                resource_version=self._version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                _preload_content=False,
                _request_timeout=(TIMEOUT[0], self._watch_timeout + 15),
            )
            try:
                if self._stop.is_set():
                    return  # closed while the request was on its way: close() saw no response
                for line in watch_lines(self._response):
                    if self._stop.is_set():
                        break
                    # Kept event by event: a watch that fails later resumes after the last
                    # event delivered, instead of delivering the events before it again.
                    self._version = self._event(json.loads(line)) or self._version
            finally:
                response, self._response = self._response, None
                response.close()

    def _event(self, event: Mapping[str, Any]) -> str:
        kind, obj = str(event.get("type", "")), event.get("object")
        if not isinstance(obj, Mapping):
            return ""
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            error = Gone if code == 410 else KubeError
            raise error(code, str(obj.get("reason", "")), str(obj.get("message", "")))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if kind != "BOOKMARK":
            self._on_event(kind, obj)
        return version

    def close(self) -> None:
        self._stop.set()
        response = self._response
        with contextlib.suppress(Exception):  # the stream ended meanwhile; nothing to do
            if response is not None:
                # Shut the socket down rather than close the response: closing waits for the
                # lock the reading thread holds until data arrives (on an idle watch, until
                # the server's timeout); a shutdown ends that read at once.
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
