"""Playing a recording through the real pipeline, on the recording's clock."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from khook import runtime
from khook.agent import A2AVersion, AgentClient, DryRunClient
from khook.clock import SystemClock
from khook.core import cloudevent
from khook.core.cloudevent import CloudEventError
from khook.core.events import Envelope
from khook.core.outcome import Outcome
from khook.files import FileError
from khook.pipeline import Pipeline
from khook.replay._clock import VirtualClock
from khook.replay._corpus import ReplayInputError, Request, Storm, read_requests
from khook.replay._report import ReplayLine, ReplayReport
from khook.settings import Settings, SettingsError

# As the adapter does on the direct path: 5 more tries, backing off from 50 ms (on the
# recording's clock), or as long as khook's Retry-After asks, up to this.
REDELIVERIES = 5
FIRST_BACKOFF = 0.05
MAX_RETRY_AFTER = 60.0
REPLAY_STORES = ("memory", "tinydb")
# How often, in recording time, incidents that went quiet for their cooldown are resolved
# (what a running khook does in the background): before the first event at least this long
# after the last sweep, and after the last event.
SWEEP_EVERY = timedelta(seconds=5)


@dataclass(frozen=True)
class ReplayOptions:
    hooks: tuple[str, ...] = ()  # instead of the storm's hooks.yaml
    rules: tuple[str, ...] = ()  # on top of the storm's rules.yaml
    dedup: str = "memory"  # memory | tinydb:PATH
    agent_url: str = ""  # "" = dry run
    a2a_version: str | None = None
    requests_out: TextIO | None = None  # where the dry run writes its requests (None: nowhere)


def settings_for(storm: Storm, options: ReplayOptions) -> Settings:
    """Settings for one replay: the environment's, but never a cluster (file Hooks, a local
    store, no sender authentication) and quiet logs unless KHOOK_LOG_LEVEL says otherwise."""
    hooks = options.hooks or tuple(str(p) for p in storm.hooks)
    if not hooks:
        raise ReplayInputError(f"{storm.name}: no Hooks to play against (give --hooks)")
    if options.dedup.partition(":")[0] not in REPLAY_STORES:
        raise ReplayInputError(
            f"--dedup {options.dedup}: a replay keeps records in memory or tinydb"
        )
    try:
        return Settings.from_env(
            hooks=hooks,
            rules=tuple(str(p) for p in storm.rules) + options.rules,
            dedup=options.dedup,
            agent_url=options.agent_url,
            a2a_version=options.a2a_version,
            dry_run=not options.agent_url,
            hooks_from_cluster=False,
            auth="none",
            log_level=None if os.environ.get("KHOOK_LOG_LEVEL") else "warning",
        )
    except SettingsError as exc:
        raise ReplayInputError(str(exc)) from exc


def play(
    storm: Storm,
    options: ReplayOptions | None = None,
    *,
    on_line: Callable[[ReplayLine], None] | None = None,
    on_problem: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Replay one storm; ReplayInputError when it cannot be played at all."""
    options = options or ReplayOptions()
    settings = settings_for(storm, options)
    requests = read_requests(storm.recording)
    first = next(requests, None)
    if first is None:
        raise ReplayInputError(f"{storm.recording}: no requests")
    start = first.time
    if start is None:
        raise ReplayInputError(f"{first.where}: the first request has no ce-time")
    clock = VirtualClock(start)
    report = ReplayReport(storm.name, started=start)
    requests = itertools.chain([first], requests)
    sink = options.requests_out or Path(os.devnull).open("w", encoding="utf-8")  # noqa: SIM115
    try:
        pipeline = _pipeline(storm, settings, clock, sink, on_problem or _ignore)
        try:
            return Player(pipeline, clock, report).play(requests, on_line, on_problem)
        finally:
            pipeline.close()
    finally:
        if sink is not options.requests_out:
            sink.close()


def _pipeline(
    storm: Storm,
    settings: Settings,
    clock: VirtualClock,
    sink: TextIO,
    problem: Callable[[str], None],
) -> Pipeline:
    try:
        # background=False: nothing runs on the machine's clock; the replay sweeps itself.
        pipeline = runtime.build_pipeline(settings, clock, _agent(settings, sink), background=False)
    except (SettingsError, FileError, ValueError) as exc:
        raise ReplayInputError(f"{storm.name}: {exc}") from exc
    hook_set = pipeline.hooks.current()
    problems = [*hook_set.problems, *(str(bad) for bad in hook_set.invalid)]
    if hook_set.problems or not hook_set.hooks:
        pipeline.close()
        raise ReplayInputError(f"{storm.name}: no Hooks in force: {'; '.join(problems)}")
    for text in problems:
        problem(f"{storm.name}: not in force: {text}")
    return pipeline


def _agent(settings: Settings, sink: TextIO) -> AgentClient:
    if settings.effective_dry_run:
        return DryRunClient(
            version=A2AVersion(settings.a2a_version),
            user_id=settings.user_id,
            blocking=settings.agent_blocking,
            base_url=settings.agent_url or None,
            out=sink,
        )
    # A real agent is called in real time: its timeouts and retries are not virtual.
    return runtime.build_agent(settings, SystemClock())


def _ignore(_: str) -> None:
    pass


class Player:
    def __init__(self, pipeline: Pipeline, clock: VirtualClock, report: ReplayReport) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.report = report

    def play(
        self,
        requests: Iterable[Request],
        on_line: Callable[[ReplayLine], None] | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> ReplayReport:
        report, problem = self.report, on_problem or _ignore
        show = on_line or _ignore_line
        swept = self.clock.now()
        for request in requests:
            if request.time is not None:
                self.clock.move_to(request.time)
            if self.clock.now() - swept >= SWEEP_EVERY:
                swept = self.clock.now()
                self._sweep(show)
            report.events += 1
            try:
                envelope = cloudevent.parse(request.headers, request.body)
            except CloudEventError as exc:
                report.rejected += 1
                problem(f"{request.where}: refused (400): {exc}")
                continue
            for outcome in self._deliveries(envelope):
                for line in report.account(outcome, self.clock.now()):
                    show(line)
                for result in outcome.results:
                    if result.status.value == "failed":
                        problem(
                            f"{request.where}: {result.hook.key} {result.config.event_type} "
                            f"failed: {result.reason}"
                        )
        self._sweep(show)
        report.ended = self.clock.now()
        return report

    def _deliveries(self, envelope: Envelope) -> Iterator[Outcome]:
        """One delivery, and the adapter's redeliveries while khook asks for them (503)."""
        for attempt in range(REDELIVERIES + 1):
            outcome = self.pipeline.process(envelope)
            yield outcome
            if not outcome.retryable or attempt == REDELIVERIES:
                return
            backoff = FIRST_BACKOFF * 2**attempt
            self.clock.sleep(min(max(backoff, outcome.retry_after or 0.0), MAX_RETRY_AFTER))

    def _sweep(self, show: Callable[[ReplayLine], None]) -> None:
        """Resolve the incidents that went quiet (a khook without a sweep has none)."""
        sweep = getattr(self.pipeline, "sweep", None)
        if sweep is None:
            return
        for line in self.report.account_swept(sweep(), self.clock.now()):
            show(line)


def _ignore_line(_: ReplayLine) -> None:
    pass
