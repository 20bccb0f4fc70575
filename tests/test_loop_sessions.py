"""With the store in memory and a dry-run agent, nothing a new incident needs waits: its
session is opened on the event loop (Pipeline.finish_now). What would wait (a prompt for a
render process, the sessions of several incidents, a real agent) is left to a worker thread,
with nothing claimed for it, and the answer is the same either way."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from khook.agent import A2AClient, CircuitBreaker, DryRunClient, MeteredAgent, answers_at_once
from khook.core.cloudevent import parse
from khook.core.dedup import DedupKey, Record
from khook.core.incident import BUDGET_TYPE
from khook.core.outcome import Outcome
from khook.pipeline import Pipeline, Screened
from khook.runtime import build_pipeline
from khook.settings import Settings
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.clock import FakeClock
from tests.support.events import (
    HOOKS,
    apiserver_event,
    binary,
    oom_request,
    oom_status,
    outcome,
    pod,
)

OUTCOME = "X-Khook-Outcome"
HOOK = "default/pod-incidents"


def dry_run_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if '"dryRun":true' in line]


def test_a_new_incident_opens_its_session_while_every_worker_is_busy(
    make_function: FunctionFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = make_function(threads=1, dedup="memory", dry_run=True)
    release = threading.Event()
    held = fn.runtime.executor().submit(release.wait, 30)  # the only worker thread, busy
    try:
        answer = fn.post(*oom_request())
        assert not held.done(), "answered by the worker thread, after it was let go"
    finally:
        release.set()
    assert answer.status_code == 202
    assert answer.headers[OUTCOME] == outcome(fired=1)
    assert len(dry_run_lines(capsys)) == 1
    # Its repeat is a duplicate, on the loop too; nothing more is sent.
    assert fn.post(*oom_request()).headers[OUTCOME] == outcome(duplicate=1)
    assert dry_run_lines(capsys) == []


def big_oom_pod(values: int) -> dict[str, Any]:
    """An OOM-killed Pod with more annotations than a prompt may read in khook's process."""
    sick = pod(container_statuses=[oom_status()])
    sick["metadata"]["annotations"] = {f"note-{n}": "x" for n in range(values)}
    return sick


def hooks_reading_annotations(tmp_path: Path) -> Path:
    """The sample Hooks, the oom-kill prompt also counting the Pod's annotations: all of
    them are cleaned for it (and with more than 5,000, in a render process)."""
    hooks = tmp_path / "hooks"
    shutil.copytree(HOOKS, hooks)
    path = hooks / "pod-incidents.yaml"
    line = "Find out why it ran out of memory"
    text = path.read_text()
    assert line in text
    path.write_text(text.replace(line, "{{ object.metadata.annotations | length }} notes. " + line))
    return hooks


@contextmanager
def pipeline_for(hooks: Path, clock: FakeClock) -> Iterator[Pipeline]:
    settings = Settings.coerce({"hooks": (str(hooks),), "dedup": "memory", "dry_run": True})
    pipeline = build_pipeline(settings, clock)
    try:
        pipeline.hooks.current()
        yield pipeline
    finally:
        pipeline.close()


def finished_now(pipeline: Pipeline, request: tuple[dict[str, str], bytes]) -> Outcome | Screened:
    """What the event loop makes of a request: screen, then finish_now."""
    screened = pipeline.screen(parse(*request))
    assert isinstance(screened, Screened)
    return pipeline.finish_now(screened)


def stored(pipeline: Pipeline, key: DedupKey) -> Record | None:
    return next((r for r in pipeline.dedup.store.records(key.hook) if r.key.id == key.id), None)


