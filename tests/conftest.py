from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from khook.settings import Settings
from tests.support.agent import A2AAgentServer
from tests.support.clock import FakeClock
from tests.support.events import HOOKS
from tests.support.function import FunctionServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def agent() -> Iterator[A2AAgentServer]:
    with A2AAgentServer(
        agents=("kagent/k8s-agent", "kagent/pod-restart-agent", "kagent/memory-agent")
    ) as server:
        yield server


FunctionFactory = Callable[..., FunctionServer]


@pytest.fixture
def make_function(
    tmp_path: Path, clock: FakeClock, agent: A2AAgentServer
) -> Iterator[FunctionFactory]:
    started: list[FunctionServer] = []

    def make(**overrides: Any) -> FunctionServer:
        values: dict[str, Any] = {
            "hooks": (str(HOOKS),),
            "dedup": f"tinydb:{tmp_path / 'dedup'}",
            "agent_url": agent.url,
            "agent_attempts": 2,
            "agent_timeout": 10.0,
        }
        direct = overrides.pop("direct", True)  # the app khook serve runs, or functions-framework's
        values.update(overrides)
        server = FunctionServer(Settings.coerce(values), clock, direct=direct).__enter__()
        started.append(server)
        return server

    yield make
    for server in started:
        server.__exit__(None, None, None)
