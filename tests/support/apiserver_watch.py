"""Watch streams of the API server double: chunked JSON lines, one event per line.

A watch sends its first events (current objects, or the history after ``resourceVersion``),
then waits on the store without holding its lock, forwarding changes as they come, bookmarks
when idle, until ``timeoutSeconds`` passes, the client goes away or the server stops.
"""

from __future__ import annotations

import json
import math
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from tests.support.apiserver_model import ApiError, Obj, ResourceType, bad_request
from tests.support.apiserver_select import Matcher
from tests.support.apiserver_store import Change, Interruption, Store, Subscription

# How often an idle stream checks that its client is still there.
_POLL_SECONDS = 0.2
TRUE_VALUES = frozenset({"1", "t", "true"})


@dataclass(frozen=True)
class WatchPlan:
    since: int | None  # None: start with the current objects as ADDED events
    timeout: float | None  # seconds
    bookmarks: bool


def plan_watch(query: dict[str, str]) -> WatchPlan:
    version = query.get("resourceVersion", "")
    try:
        since = None if version in ("", "0") else int(version)
    except ValueError:
        raise bad_request(f'resourceVersion: Invalid value: "{version}": invalid value') from None
    timeout_text = query.get("timeoutSeconds", "")
    try:
        timeout = float(timeout_text) if timeout_text else None
    except ValueError:
        raise bad_request(f'timeoutSeconds: Invalid value: "{timeout_text}"') from None
    if timeout is not None and timeout <= 0:
        timeout = None  # as in the real server: 0 means "the server's default" (here: none)
    bookmarks = query.get("allowWatchBookmarks", "").lower() in TRUE_VALUES
    return WatchPlan(since, timeout, bookmarks)


def visible_events(changes: list[Change], match: Matcher) -> list[Obj]:
    """Events as this watcher sees them: an object entering its selection is ADDED, one
    leaving it is DELETED (as the real server's watch cache reports them)."""
    events: list[Obj] = []
    for change in changes:
        now = match(change.obj)
        before = change.prev is not None and match(change.prev)
        if change.type == "MODIFIED" and now != before:
            events.append({"type": "ADDED" if now else "DELETED", "object": change.obj})
        elif now:
            events.append({"type": change.type, "object": change.obj})
    return events


def bookmark(rt: ResourceType, resource_version: int) -> Obj:
    obj = {"kind": rt.kind, "apiVersion": rt.api_version}
    return {
        "type": "BOOKMARK",
        "object": {**obj, "metadata": {"resourceVersion": str(resource_version)}},
    }


class ChunkedWriter:
    """Writes a streamed 200 answer, one chunk per batch of events, flushed at once."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self._handler = handler
        self.broken = False

    def start(self) -> None:
        handler = self._handler
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        # A finished stream closes its connection, so that no client reuses it mid-state.
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True

    def send(self, events: list[Obj]) -> None:
        if not events or self.broken:
            return
        data = b"".join(json.dumps(event).encode() + b"\n" for event in events)
        self._write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def end(self) -> None:
        self._write(b"0\r\n\r\n")

    def drop(self) -> None:
        """Cut the connection mid-stream, without the final chunk: the client's read fails."""
        self.broken = True
        try:
            self._handler.wfile.flush()
            self._handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the client went away first

    def client_gone(self) -> bool:
        sock = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self._handler.wfile.write(data)
            self._handler.wfile.flush()
        except OSError:
            self.broken = True  # the client went away; the stream ends


@dataclass(frozen=True)
class Watch:
    """One watch request: what to watch and how, served on its handler's connection."""

    store: Store
    rt: ResourceType
    match: Matcher
    plan: WatchPlan
    bookmark_interval: float

    def serve(self, handler: BaseHTTPRequestHandler, record: Callable[[int], None]) -> None:
        writer = ChunkedWriter(handler)
        try:
            initial, subscription = self.store.open_watch(self.rt, self.plan.since)
        except ApiError as error:
            # An expired resourceVersion is not an HTTP error: the real server answers 200
            # and streams one ERROR event carrying the 410 Status, then ends the stream.
            record(200)
            writer.start()
            writer.send([{"type": "ERROR", "object": error.body()}])
            writer.end()
            return
        record(200)
        writer.start()
        try:
            self._pump(writer, subscription, initial)
        finally:
            # End the stream before unsubscribing: a stopping server waits for the
            # subscriptions to go, and then every stream has ended cleanly.
            writer.end()
            self.store.close_watch(subscription)

    def _pump(
        self, writer: ChunkedWriter, subscription: Subscription, initial: list[Change]
    ) -> None:
        plan, interval = self.plan, self.bookmark_interval
        deadline = math.inf if plan.timeout is None else time.monotonic() + plan.timeout
        writer.send(visible_events(initial, self.match))
        last_sent = time.monotonic()
        while not writer.broken:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline - now, _POLL_SECONDS)
            if plan.bookmarks:
                wait = min(wait, max(0.0, last_sent + interval - now))
            batch = self.store.wait(subscription, wait)
            if batch.closed:
                return
            events = visible_events(batch.changes, self.match)
            if batch.interrupted is not None:
                writer.send(events)
                _interrupt(writer, batch.interrupted)
                return
            if not events and plan.bookmarks and time.monotonic() - last_sent >= interval:
                events = [bookmark(self.rt, batch.resource_version)]
            if events:
                writer.send(events)
                last_sent = time.monotonic()
            elif writer.client_gone():
                return


def _interrupt(writer: ChunkedWriter, how: Interruption) -> None:
    """End a stream as a test asked (``APIServer.end_watches``/``drop_watches``)."""
    if how.drop:
        writer.drop()
    elif how.error is not None:
        # As the real server does when a watch fails: one ERROR event, then the stream ends.
        writer.send([{"type": "ERROR", "object": how.error}])
