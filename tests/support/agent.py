"""A real A2A agent for tests, built with the official a2a-sdk and served by uvicorn.

It serves A2A 1.0 and, through the SDK's compat layer, 0.3 JSON-RPC at Kagent's path
(``/api/a2a/{namespace}/{name}/``) with the agent card beside it. A small ASGI layer in front
records every raw request and can answer the next requests with planned faults (503, 429...),
the way an overloaded Kagent would, or a hostile one (a trickled or huge answer). The agent can
also end its next tasks in a planned state (failed, rejected, canceled) through the SDK, and
finish a task later (:meth:`A2AAgentServer.finish`), the way Kagent ends an investigation.

Each message is recorded with the context and task the SDK gave the executor
(``RequestContext.context_id`` / ``task_id``), and the messages of each context are kept as one
conversation (:meth:`A2AAgentServer.conversation`).

:class:`HostileAgent`, :func:`unanswered_port` and :func:`deaf_port` (agents that misbehave
below HTTP) live in ``tests.support.hostile_agent`` and are importable from here too.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from a2a.helpers.proto_helpers import new_task_from_user_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.events.event_queue_v2 import EventQueueSource
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import a2a_pb2 as pb
from starlette.applications import Starlette

from tests.support.hostile_agent import HostileAgent, deaf_port, unanswered_port

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
    context_id: str = ""  # RequestContext.context_id: the conversation it is in
    task_id: str = ""  # RequestContext.task_id: the task it went into
    continued: bool = False  # it continued an existing task (it named one that takes messages)


@dataclass
class _Task:
    """Where a task's events go: what :meth:`A2AAgentServer.finish` needs to end it later."""

    context_id: str
    queue: EventQueue
    store: InMemoryTaskStore
    call: ServerCallContext


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
    # Called (on the server's thread) when the request arrives, before it is answered: e.g.
    # to move a test clock while the call is in flight.
    on_arrival: Callable[[], object] | None = None


class _Executor(AgentExecutor):
    def __init__(self, agent: str, server: A2AAgentServer, store: InMemoryTaskStore) -> None:
        self.agent = agent
        self.server = server
        self.store = store

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        from google.protobuf.json_format import MessageToDict

        current = context.current_task
        got = Received(
            agent=self.agent,
            text=context.get_user_input(),
            metadata=MessageToDict(message.metadata) if message.metadata else {},
            message_id=message.message_id,
            context_id=context.context_id or "",
            task_id=context.task_id or "",
            continued=current is not None,
        )
        state = self.server._took(
            got, _Task(got.context_id, event_queue, self.store, context.call_context)
        )
        if current is None:
            # Like Kagent: the task is accepted at once and works on in the background.
            task = new_task_from_user_message(message)
            if state:
                task.status.state = _state(state)
            await event_queue.enqueue_event(task)
        else:
            # A message for a task that takes more: it works on (or ends as planned).
            await event_queue.enqueue_event(
                pb.TaskStatusUpdateEvent(
                    task_id=current.id,
                    context_id=current.context_id,
                    status=pb.TaskStatus(state=_state(state or "working")),
                )
            )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        return None


def _state(name: str) -> pb.TaskState:
    state: pb.TaskState = pb.TaskState.Value(f"TASK_STATE_{name.upper().replace('-', '_')}")
    return state


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
        self.conversations: dict[str, list[Received]] = {}  # context id -> its messages
        self.raw: list[RawRequest] = []
        self.faults: list[Fault] = []
        self.states: list[str] = []
        self.sent_bytes = 0  # body bytes of planned faults actually handed to the socket
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        routes = []
        for agent in agents:
            path = f"/api/a2a/{agent}/"
            store = InMemoryTaskStore()
            handler = DefaultRequestHandler(
                agent_executor=_Executor(agent, self, store),
                task_store=store,
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
        if fault is not None and fault.on_arrival is not None:
            fault.on_arrival()
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

    def _took(self, got: Received, task: _Task) -> str:
        """Record a message the executor received; the state its task is planned to end in."""
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self.received.append(got)
            self.conversations.setdefault(got.context_id, []).append(got)
            self._tasks[got.task_id] = task
            return self.states.pop(0) if self.states else ""

    def end_next_tasks(self, *states: str) -> None:
        """The next messages' tasks end in these states at once (completed, failed, rejected,
        canceled; "" for one that works on): a new task is created in that state, a task a
        message continues moves to it. Each message takes the next state."""
        with self._lock:
            self.states.extend(states)

    def finish(self, task_id: str, state: str = "completed") -> None:
        """End a task later, as Kagent does when its investigation is over: the agent sends
        the task's final status through the SDK. Returns once the SDK has applied it (the task
        is stored in ``state`` and takes no more messages)."""
        with self._lock:
            task, loop = self._tasks[task_id], self._loop
        assert loop is not None

        async def end() -> None:
            update = pb.TaskStatusUpdateEvent(
                task_id=task_id,
                context_id=task.context_id,
                status=pb.TaskStatus(state=_state(state)),
            )
            await task.queue.enqueue_event(update)
            assert isinstance(task.queue, EventQueueSource)
            # Applied once the SDK's consumer has processed every event put so far.
            await task.queue.test_only_join_incoming_queue()
            await task.queue.queue.join()

        asyncio.run_coroutine_threadsafe(asyncio.wait_for(end(), 10), loop).result(timeout=15)

    def task_state(self, task_id: str) -> str:
        """The state the SDK stored for a task: "completed", "working"..."""
        with self._lock:
            task, loop = self._tasks[task_id], self._loop
        assert loop is not None
        stored = asyncio.run_coroutine_threadsafe(task.store.get(task_id, task.call), loop)
        found = stored.result(timeout=10)
        assert found is not None
        name: str = pb.TaskState.Name(found.status.state)
        return name.removeprefix("TASK_STATE_").lower().replace("_", "-")

    def conversation(self, context_id: str) -> list[Received]:
        """The messages the agent received in one context (Kagent's session), in order."""
        with self._lock:
            return list(self.conversations.get(context_id, []))

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


__all__ = [
    "A2AAgentServer",
    "Fault",
    "HostileAgent",
    "RawRequest",
    "Received",
    "deaf_port",
    "unanswered_port",
]
