"""A real A2A agent for tests, built with the official a2a-sdk and served by uvicorn.

It serves A2A 1.0 and, through the SDK's compat layer, 0.3 JSON-RPC at Kagent's path
(``/api/a2a/{namespace}/{name}/``) with the agent card beside it. A small ASGI layer in front
records every raw request and can answer the next requests with planned faults (503, 429...),
the way an overloaded Kagent would, or a hostile one (a trickled or huge answer). The agent can
also end its next tasks in a planned state (failed, rejected, canceled) through the SDK.

:class:`HostileAgent` is a bare TCP server for what no HTTP server does on purpose: trickled
status lines and headers, an answer that never comes. :func:`unanswered_port` makes a port whose
connects hang (a full accept queue), :func:`deaf_port` one that never reads what it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import a2a_pb2 as pb
from starlette.applications import Starlette

Scope = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]
]


@dataclass
class Received:
    """A message the agent executor received (after the SDK parsed and validated it)."""

    agent: str
    text: str
    metadata: dict[str, Any]
    message_id: str


@dataclass
class RawRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client: tuple[str, int] | None = None  # the connection it came on (host, port)


PLANNED_BODY = b'{"error":"planned fault"}'
FILLER = b"x" * 65536


@dataclass
class Fault:
    status: int  # 0: no fault, answer normally (after the delay)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to hold the answer (for timeouts, and slow agents)
    body: bytes = PLANNED_BODY  # the answer's body
    trickle: float = 0.0  # > 0: send the body one byte every this many seconds
    size: int = 0  # > 0: send this many filler bytes as the body instead (a huge answer)
    method: str = "POST"  # the requests this fault is for (GET: the agent card)


class _Executor(AgentExecutor):
    def __init__(
        self, agent: str, sink: list[Received], lock: threading.Lock, states: list[str]
    ) -> None:
        self.agent = agent
        self.sink = sink
        self.lock = lock
        self.states = states  # planned end states of the next tasks ("failed", ...)

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        from google.protobuf.json_format import MessageToDict

        with self.lock:
            self.sink.append(
                Received(
                    agent=self.agent,
                    text=context.get_user_input(),
                    metadata=MessageToDict(message.metadata) if message.metadata else {},
                    message_id=message.message_id,
                )
            )
            state = self.states.pop(0) if self.states else ""
        # Like Kagent: the task is accepted at once and works on in the background.
        task = new_task_from_user_message(message)
        if state:
            task.status.state = pb.TaskState.Value(f"TASK_STATE_{state.upper()}")
        await event_queue.enqueue_event(task)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def _card(name: str, url: str, version: str) -> pb.AgentCard:
    return pb.AgentCard(
        name=name,
        description="test agent",
        version="1.0.0",
        supported_interfaces=[
            pb.AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version=version)
        ],
        capabilities=pb.AgentCapabilities(streaming=False),
        default_input_modes=["text"],
        default_output_modes=["text"],
        skills=[pb.AgentSkill(id="k8s", name="k8s", description="k8s", tags=["k8s"])],
    )


class A2AAgentServer:
    def __init__(
        self,
        agents: tuple[str, ...] = ("kagent/k8s-agent",),
        card_version: str = "1.0",
    ) -> None:
        self.received: list[Received] = []
        self.raw: list[RawRequest] = []
        self.faults: list[Fault] = []
        self.states: list[str] = []
        self.sent_bytes = 0  # body bytes of planned faults actually handed to the socket
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        routes = []
        for agent in agents:
            path = f"/api/a2a/{agent}/"
            handler = DefaultRequestHandler(
                agent_executor=_Executor(agent, self.received, self._lock, self.states),
                task_store=InMemoryTaskStore(),
                agent_card=_card(agent, self.url + path, card_version),
            )
            routes += create_jsonrpc_routes(handler, path, enable_v0_3_compat=True)
            routes += create_agent_card_routes(
                _card(agent, self.url + path, card_version),
                card_url=path + ".well-known/agent-card.json",
            )
        self._app = Starlette(routes=routes)
        config = uvicorn.Config(self._front, log_level="error", lifespan="off", interface="asgi3")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]})

    async def _front(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        client = scope.get("client")
        with self._lock:
            self.raw.append(
                RawRequest(
                    scope["method"],
                    scope["path"],
                    headers,
                    parsed,
                    tuple(client) if client else None,
                )
            )
            fault = next((f for f in self.faults if f.method == scope["method"]), None)
            if fault is not None:
                self.faults.remove(fault)
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status:
            await self._answer(fault, receive, send)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

    async def _answer(self, fault: Fault, receive: Any, send: Any) -> None:
        headers = [(k.encode(), v.encode()) for k, v in fault.headers.items()]
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        if fault.size:
            gone = asyncio.Event()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()

            watcher = asyncio.ensure_future(watch())
            left = fault.size
            while left > 0 and not gone.is_set():
                chunk = FILLER[: min(left, len(FILLER))]
                # uvicorn waits here while the client does not read (flow control).
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                left -= len(chunk)
                with self._lock:
                    self.sent_bytes += len(chunk)
                await asyncio.sleep(0)  # let the watcher see a hang-up
            watcher.cancel()
            await send({"type": "http.response.body", "body": b""})
        elif fault.trickle:
            for i in range(len(fault.body)):
                await send(
                    {"type": "http.response.body", "body": fault.body[i : i + 1], "more_body": True}
                )
                await asyncio.sleep(fault.trickle)
            await send({"type": "http.response.body", "body": b""})
        else:
            await send({"type": "http.response.body", "body": fault.body})

    def end_next_tasks(self, *states: str) -> None:
        """The next tasks end in these states (failed, rejected, canceled...) at once."""
        with self._lock:
            self.states.extend(states)

    def fail_next(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def posts(self) -> list[RawRequest]:
        with self._lock:
            return [r for r in self.raw if r.method == "POST"]

    def messages(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> A2AAgentServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("A2A test agent did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class HostileAgent:
    """A bare TCP server that reads each request's head and then misbehaves:

    - ``stall``: never answers;
    - ``trickle-head``: sends the status line and headers one byte every ``interval``;
    - ``trickle-body``: sends the head at once, then a JSON body one byte every ``interval``;
    - ``hang-up``: sends the head and the start of the body, then closes the connection.

    ``lasted`` has, for each connection, how long it stayed open until the client hung up."""

    BODY = b'{"jsonrpc":"2.0","id":"1","result":{"kind":"task","id":"t","contextId":"c",'
    BODY += b'"status":{"state":"submitted"}}}'

    def __init__(self, mode: str, interval: float = 0.5) -> None:
        assert mode in ("stall", "trickle-head", "trickle-body", "hang-up")
        self.mode = mode
        self.interval = interval
        self.lasted: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> HostileAgent:
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._server.close()

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        started = time.monotonic()
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                data = conn.recv(65536)
                if not data:
                    return
                head += data
            if self.mode == "hang-up":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(self.BODY))
                conn.sendall(self.BODY[:10])
                out = b""
            elif self.mode == "stall":
                out = b""
            elif self.mode == "trickle-head":
                out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                out += b"X-Slow: " + b"x" * 10_000 + b"\r\n\r\n"
            else:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(self.BODY)
                )
                out = self.BODY
            if self.mode != "hang-up":
                self._dribble(conn, out)
        with self._lock:
            self.lasted.append(time.monotonic() - started)

    def _dribble(self, conn: socket.socket, out: bytes) -> None:
        """Send ``out`` a byte per interval (then nothing) until the client hangs up."""
        conn.setblocking(False)
        sent = 0
        while not self._stop.wait(self.interval):
            try:
                if conn.recv(65536) == b"":
                    return  # the client hung up
            except BlockingIOError:
                pass
            except OSError:
                return
            if sent < len(out):
                try:
                    conn.send(out[sent : sent + 1])
                except OSError:
                    return
                sent += 1


@contextlib.contextmanager
def unanswered_port() -> Iterator[int]:
    """A local port whose connects hang: its accept queue (backlog 0) is full, so the kernel
    drops further SYNs and the client waits, as with a host that does not answer."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        yield port
    finally:
        filler.close()
        server.close()


@contextlib.contextmanager
def deaf_port() -> Iterator[int]:
    """A local port that takes connections (the kernel queues them) but never reads: a large
    request fills the socket buffers and the sender's writes stall."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()
