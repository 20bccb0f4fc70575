"""The pipeline: one CloudEvent, one way down — decode, classify, match, deduplicate, render,
call, record. Built once at start-up with its collaborators; it holds no global state."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from khook.agent import AgentClient, AgentError, AgentRequest
from khook.auth import Authenticator, NoAuth
from khook.clock import Clock
from khook.core.classify import Detection, classify, event_types
from khook.core.dedup import DedupKey, Observation, Record, Verdict, stale
from khook.core.events import (
    ClusterEvent,
    Envelope,
    NotOfInterest,
    Reference,
    decode,
    decode_object,
)
from khook.core.health import is_healthy
from khook.core.hooks import Hook
from khook.core.match import HookMatch, hook_sees, incident_group, match
from khook.core.objects import ObjectRef
from khook.core.outcome import FiringResult, Outcome, Status
from khook.core.prompt import PromptError, PromptFacts
from khook.core.rules import RuleTable
from khook.fanout import FanOut
from khook.files import HookSource
from khook.logs import log
from khook.recorder import Recorder
from khook.sandbox import InlineRenderer, Renderer, SandboxError
from khook.stores import Claim, Deduplicator, StoreError

logger = logging.getLogger("khook.pipeline")

_MESSAGE_NAMESPACE = uuid.UUID("6f1c1f8e-3f0e-4d5e-9a5e-6b686f6f6b21")


class ObjectReader(Protocol):
    """Reads objects from the cluster: for Reference-mode events, and owners of Pods."""

    def get(self, ref: ObjectRef) -> Mapping[str, Any] | None: ...

    def remember(self, obj: Mapping[str, Any]) -> None: ...

    def owner_of(self, ref: ObjectRef) -> ObjectRef | None: ...


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
        self.fanout = FanOut(config.agent_concurrency, pool_size=4 * config.agent_concurrency)

    def flush(self) -> None:
        """Write now what background writers hold (tests call this; threads do in service)."""
        for part in self.background:
            part.flush()

    def close(self) -> None:
        """Stop watching, write what is pending, let go of connections."""
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
        return outcome

    def _process(self, envelope: Envelope) -> Outcome:
        decoded = decode(envelope, self.clock.now())
        if isinstance(decoded, Reference):
            fetched = self._fetch(decoded)
            if isinstance(fetched, Outcome):
                return fetched
            decoded = fetched
        if isinstance(decoded, NotOfInterest):
            return Outcome(ignored=decoded.reason)
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
                ignored=f"Reference-mode event for {ref.display}: khook needs the object; run "
                "the ApiServerSource in Resource mode, or khook in cluster mode"
            )
        try:
            obj = self.reader.get(ref)
        except Exception as exc:  # whatever the reader's failure, a redelivery may succeed
            return Outcome(error=f"cannot read {ref.display}: {exc}")
        if obj is None:
            return Outcome(ignored=f"{ref.display} no longer exists")
        return decode_object(obj, action=reference.action, observed_at=reference.observed_at)

    def process_event(self, event: ClusterEvent) -> Outcome:
        event = self._with_owner(event)
        detections = classify(event, self.rules)
        types = tuple(event_types(detections))
        hook_set = self.hooks.current()
        if not hook_set.synced:
            # Answering 202 now would lose the event: ask for a redelivery instead.
            return Outcome(event=event, error="the Hooks have not been listed yet")
        # Only the Hooks that can see this namespace: the event's own and the control one's.
        hooks = hook_set.visible_to(event.namespace, self.config.control_namespace)
        resolved = self._resolve(event, hooks) if is_healthy(event) else ()
        if not detections:
            return Outcome(event=event, ignored="no classification rule matched", resolved=resolved)
        matches = match(event, detections, hooks, self.config.control_namespace)
        limit = self.config.max_calls_per_event
        if len(matches) > limit:
            log(
                logger,
                logging.WARNING,
                "more Hook configurations match one event than khook acts on",
                resource=event.involved.display,
                matched=len(matches),
                limit=limit,
                skipped=[f"{m.hook.key}:{m.config.event_type}" for m in matches[limit:]][:20],
            )
            matches = matches[:limit]
        fired = self.fanout.map(lambda m: self._fire(event, m), matches)
        results = tuple(r for per_match in fired for r in per_match)
        return Outcome(event_types=types, results=results, event=event, resolved=resolved)

    def _with_owner(self, event: ClusterEvent) -> ClusterEvent:
        """Group an Event about a Pod by the Pod's owner, as its Pod events are grouped."""
        if self.reader is None:
            return event
        if event.subject.kind == "Pod":
            self.reader.remember(event.object)
            return event
        if event.owner is not None or event.involved.kind != "Pod":
            return event
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
            return event
        return replace(event, owner=owner) if owner is not None else event

    def _resolve(
        self, event: ClusterEvent, hooks: tuple[Hook, ...]
    ) -> tuple[tuple[Hook, Record], ...]:
        done = []
        for hook in hooks:
            if not hook_sees(hook, event.namespace, self.config.control_namespace):
                continue
            for config in hook.configurations:
                key = DedupKey(
                    hook.key, config.event_type, event.namespace, incident_group(event, config)
                )
                try:
                    record = self.dedup.resolve(key, event.involved.display)
                except StoreError as exc:
                    log(
                        logger,
                        logging.WARNING,
                        "could not resolve an incident",
                        key=key.id,
                        error=str(exc),
                    )
                    continue
                if record is not None:
                    done.append((hook, record))
        return tuple(done)

    def _fire(self, event: ClusterEvent, m: HookMatch) -> list[FiringResult]:
        results = []
        key = DedupKey(
            hook=m.hook.key,
            event_type=m.config.event_type,
            namespace=event.namespace,
            group=incident_group(event, m.config),
        )
        fresh = []
        for detection in m.detections:
            age = self._age(event, detection)
            if age is None:
                fresh.append(detection)
            else:  # stale whatever the store holds: no need to ask it
                results.append(
                    FiringResult(
                        m.hook, m.config, detection, key, Status.STALE, reason=f"signal was {age}"
                    )
                )
        for detection in fresh[: self.config.max_signals_per_match]:
            result = self._fire_one(event, m, detection, key)
            results.append(result)
            if result.status is Status.FIRED:
                break  # the incident is claimed; its other signals are duplicates by definition
        return results

    def _fire_one(
        self, event: ClusterEvent, m: HookMatch, detection: Detection, key: DedupKey
    ) -> FiringResult:
        signal = detection.signal

        def result(status: Status, **kw: object) -> FiringResult:
            return FiringResult(m.hook, m.config, detection, key, status, **kw)  # type: ignore[arg-type]

        observation = Observation(
            occurrence=signal.occurrence,
            occurred_at=signal.occurred_at,
            observed_at=event.observed_at,
            resource=event.involved.display,
        )
        try:
            claim = self.dedup.claim(key, observation, m.config.cooldown)
        except StoreError as exc:
            return result(Status.FAILED, reason=f"dedup store: {exc}", retryable=True)
        if claim.verdict is Verdict.IN_FLIGHT:
            # Usually done within a second; a holder that died is taken over after the claim
            # timeout, so a sender that keeps retrying gets its incident fired either way.
            return result(
                Status.IN_FLIGHT, reason=claim.decision.reason, retryable=True, retry_after=1.0
            )
        if claim.verdict is not Verdict.FIRE or claim.record is None:
            status = Status.STALE if claim.verdict is Verdict.STALE else Status.DUPLICATE
            return result(
                status, record=claim.decision.record or claim.previous, reason=claim.decision.reason
            )
        record = claim.record
        facts = self._facts(event, m, detection, record)
        try:
            prompt = self.renderer.render(m.config.prompt, facts, event.object)
        except PromptError as exc:  # the Hook's fault: not retried, the Hook says so
            self._release(claim)
            return result(Status.FAILED, reason=str(exc), record=record, render_failed=True)
        except SandboxError as exc:  # khook's: no render process free in time; retry later
            self._release(claim)
            return result(Status.FAILED, reason=str(exc), record=record, retryable=True)
        request = AgentRequest(
            agent=m.config.agent,
            prompt=prompt,
            # Derived from the incident and its first sighting: the same for every retry of
            # this firing, and for a takeover of a claim whose holder died mid-call.
            message_id=str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{key.id}@{record.first_seen}")),
            metadata={
                "khook.dev/hook": m.hook.key,
                "khook.dev/eventType": m.config.event_type,
                "khook.dev/namespace": event.namespace,
                "khook.dev/resource": event.involved.display,
                "khook.dev/incident": key.digest,
            },
            hook_namespace=m.hook.namespace,
            hook_name=m.hook.name,
        )
        try:
            answer = self.agent.send(request)
        except AgentError as exc:
            self._release(claim)
            return result(
                Status.FAILED,
                record=record,
                reason=str(exc),
                retryable=exc.retryable,
                retry_after=exc.retry_after,
                agent_called=True,
            )
        try:
            record = self.dedup.confirm(claim, answer.task_id, answer.context_id) or record
        except StoreError as exc:
            log(logger, logging.WARNING, "could not record the agent task", error=str(exc))
        return result(
            Status.FIRED,
            record=record,
            reason=claim.decision.reason,
            task_id=answer.task_id,
            context_id=answer.context_id,
        )

    def _age(self, event: ClusterEvent, detection: Detection) -> str | None:
        """How old a stale signal was when observed; None when it is not stale."""
        return stale(detection.signal.occurred_at, event.observed_at, self.config.max_signal_age)

    def _release(self, claim: Claim) -> None:
        try:
            self.dedup.release(claim)
        except StoreError as exc:
            # The claim stays until its window passes: this incident will not re-fire before.
            log(
                logger,
                logging.ERROR,
                "could not release a failed claim",
                key=claim.key.id,
                error=str(exc),
            )

    @staticmethod
    def _facts(
        event: ClusterEvent, m: HookMatch, detection: Detection, record: Record
    ) -> PromptFacts:
        signal = detection.signal
        # The cluster's own times where the signal has them; khook's clock only counts.
        when = signal.occurred_at or event.observed_at
        first = min(signal.first_seen or when, when)
        return PromptFacts(
            event_type=m.config.event_type,
            namespace=event.namespace,
            kind=event.involved.kind,
            name=event.involved.name,
            reason=signal.reason,
            message=signal.message,
            timestamp=when,
            count=max(signal.count, record.count),
            first_seen=first,
            last_seen=when,
            hook=m.hook.key,
            owner=event.owner.display if event.owner else "",
            container=signal.container,
            api_version=event.involved.api_version,
            action=event.action.value,
        )
