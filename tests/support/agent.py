"""A real A2A agent for tests, built with the official a2a-sdk and served by uvicorn.

It serves A2A 1.0 and, through the SDK's compat layer, 0.3 JSON-RPC at Kagent's path
(``/api/a2a/{namespace}/{name}/``) with the agent card beside it. A small ASGI layer in front
records every raw request and can answer the next requests with planned faults (503, 429...),
the way an overloaded Kagent would.
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


@dataclass
class Fault:
    status: int  # 0: no fault, answer normally (after the delay)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to hold the answer (for timeouts, and slow agents)


class _Executor(AgentExecutor):
    def __init__(self, agent: str, sink: list[Received], lock: threading.Lock) -> None:
        self.agent = agent
        self.sink = sink
        self.lock = lock

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
        # Like Kagent: the task is accepted at once and works on in the background.
        await event_queue.enqueue_event(new_task_from_user_message(message))

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
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        routes = []
        for agent in agents:
            path = f"/api/a2a/{agent}/"
            handler = DefaultRequestHandler(
                agent_executor=_Executor(agent, self.received, self._lock),
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
        with self._lock:
            self.raw.append(RawRequest(scope["method"], scope["path"], headers, parsed))
            fault = self.faults.pop(0) if self.faults and scope["method"] == "POST" else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.status:
            await send(
                {
                    "type": "http.response.start",
                    "status": fault.status,
                    "headers": [(k.encode(), v.encode()) for k, v in fault.headers.items()],
                }
            )
            await send({"type": "http.response.body", "body": b'{"error":"planned fault"}'})
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

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
