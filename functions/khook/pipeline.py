"""The pipeline: one CloudEvent, one way down — decode, classify, match, deduplicate, render,
call, record. Built once at start-up with its collaborators; it holds no global state."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Protocol

from khook import metrics
from khook.agent import AgentClient
from khook.auth import Authenticator, NoAuth
from khook.clock import Clock
from khook.core.classify import Detection, classify, event_types
from khook.core.correlate import Explained, Facts, Incident, Table, correlate
from khook.core.dedup import DedupKey, Record, Verdict
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
from khook.core.match import HookMatch, hook_sees, match
from khook.core.objects import ObjectRef
from khook.core.outcome import FiringResult, Outcome, Status
from khook.core.reasons import Code, Reason
from khook.core.rules import RuleTable
from khook.fanout import FanOut
from khook.files import HookSource
from khook.logs import log
from khook.recorder import Recorder
from khook.sandbox import InlineRenderer, Renderer
from khook.sessions import Budget, Sessions
from khook.stores import Deduplicator, StoreError
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
    # How long a claim may stay unconfirmed before another delivery takes it over (see
    # khook.core.dedup.decide); None: never (tools that run one event, like `khook render`).
    claim_timeout: timedelta | None = None
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
        self.fanout = FanOut(config.agent_concurrency, pool_size=4 * config.agent_concurrency)
        self._sweeper = Ticker("khook-sweep", config.sweep_every, self.sweep)

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
        outcome = self._process(envelope)
        self.recorder.record(outcome)
        # Counted here, where every Outcome is made (this and the sweep), rather than in a
        # recorder: recorders differ by mode and are replaced in tests, the pipeline is not.
        metrics.event_processed(outcome)
        return outcome

    def _process(self, envelope: Envelope) -> Outcome:
        decoded = decode(envelope, self.clock.now())
        if isinstance(decoded, Reference):
            fetched = self._fetch(decoded)
            if isinstance(fetched, Outcome):
                return fetched
            decoded = fetched
        if isinstance(decoded, NotOfInterest):
            return Outcome(ignored=Reason(decoded.code, decoded.reason))
        return self.process_event(decoded)

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

    def process_event(self, event: ClusterEvent) -> Outcome:
        self._sweeper.ensure_started()  # in the worker that serves, after gunicorn forked
        event = self._with_owner(event)
        detections = classify(event, self.rules)
        self.memory.observe(event, detections)
        types = tuple(event_types(detections))
        hook_set = self.hooks.current()
        if not hook_set.synced:
            # Answering 202 now would lose the event: ask for a redelivery instead.
            return Outcome(
                event=event, error=Reason(Code.NOT_READY, "the Hooks have not been listed yet")
            )
        # Only the Hooks that can see this namespace: the event's own and the control one's.
        hooks = hook_set.visible_to(event.namespace, self.config.control_namespace)
        healed = self._recover(event, hooks) if is_healthy(event) else ()
        if not detections:
            ignored = Reason(Code.NO_RULE, why_no_rule(event))
            return Outcome(event=event, ignored=ignored, results=healed)
        matches = match(event, detections, hooks, self.config.control_namespace)
        if not matches:
            control = self.config.control_namespace
            ignored = Reason(Code.NO_HOOK, why_no_hook(event, detections, hooks, control))
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
        handled = self.fanout.map(lambda u: self.sessions.handle(event, u.hook, u.items), units)
        results = healed + tuple(r for per_unit in handled for r in per_unit)
        return Outcome(event_types=types, results=results, event=event)

    def _incidents(self, event: ClusterEvent, matches: list[HookMatch]) -> list[_Unit]:
        """Every matched detection placed in its incident; the detections of one incident of
        one Hook together, the cause first, at most ``max_signals_per_match`` tried."""
        units: dict[str, _Unit] = {}
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
                )
                if isinstance(placed, Incident) and self.config.claim_timeout is not None:
                    policy = replace(placed.policy, claim_timeout=self.config.claim_timeout)
                    placed = replace(placed, policy=policy)
                unit = units.setdefault(f"{m.hook.key}|{placed.key.id}", _Unit(m.hook, placed.key))
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

    def _with_owner(self, event: ClusterEvent) -> ClusterEvent:
        """Group an Event about a Pod by the Pod's workload, as its Pod events are grouped."""
        if event.subject.kind == "Pod":
            if self.reader is not None:
                self.reader.remember(event.object)
            return event
        if event.owner is not None or event.involved.kind != "Pod":
            return event
        owner = self.memory.workload_of(event.involved)
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

    def _recover(self, event: ClusterEvent, hooks: tuple[Hook, ...]) -> tuple[FiringResult, ...]:
        """A healthy object leaves the incidents it was failing in: one that is left with no
        failing object is over (its session is told), or, if it never opened, healed."""
        done = []
        resource = event.involved.display
        for hook in hooks:
            for key in self._candidates(event, hook):
                try:
                    decision = self.dedup.resolve(key, resource)
                except StoreError as exc:
                    log(
                        logger,
                        logging.WARNING,
                        "could not resolve an incident",
                        key=key.id,
                        error=str(exc),
                    )
                    continue
                if decision is None or decision.record is None:
                    continue
                record = decision.record
                config = hook.configuration(key.event_type) or hook.configurations[0]
                if decision.verdict is Verdict.RESOLVED:
                    told = self.sessions.tell_resolved(hook, record, decision.reason)
                    status = Status.RESOLVED
                    done.append(
                        FiringResult(
                            hook,
                            config,
                            None,
                            key,
                            status,
                            record=record,
                            reason=decision.reason,
                            agent_called=told is not None,
                        )
                    )
                elif decision.verdict is Verdict.HEALED:
                    done.append(
                        FiringResult(
                            hook,
                            config,
                            None,
                            key,
                            Status.HELD,
                            record=record,
                            reason=decision.reason,
                        )
                    )
        return tuple(done)

    def _candidates(self, event: ClusterEvent, hook: Hook) -> set[DedupKey]:
        """The incidents of this Hook the object may be failing in."""
        if not hook_sees(hook, event.namespace, self.config.control_namespace):
            return set()
        facts = self.memory.facts(event, None)
        groups = {(event.namespace, event.involved.display)}
        workload = facts.workload or event.owner
        if workload is not None:
            groups.add((event.namespace, workload.display))
        if facts.node:
            groups.add(("", f"Node/{facts.node}"))
        if facts.pull is not None and facts.pull.transient:
            groups.add(("", f"Registry/{facts.pull.registry}/{facts.pull.pull_class}"))
        families = {self.correlation.family(t, hook.event_types) for t in hook.event_types}
        return {DedupKey(hook.key, f, ns, g) for f in families for ns, g in groups}

    def sweep(self) -> list[tuple[Hook, Record]]:
        """Incidents that went quiet for their window are over (see khook.sweep)."""
        return sweep(self.hooks, self.dedup, self.sessions, self.clock, self.recorder)


@dataclass
class _Unit:
    """The detections of one event that belong to one incident of one Hook."""

    hook: Hook
    key: DedupKey
    items: list[Incident | Explained] = field(default_factory=list)
