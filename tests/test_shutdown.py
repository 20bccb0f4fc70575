"""On SIGTERM khook stops taking new events and finishes the ones in flight."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from khook.cli._common import load_sample
from tests.support.agent import A2AAgentServer, Fault
from tests.support.cluster import wait_until
from tests.support.events import HOOKS, SAMPLES, outcome
from tests.support.process import clean_env, khook_serve


def test_sigterm_finishes_the_event_in_flight(tmp_path: Path) -> None:
    headers, body = load_sample(SAMPLES / "oom-kill-pod-status.json")
    answers: list[httpx.Response] = []
    with A2AAgentServer() as agent:
        agent.fail_next(Fault(0, delay=2.0))  # a slow agent: the call is in flight for 2 s
        args = ("--hooks", str(HOOKS), "--dedup", "memory", "--agent-url", agent.url)
        env = clean_env(tmp_path, KHOOK_GRACEFUL_TIMEOUT="20s")
        with khook_serve(*args, directory=tmp_path, env=env) as served:

            def deliver() -> None:
                answers.append(httpx.post(served.url, headers=headers, content=body, timeout=30))

            sender = threading.Thread(target=deliver)
            sender.start()
            wait_until(agent.posts, what="the agent call to start")
            served.process.send_signal(signal.SIGTERM)
            sender.join(timeout=30)
            assert served.process.wait(timeout=30) == 0
            try:
                httpx.post(served.url, headers=headers, content=body, timeout=2)
                refused = False
            except httpx.TransportError:
                refused = True
        assert refused, "no new events after SIGTERM"
        (answer,) = answers
        assert answer.status_code == 202
        assert answer.headers["X-Khook-Outcome"] == outcome(fired=1)
        assert len(agent.messages()) == 1