def budget_count(pipeline: Pipeline, clock: FakeClock) -> int:
    minute = int(clock.now().timestamp() // 60)
    record = stored(pipeline, DedupKey(HOOK, BUDGET_TYPE, "", f"Minute/{minute}"))
    return 0 if record is None else record.count


def left_for_a_thread(pipeline: Pipeline, obj: dict[str, Any]) -> Screened:
    """A new incident whose prompt needs a render process, through finish_now: left."""
    left = finished_now(pipeline, binary(apiserver_event(obj)))
    assert isinstance(left, Screened) and left.plan is not None
    (unit,) = left.plan.units
    assert unit.items
    return left


def test_a_prompt_for_a_render_process_is_claimed_and_opened_on_a_worker_thread(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prompt that reads more than 5,000 values of the object renders in a render process.
    Tried on the loop, let go there (nothing stored, nothing counted), then claimed, counted
    and opened on a thread."""
    with pipeline_for(hooks_reading_annotations(tmp_path), clock) as pipeline:
        left = left_for_a_thread(pipeline, big_oom_pod(6_000))
        assert left.plan is not None
        assert stored(pipeline, left.plan.units[0].key) is None
        assert budget_count(pipeline, clock) == 0
        assert dry_run_lines(capsys) == []
        assert pipeline.finish(left).counts().header() == outcome(fired=1)
        assert len(dry_run_lines(capsys)) == 1
        assert budget_count(pipeline, clock) == 1
        again = pipeline.process(parse(*binary(apiserver_event(big_oom_pod(6_000)))))
        assert again.counts().header() == outcome(duplicate=1)


def test_a_redelivery_while_the_first_waits_for_a_thread_opens_one_session(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """No claim waits in the queue for a worker thread, where its timeout would run out and a
    redelivery would take it over: one session, whoever gets there first."""
    with pipeline_for(hooks_reading_annotations(tmp_path), clock) as pipeline:
        first = left_for_a_thread(pipeline, big_oom_pod(6_000))
        clock.advance(40)  # every worker thread busy for longer than a claim's timeout
        second = pipeline.process(parse(*oom_request()))
        assert second.counts().header() == outcome(fired=1)
        assert pipeline.finish(first).counts().header() == outcome(duplicate=1)
        assert len(dry_run_lines(capsys)) == 1


def test_the_budget_counts_a_session_once_when_the_hooks_change_while_it_waits(
    tmp_path: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    hooks = hooks_reading_annotations(tmp_path)
    with pipeline_for(hooks, clock) as pipeline:
        left = left_for_a_thread(pipeline, big_oom_pod(6_000))
        # Another Hook arrives while the event waits: it is decided again, as a whole.
        other = (hooks / "legacy-agentid.yaml").read_text().replace("name: ", "name: x", 1)
        (hooks / "another.yaml").write_text(other)
        clock.advance(5)
        assert pipeline.finish(left).counts().header() == outcome(fired=1)
        assert budget_count(pipeline, clock) == 1
        assert len(dry_run_lines(capsys)) == 1


def test_the_sessions_of_several_incidents_are_opened_together_on_a_worker_thread(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """An OOM kill in khook-demo concerns two Hooks (its own and the platform team's): the
    loop calls the agent for none of them, the thread for both, side by side."""
    with pipeline_for(HOOKS, clock) as pipeline:
        left = finished_now(pipeline, oom_request("khook-demo"))
        assert isinstance(left, Screened) and left.plan is not None
        assert len(left.plan.units) == 2
        assert all(unit.items and not unit.done for unit in left.plan.units)
        assert dry_run_lines(capsys) == []
        assert pipeline.finish(left).counts().header() == outcome(fired=2)
        assert len(dry_run_lines(capsys)) == 2


def test_a_follow_up_is_told_on_the_loop(
    clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    with pipeline_for(HOOKS, clock) as pipeline:
        first = pipeline.process(parse(*oom_request()))
        assert first.counts().header() == outcome(fired=1)
        dry_run_lines(capsys)
        # More Pods of the same Deployment OOM-killed: the 10th signal is a change to tell.
        answers = []
        for n in range(2, 11):
            other = pod(name=f"web-7d4b9c8f5-pod{n}", container_statuses=[oom_status()])
            done = finished_now(pipeline, binary(apiserver_event(other)))
            assert isinstance(done, Outcome), "left for a worker thread"
            answers.append(done.counts().header())
        assert answers == [outcome(duplicate=1)] * 8 + [outcome(followup=1)]
        assert len(dry_run_lines(capsys)) == 1


def test_only_a_dry_run_answers_at_once(clock: FakeClock, agent: A2AAgentServer) -> None:
    dry = DryRunClient()
    assert answers_at_once(MeteredAgent(CircuitBreaker(dry, clock)))
    real = A2AClient(agent.url, clock=clock)
    try:
        assert not answers_at_once(MeteredAgent(CircuitBreaker(real, clock)))
    finally:
        real.close()
