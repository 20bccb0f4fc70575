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
from khook.clock import Clock
from khook.core.classify import Detection, classify, event_types
from khook.core.dedup import DedupKey, Observation, Record, Verdict
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
from khook.files import HookSource
from khook.logs import log
from khook.recorder import Recorder
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
        hooks = hook_set.hooks
        resolved = self._resolve(event, hooks) if is_healthy(event) else ()
        if not detections:
            return Outcome(event=event, ignored="no classification rule matched", resolved=resolved)
        matches = match(event, detections, hooks, self.config.control_namespace)
        results = tuple(r for m in matches for r in self._fire(event, m))
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
        for detection in m.detections:
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
        if claim.verdict is not Verdict.FIRE or claim.record is None:
            status = Status.STALE if claim.verdict is Verdict.STALE else Status.DUPLICATE
            return result(
                status, record=claim.decision.record or claim.previous, reason=claim.decision.reason
            )
        record = claim.record
        try:
            prompt = m.config.prompt.render(self._facts(event, m, detection, record), event.object)
        except PromptError as exc:
            self._release(claim)
            return result(Status.FAILED, reason=str(exc), record=record)
        request = AgentRequest(
            agent=m.config.agent,
            prompt=prompt,
            message_id=str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{key.id}@{record.fired_at}")),
            metadata={
                "khook.dev/hook": m.hook.key,
                "khook.dev/eventType": m.config.event_type,
                "khook.dev/namespace": event.namespace,
                "khook.dev/resource": event.involved.display,
                "khook.dev/incident": key.digest,
            },
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
