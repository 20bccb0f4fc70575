"""The pipeline: one CloudEvent, one way down — decode, classify, match, deduplicate, render,
call, record. Built once at start-up with its collaborators; it holds no global state."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol, overload

from khook import metrics
from khook.agent import AgentClient
from khook.auth import Authenticator, NoAuth
from khook.clock import Clock
from khook.core.classify import Detection, classify, event_types
from khook.core.correlate import Explained, Facts, Incident, Table, correlate
from khook.core.dedup import Record
from khook.core.events import (
    ClusterEvent,
    Envelope,
    NotOfInterest,
    Reference,
    decode,
    decode_object,
)
from khook.core.explain import why_no_hook, why_no_rule
from khook.core.health import is_healthy
from khook.core.hooks import Hook
from khook.core.match import HookMatch, match
from khook.core.objects import ObjectRef
from khook.core.outcome import FiringResult, Outcome
from khook.core.reasons import Code, Reason
from khook.core.rules import RuleTable
from khook.core.signals import extract_signals
from khook.fanout import FanOut
from khook.files import HookSource
from khook.logs import log
from khook.plans import Plan, Screened, Unit
from khook.recorder import Recorder
from khook.recovery import Recovery
from khook.sandbox import InlineRenderer, Renderer
from khook.sessions import Budget, Sessions
from khook.stores import Deduplicator
from khook.sweep import sweep
from khook.ticker import Ticker

logger = logging.getLogger("khook.pipeline")


class ObjectReader(Protocol):
    """Reads objects from the cluster: for Reference-mode events, and owners of Pods."""

    def get(self, ref: ObjectRef) -> Mapping[str, Any] | None: ...

    def remember(self, obj: Mapping[str, Any]) -> None: ...

    def owner_of(self, ref: ObjectRef) -> ObjectRef | None: ...


class Memory(Protocol):
    """What khook remembers of the objects that pass through (bounded): a Pod's workload and
    node, a node's readiness, a pod's image-pull cause. Facts for correlation."""

    def observe(self, event: ClusterEvent, detections: list[Detection]) -> None: ...

    def facts(self, event: ClusterEvent, detection: Detection | None) -> Facts: ...

    def workload_of(self, pod: ObjectRef) -> ObjectRef | None: ...


class Background(Protocol):
    """A component that writes in the background: flushed on demand, closed at shutdown."""

    def flush(self) -> object: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PipelineConfig:
    control_namespace: str = "khook-system"
    max_signal_age: timedelta = timedelta(minutes=15)
    # What one event may cost: Hook configurations acted on, and their agent calls in flight
    # at once; signals of one object tried per configuration (a Pod with thousands of old
    # container statuses must not mean thousands of store round trips).
    max_calls_per_event: int = 32
    agent_concurrency: int = 8
    max_signals_per_match: int = 8
    # How often incidents that went quiet are resolved and their sessions told (seconds; 0:
    # only when sweep() is called, as tests and `khook replay` do).
    sweep_every: float = 0.0


class Pipeline:
    def __init__(
        self,
        *,
        hooks: HookSource,
        rules: RuleTable,
        dedup: Deduplicator,
        agent: AgentClient,
        recorder: Recorder,
        clock: Clock,
        config: PipelineConfig,
        reader: ObjectReader | None = None,
        background: tuple[Background, ...] = (),
        authenticator: Authenticator | None = None,
        renderer: Renderer | None = None,
        correlation: Table,
        memory: Memory,
        budget: Budget | None = None,
    ) -> None:
        self.hooks = hooks
        self.rules = rules
        self.dedup = dedup
        self.agent = agent
        self.recorder = recorder
        self.clock = clock
        self.config = config
        self.reader = reader
        self.background = background
        # Who may send events: the HTTP entry asks before it reads a request's body.
        self.authenticator = authenticator or NoAuth()
        # Prompts render in a sandbox process: a tenant's template cannot hold this thread.
        self.renderer = renderer or InlineRenderer()
        self.correlation = correlation
        self.memory = memory
        self.sessions = Sessions(
            dedup=dedup, agent=agent, renderer=self.renderer, clock=clock, budget=budget
        )
        self.recovery = Recovery(
            dedup=dedup,
            sessions=self.sessions,
            correlation=correlation,
            memory=memory,
            control_namespace=config.control_namespace,
        )
        self.fanout = FanOut(config.agent_concurrency, pool_size=4 * config.agent_concurrency)
        self._sweeper = Ticker("khook-sweep", config.sweep_every, self.sweep)
        self._listed = False  # whether the Hooks have been listed (once is enough)

    def flush(self) -> None:
        """Write now what background writers hold (tests call this; threads do in service)."""
        for part in self.background:
            part.flush()

    def close(self) -> None:
        """Stop watching, write what is pending, let go of connections."""
        self._sweeper.close()
        self.hooks.close()
        for part in self.background:
            part.close()
        self.dedup.close()
        self.agent.close()
        self.fanout.close()
        self.renderer.close()

    def process(self, envelope: Envelope) -> Outcome:
        """What the HTTP entry does, on one thread: screen, finish_now, finish."""
        return self._through(self.screen(envelope))

    def process_event(self, event: ClusterEvent) -> Outcome:
        return self._through(self._screen_event(event))

    def _through(self, screened: Outcome | Screened) -> Outcome:
        if isinstance(screened, Screened):
            screened = self.finish_now(screened)
        return screened if isinstance(screened, Outcome) else self.finish(screened)

    def screen(self, envelope: Envelope) -> Outcome | Screened:
        """The answer, when it needs no I/O: most of what a source sends (events no rule
        wants, healthy objects in no incident this process knows of) is answered here, on the
        caller's thread (the HTTP entry's event loop), for the cost of decoding and
        classifying. Else what :meth:`finish` needs, on a worker thread: the store, the
        agent, the API server. The answer is the same either way."""
        self._sweeper.ensure_started()  # in the worker that serves, after gunicorn forked
        decoded = decode(envelope, self.clock.now())
        if isinstance(decoded, Reference):
            return Screened(decoded)
        if isinstance(decoded, NotOfInterest):
            return self._done(Outcome(ignored=Reason(decoded.code, decoded.reason)))
        return self._screen_decoded(decoded)

    def _screen_event(self, event: ClusterEvent) -> Outcome | Screened:
        self._sweeper.ensure_started()
        return self._screen_decoded(event)

    def _screen_decoded(self, event: ClusterEvent) -> Outcome | Screened:
        if event.subject.kind == "Pod" and self.reader is not None:
            self.reader.remember(event.object)  # its owner, for the Events about it
        # An object's signals serve twice: to classify, and to say why nothing matched.
        signals = None if event.subject.kind == "Event" else extract_signals(event)
        detections = tuple(classify(event, self.rules, signals))
        self.memory.observe(event, list(detections))
        if detections:
            return Screened(event, detections)
        healthy = is_healthy(event)
        if healthy or not self._listed:
            hook_set = self.hooks.cached()
            if hook_set is None or not hook_set.synced:
                return Screened(event)  # finish() waits for the Hooks or answers "not ready"
            self._listed = True
            if healthy:
                hooks = hook_set.visible_to(event.namespace, self.config.control_namespace)
                if self.recovery.may_concern(event, hooks):
                    return Screened(event)
        # No rule wants it and it ends no incident: once the Hooks were listed they cannot
        # change that (so an object that is not healthy is answered here even while the Hook
        # files are due a look), nor can its owner (an API read, for an Event about a Pod not
        # seen yet).
        why = why_no_rule(event, signals)
        return self._done(Outcome(event=event, ignored=Reason(Code.NO_RULE, why)))

    def finish_now(self, screened: Screened) -> Outcome | Screened:
        """As much of :meth:`finish` as needs no waiting, on the caller's thread (the HTTP
        entry's event loop): with the store in this process, a repeat of a live incident (a
        duplicate, a held or in-flight sighting) is decided here, and with a dry-run agent
        too, an event of one incident opens or tells its session here; only what would wait
        (an API read, a busy store or one on disk, an agent call, a render process) is left,
        in the Screened returned, for finish() on a worker thread; a detection no Hook wants
        is answered here whatever the store. The answer is the same either way."""
        event = screened.event
        if screened.plan is not None or not isinstance(event, ClusterEvent):
            return screened
        if not screened.detections or is_healthy(event):
            return screened  # a healthy object may end incidents: their sessions are told
        hook_set = self.hooks.cached()
        if hook_set is None or not hook_set.synced:
            return screened
        owned = self._with_owner(event, read=False)
        if owned is None:
            return screened  # its owner must be read from the API server
        event = owned
        hooks = hook_set.visible_to(event.namespace, self.config.control_namespace)
        planned = self._plan(event, screened.detections, hooks, healed=())
        if isinstance(planned, Outcome):
            return self._done(planned)
        # Of one incident only: the agent is called here for none or all of an event's
        # sessions, so a plan left for a thread (and made again there if the Hooks changed
        # meanwhile) never holds one whose agent was called.
        opens = self.sessions.opens_now and len(planned.units) == 1
        for unit in planned.units:
            unit.done, unit.items = self.sessions.handle_now(
                planned.event, unit.hook, unit.items, opens=opens
            )
        if any(unit.items for unit in planned.units):
            planned.hooks = hook_set
            return replace(screened, plan=planned)
        return self._done(planned.outcome([]))

    def finish(self, screened: Screened) -> Outcome:
        """The rest of :meth:`screen`'s work, I/O included."""
        plan = screened.plan
        if plan is not None:
            if plan.hooks is None or plan.hooks is self.hooks.current():
                return self._done(self._run(plan))
            # The Hooks changed while it waited for this thread: decided again, as a whole
            # (the sightings decided on the loop are known occurrences now: not counted twice).
            assert isinstance(screened.event, ClusterEvent)
            return self._done(self._act(screened.event, screened.detections))
        target = screened.event
        if isinstance(target, Reference):
            fetched = self._fetch(target)
            if isinstance(fetched, NotOfInterest):
                fetched = Outcome(ignored=Reason(fetched.code, fetched.reason))
            if isinstance(fetched, Outcome):
                return self._done(fetched)
            again = self._screen_event(fetched)
            if isinstance(again, Outcome):
                return again
            screened = again
        assert isinstance(screened.event, ClusterEvent)
        return self._done(self._act(screened.event, screened.detections))

    def _done(self, outcome: Outcome) -> Outcome:
        self.recorder.record(outcome)
        # Counted here, where every Outcome is made (this and the sweep), rather than in a
        # recorder: recorders differ by mode and are replaced in tests, the pipeline is not.
        metrics.event_processed(outcome)
        return outcome

    def _fetch(self, reference: Reference) -> ClusterEvent | NotOfInterest | Outcome:
        """Reference mode carries only a name: read the object it names."""
        ref = reference.ref
        if self.reader is None:
            log(
                logger,
                logging.WARNING,
                "Reference-mode event needs the object",
                resource=ref.display,
            )
            return Outcome(
                ignored=Reason(
                    Code.NEEDS_OBJECT,
                    f"Reference-mode event for {ref.display}: khook needs the object; run "
                    "the ApiServerSource in Resource mode, or khook in cluster mode",
                )
            )
        try:
            obj = self.reader.get(ref)
        except Exception as exc:  # whatever the reader's failure, a redelivery may succeed
            return Outcome(
                error=Reason(Code.OBJECT_UNREADABLE, f"cannot read {ref.display}: {exc}")
            )
        if obj is None:
            return Outcome(ignored=Reason(Code.GONE, f"{ref.display} no longer exists"))
        return decode_object(obj, action=reference.action, observed_at=reference.observed_at)

    def _act(self, event: ClusterEvent, detections: tuple[Detection, ...]) -> Outcome:
        event = self._with_owner(event)
        hook_set = self.hooks.current()
        if not hook_set.synced:
            # Answering 202 now would lose the event: ask for a redelivery instead.
            return Outcome(
                event=event, error=Reason(Code.NOT_READY, "the Hooks have not been listed yet")
            )
        self._listed = True
        # Only the Hooks that can see this namespace: the event's own and the control one's.
        hooks = hook_set.visible_to(event.namespace, self.config.control_namespace)
        healed = self.recovery.recover(event, hooks) if is_healthy(event) else ()
        planned = self._plan(event, detections, hooks, healed)
        return planned if isinstance(planned, Outcome) else self._run(planned)

    def _plan(
        self,
        event: ClusterEvent,
        detections: tuple[Detection, ...],
        hooks: tuple[Hook, ...],
        healed: tuple[FiringResult, ...],
    ) -> Outcome | Plan:
        """The incidents of the Hooks the event concerns; or, when there are none, the
        answer."""
        types = tuple(event_types(list(detections)))
        if not detections:
            ignored = Reason(Code.NO_RULE, why_no_rule(event))
            return Outcome(event=event, ignored=ignored, results=healed)
        matches = match(event, list(detections), hooks, self.config.control_namespace)
        if not matches:
            control = self.config.control_namespace
            ignored = Reason(Code.NO_HOOK, why_no_hook(event, list(detections), hooks, control))
            return Outcome(event_types=types, event=event, ignored=ignored, results=healed)
        units = self._incidents(event, matches)
        limit = self.config.max_calls_per_event
        if len(units) > limit:
            log(
                logger,
                logging.WARNING,
                "more incidents concern one event than khook acts on",
                resource=event.involved.display,
                incidents=len(units),
                limit=limit,
                skipped=[unit.key.id for unit in units[limit:]][:20],
            )
            units = units[:limit]
        return Plan(event, types, units, healed)

    def _run(self, plan: Plan) -> Outcome:
        """A plan's sightings that are still to be decided, side by side (bounded)."""
        waiting = [unit for unit in plan.units if unit.items]
        handled = self.fanout.map(
            lambda u: self.sessions.handle(plan.event, u.hook, u.items), waiting
        )
        return plan.outcome(handled)

    def _incidents(self, event: ClusterEvent, matches: list[HookMatch]) -> list[Unit]:
        """Every matched detection placed in its incident; the detections of one incident of
        one Hook together, the cause first, at most ``max_signals_per_match`` tried."""
        units: dict[str, Unit] = {}
        for m in matches:
            for detection in m.detections:
                placed = correlate(
                    event,
                    m.hook,
                    m.config,
                    detection,
                    table=self.correlation,
                    facts=self.memory.facts(event, detection),
                    control_namespace=self.config.control_namespace,
                    claim_timeout=self.dedup.claim_timeout,
                )
                unit = units.setdefault(f"{m.hook.key}|{placed.key.id}", Unit(m.hook, placed.key))
                unit.items.append(placed)
        for unit in units.values():
            unit.items.sort(key=self._rank)
            del unit.items[self.config.max_signals_per_match :]
        return list(units.values())

    @staticmethod
    def _rank(item: Incident | Explained) -> int:
        if isinstance(item, Explained):
            return 0
        return item.policy.rank(item.detection.event_type)

    @overload
    def _with_owner(self, event: ClusterEvent) -> ClusterEvent: ...
    @overload
    def _with_owner(self, event: ClusterEvent, *, read: bool) -> ClusterEvent | None: ...

    def _with_owner(self, event: ClusterEvent, *, read: bool = True) -> ClusterEvent | None:
        """Group an Event about a Pod by the Pod's workload, as its Pod events are grouped.
        ``read=False``: None when the owner would have to be read from the API server."""
        if event.subject.kind == "Pod":
            return event  # its own owner references are in the object
        if event.owner is not None or event.involved.kind != "Pod":
            return event
        owner = self.memory.workload_of(event.involved)
        if owner is None and self.reader is not None and not read:
            return None
        if owner is None and self.reader is not None:
            try:
                owner = self.reader.owner_of(event.involved)
            except Exception as exc:
                log(
                    logger,
                    logging.WARNING,
                    "cannot read the owner of a pod",
                    resource=event.involved.display,
                    error=str(exc),
                )
        return replace(event, owner=owner) if owner is not None else event

    def sweep(self) -> list[tuple[Hook, Record]]:
        """Incidents that went quiet for their window are over (see khook.sweep)."""
        return sweep(self.hooks, self.dedup, self.sessions, self.clock, self.recorder)
