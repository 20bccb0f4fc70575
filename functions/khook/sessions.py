"""Agent sessions for incidents: the first message opens one, follow-ups keep it informed.

For the sightings of one incident (cause first), the Deduplicator decides; this module acts on
the decision: render the Hook's prompt and open the session, or tell the open session what
changed (khook writes follow-ups itself: cluster text in them is fenced like in a prompt), and
confirm or release the claim by the agent's answer. A Hook never opens more than
``max_sessions_per_minute`` sessions: beyond that, new incidents join one overflow session.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from khook import trace
from khook.agent import (
    AgentClient,
    AgentError,
    AgentRequest,
    AgentResult,
    answers_at_once,
    is_terminal,
)
from khook.clock import Clock
from khook.core.correlate import Explained, Incident
from khook.core.dedup import DedupKey, Policy, Record, Sighting, Verdict
from khook.core.events import ClusterEvent
from khook.core.hook_fields import FollowUps
from khook.core.hooks import EventConfiguration, Hook
from khook.core.incident import BUDGET_TYPE, OVERFLOW_TYPE
from khook.core.messages import (
    followup_message_id,
    followup_text,
    message_id,
    metadata,
    prompt_facts,
    resolution_text,
)
from khook.core.outcome import FiringResult, Status
from khook.core.prompt import PromptError, PromptFacts, PromptTemplate
from khook.core.text import NAME_LIMIT, clean
from khook.logs import log
from khook.sandbox import Renderer, SandboxError
from khook.sightings import held_result, quiet_result, sighting_result, store_failed
from khook.stores import Claim, Deduplicator, StoreError

logger = logging.getLogger("khook.sessions")

# A sighting with one of these ends its incident's sightings of the event: it was claimed (or
# could not be, now), and the others add nothing new.
_ENDS = frozenset((Status.FIRED, Status.FAILED, Status.IN_FLIGHT))


@dataclass(frozen=True)
class Budget:
    """The storm breaker: sessions one Hook may open per minute; 0 turns it off."""

    sessions_per_minute: int = 10
    overflow_window: timedelta = timedelta(minutes=10)


class Sessions:
    def __init__(
        self,
        *,
        dedup: Deduplicator,
        agent: AgentClient,
        renderer: Renderer,
        clock: Clock,
        budget: Budget | None = None,
    ) -> None:
        self.dedup = dedup
        self.agent = agent
        self.renderer = renderer
        self.clock = clock
        self.budget = budget or Budget()
        # Whether a session may be opened (or told) on the event loop: the store writes in
        # this process and the agent answers without I/O (a dry run). A real agent's call
        # is always made on a worker thread.
        self.opens_now = dedup.opens_now and answers_at_once(agent)

    def handle(
        self, event: ClusterEvent, hook: Hook, items: Sequence[Incident | Explained]
    ) -> list[FiringResult]:
        """The sightings of one incident of one Hook, the cause first."""
        results: list[FiringResult] = []
        for item in items:
            if isinstance(item, Explained):
                results.append(held_result(hook, item))
                continue
            result = self._sighting(event, hook, item)
            results.append(result)
            if result.status in _ENDS:
                break
        return results

    def handle_now(
        self,
        event: ClusterEvent,
        hook: Hook,
        items: Sequence[Incident | Explained],
        *,
        opens: bool = False,
    ) -> tuple[list[FiringResult], list[Incident | Explained]]:
        """:meth:`handle` on a thread that must not wait (the event loop), as far as it goes
        without waiting: the results of the sightings decided here, and the sightings left
        for :meth:`handle` on a worker thread (from the first that would wait, or call the
        agent without ``opens``, or whose prompt needs a render process; nothing is left
        stored for it: a claim never waits in the queue for a thread, where its timeout
        would run and a redelivery could take it over). ``opens`` (only where
        :attr:`opens_now`): sessions are opened and told here."""
        results: list[FiringResult] = []
        for n, item in enumerate(items):
            if isinstance(item, Explained):
                results.append(held_result(hook, item))
                continue
            try:
                claim = self.dedup.claim_now(item.key, item.sighting, item.policy, opens=opens)
            except StoreError as exc:
                results.append(store_failed(hook, item, exc))
                break
            if claim is None:
                return results, list(items[n:])
            result = quiet_result(hook, item, claim)
            if result is None:
                result = self._called(event, hook, item, claim, now=True)
            if result is None:
                return results, list(items[n:])  # its claim was let go
            results.append(result)
            if result.status in _ENDS:
                break
        return results, []

    def _sighting(self, event: ClusterEvent, hook: Hook, item: Incident) -> FiringResult:
        try:
            claim = self.dedup.claim(item.key, item.sighting, item.policy)
        except StoreError as exc:
            return store_failed(hook, item, exc)
        result = quiet_result(hook, item, claim) or self._called(event, hook, item, claim)
        assert result is not None  # only on the event loop is a claim let go for later
        return result

    def _called(
        self, event: ClusterEvent, hook: Hook, item: Incident, claim: Claim, *, now: bool = False
    ) -> FiringResult | None:
        """A claim that calls the agent: a follow-up, a new session, or the overflow session.
        ``now`` (the event loop): the prompt is rendered first, in this process; None, with
        the claim let go and nothing counted, when it must render in a render process."""
        if claim.verdict is Verdict.FOLLOWUP and claim.record is not None:
            return self._follow_up(hook, item, claim, claim.record)
        record = claim.record
        assert record is not None  # a FIRE claim holds its record
        under = self._under_cause(hook, item, record)
        rendered: str | PromptError | None = None
        if now:
            try:
                rendered = self.renderer.render_now(*self._prompt_of(event, hook, under, record))
            except PromptError as exc:  # told as on a thread, if the budget lets it open
                rendered = exc
            if rendered is None:
                self._release(claim)
                return None
        if not self._within_budget(hook):
            return self._overflow(hook, item, claim)
        return self._open(event, hook, item, claim, under=under, rendered=rendered)

    @staticmethod
    def _under_cause(hook: Hook, item: Incident, record: Record) -> Incident:
        """The sighting under its incident's cause: the configuration of the highest type
        seen in it so far, whose prompt and agent open the session."""
        return replace(item, config=hook.configuration(record.cause_type) or item.config)

    @staticmethod
    def _prompt_of(
        event: ClusterEvent, hook: Hook, under: Incident, record: Record
    ) -> tuple[PromptTemplate, PromptFacts, Mapping[str, Any] | None]:
        """What the session's prompt renders from (``under``: the sighting under its cause)."""
        return under.config.prompt, prompt_facts(event, hook, under, record), event.object

    def _open(
        self,
        event: ClusterEvent,
        hook: Hook,
        item: Incident,
        claim: Claim,
        *,
        under: Incident,
        rendered: str | PromptError | None,
    ) -> FiringResult:
        """``under``: the sighting under its incident's cause; ``rendered``: the prompt (or
        its error) as rendered on the event loop."""
        result = sighting_result(hook, item)
        record = claim.record
        assert record is not None
        try:
            if isinstance(rendered, PromptError):
                raise rendered
            if rendered is None:
                rendered = self.renderer.render(*self._prompt_of(event, hook, under, record))
        except PromptError as exc:  # the Hook's fault: not retried, the Hook says so
            self._release(claim)
            return result(
                Status.FAILED, reason=str(exc), record=record, render_failed=True, failure="render"
            )
        except SandboxError as exc:  # khook's: no render process free in time; retry later
            self._release(claim)
            return result(
                Status.FAILED, reason=str(exc), record=record, retryable=True, failure="sandbox"
            )
        request = AgentRequest(
            agent=under.config.agent,
            prompt=rendered,
            # Derived from the incident and its first sighting: the same for every retry of
            # this firing, and for a takeover of a claim whose holder died mid-call.
            message_id=message_id(under.key, record),
            metadata=metadata(hook, under, event),
            hook_namespace=hook.namespace,
            hook_name=hook.name,
            trace=trace.outgoing(),
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
                failure=exc.kind,
            )
        stored = self._confirm(claim, answer) or record
        return result(
            Status.FIRED,
            record=stored,
            reason=claim.decision.reason,
            task_id=answer.task_id,
            context_id=answer.context_id,
        )

    def _follow_up(self, hook: Hook, item: Incident, claim: Claim, record: Record) -> FiringResult:
        result = sighting_result(hook, item)
        text = followup_text(record, claim.decision.changes)
        try:
            answer = self._tell(hook, item.config, record, text)
        except AgentError as exc:
            self._release(claim)
            # The incident's session is open; a follow-up that fails is tried again with the
            # next change: nothing here is the sender's to retry.
            log(logger, logging.WARNING, "follow-up failed", key=item.key.id, error=str(exc))
            return result(Status.DUPLICATE, record=record, reason=f"follow-up failed: {exc}")
        stored = self._confirm(claim, answer) or record
        return result(
            Status.FOLLOWUP,
            record=stored,
            reason=claim.decision.reason,
            task_id=answer.task_id,
            context_id=answer.context_id,
        )

    def tell_resolved(self, hook: Hook, record: Record, why: str) -> AgentResult | None:
        """An open incident is over: its session is told, whatever the follow-up limit.
        None when there is no session to tell, or the agent could not be told."""
        config = hook.configuration(record.key.event_type) or (
            hook.configurations[0] if hook.configurations else None
        )
        if config is None or not record.opened or not record.context_id:
            return None
        if config.incident.followups is FollowUps.NONE:
            return None
        text = resolution_text(record, why)
        try:
            return self._tell(hook, config, record, text, resolved=True)
        except AgentError as exc:
            log(logger, logging.WARNING, "resolution not told", key=record.key.id, error=str(exc))
            return None

    def _tell(
        self,
        hook: Hook,
        config: EventConfiguration,
        record: Record,
        text: str,
        *,
        resolved: bool = False,
    ) -> AgentResult:
        number = record.followups + (1 if resolved else 0)
        request = AgentRequest(
            agent=config.agent,
            prompt=text,
            message_id=followup_message_id(record, number),
            metadata={
                "khook.dev/hook": hook.key,
                "khook.dev/eventType": record.cause_type,
                "khook.dev/incident": record.key.digest,
                "khook.dev/followup": "resolved" if resolved else str(number),
            },
            hook_namespace=hook.namespace,
            hook_name=hook.name,
            trace=trace.outgoing(),
            context_id=record.context_id,
            task_id="" if is_terminal(record.task_state) else record.task_id,
            followup=True,
        )
        return self.agent.send(request)

    # ---- the storm breaker -------------------------------------------------------------

    def _within_budget(self, hook: Hook) -> bool:
        limit = self.budget.sessions_per_minute
        if limit <= 0:
            return True
        minute = int(self.clock.now().timestamp() // 60)
        key = DedupKey(hook.key, BUDGET_TYPE, "", f"Minute/{minute}")
        try:
            record = self.dedup.count(key, timedelta(minutes=2))
        except StoreError:
            return True  # the breaker fails open: better a session than a lost incident
        return record.count <= limit

    def _overflow(self, hook: Hook, item: Incident, claim: Claim) -> FiringResult:
        """Over the Hook's session budget: the incident joins the Hook's overflow session
        (opened by the first such incident, told of the next ones)."""
        result = sighting_result(hook, item)
        key = DedupKey(hook.key, OVERFLOW_TYPE, "", "Overflow")
        joining = Sighting(
            occurrence=item.key.id,
            occurred_at=None,
            observed_at=self.clock.now(),
            resource=item.key.group,
            event_type=item.key.event_type,
            workload=f"{item.key.namespace or '(cluster)'}/{item.key.group}",
            holdable=False,
        )
        policy = Policy(window=self.budget.overflow_window, followup_every=timedelta(minutes=1))
        try:
            overflow = self.dedup.claim(key, joining, policy)
        except StoreError as exc:
            self._release(claim)
            return result(
                Status.FAILED, reason=f"dedup store: {exc}", retryable=True, failure="store"
            )
        shared = overflow.record or overflow.previous
        answer: AgentResult | None = None
        try:
            if overflow.verdict is Verdict.FIRE and overflow.record is not None:
                answer = self._tell_overflow(hook, item.config, overflow.record, opening=True)
            elif overflow.verdict is Verdict.FOLLOWUP and overflow.record is not None:
                answer = self._tell_overflow(hook, item.config, overflow.record, opening=False)
        except AgentError as exc:
            self._release(overflow)
            self._release(claim)
            return result(
                Status.FAILED,
                reason=str(exc),
                retryable=exc.retryable,
                agent_called=True,
                failure=exc.kind,
            )
        if answer is not None:
            self._confirm(overflow, answer)
        context = answer.context_id if answer else (shared.context_id if shared else "")
        task = answer.task_id if answer else (shared.task_id if shared else "")
        overflowed = AgentResult(task, context, "overflow", "overflow")
        stored = self._confirm(claim, overflowed) or claim.record
        log(
            logger,
            logging.WARNING,
            "storm breaker: incident joined the overflow session",
            hook=hook.key,
            key=item.key.id,
        )
        status = {Verdict.FIRE: Status.FIRED, Verdict.FOLLOWUP: Status.FOLLOWUP}.get(
            overflow.verdict, Status.DUPLICATE
        )
        return result(
            status,
            record=stored,
            reason=f"over {self.budget.sessions_per_minute} sessions a minute: joined the "
            "overflow session",
            overflow=True,
            context_id=context,
        )

    def _tell_overflow(
        self, hook: Hook, config: EventConfiguration, record: Record, *, opening: bool
    ) -> AgentResult:
        names = ", ".join(clean(w, NAME_LIMIT) for w in record.workloads[-20:])
        text = (
            f"The Hook {hook.key} opened more than {self.budget.sessions_per_minute} incidents "
            f"in a minute; khook keeps the rest in this one conversation. "
            f"{record.workloads_total} more incident(s) so far: {names}."
        )
        if opening:
            request = AgentRequest(
                agent=config.agent,
                prompt=text,
                message_id=message_id(record.key, record),
                metadata={"khook.dev/hook": hook.key, "khook.dev/overflow": "true"},
                hook_namespace=hook.namespace,
                hook_name=hook.name,
                trace=trace.outgoing(),
            )
            return self.agent.send(request)
        return self._tell(hook, config, record, text)

    # ---- claims ----------------------------------------------------------------------------

    def _confirm(self, claim: Claim, answer: AgentResult) -> Record | None:
        try:
            return self.dedup.confirm(claim, answer.task_id, answer.context_id, answer.state)
        except StoreError as exc:
            log(logger, logging.WARNING, "could not record the agent's answer", error=str(exc))
            return None

    def _release(self, claim: Claim) -> None:
        try:
            self.dedup.release(claim)
        except StoreError as exc:
            # The claim stays: it is taken over once the claim timeout has passed.
            log(
                logger,
                logging.ERROR,
                "could not release a failed claim",
                key=claim.key.id,
                error=str(exc),
            )
