"""Recording what happened. Locally that is the log; in a cluster also the Hook's status and
Kubernetes Events (see the cluster recorder)."""

from __future__ import annotations

import logging
from typing import Protocol

from khook.clock import Clock, SystemClock
from khook.core.outcome import Outcome, Status
from khook.logs import log
from khook.sampling import OncePer

logger = logging.getLogger("khook.pipeline")


class Recorder(Protocol):
    def record(self, outcome: Outcome) -> None: ...


# The level of each decision line: what changed something at info, a failure at error, what
# changed nothing (a duplicate, a stale signal, one being called right now) at debug.
LEVELS = {
    Status.FIRED: logging.INFO,
    Status.FOLLOWUP: logging.INFO,
    Status.RESOLVED: logging.INFO,
    Status.HELD: logging.INFO,
    Status.FAILED: logging.ERROR,
}


IGNORED_EVERY = 60.0  # seconds: an ignored event's line at info at most this often per code


class LogRecorder:
    """One line per decision. Each names the CloudEvent (``ceId``, ``ceSource``; the HTTP
    entry adds ``ceSubject`` and the trace's ``traceId``/``spanId`` to every line logged while
    it handles the event, see khook.trace), the Hook and the incident (``incidentKey``).

    An event not acted on (most of what a source sends) is logged at info at most once a
    minute per reason code, with how many were held back since (``heldBack``); every one at
    debug."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._sampled = OncePer(IGNORED_EVERY, clock or SystemClock())

    def record(self, outcome: Outcome) -> None:
        if not outcome.results:
            self._not_acted_on(outcome)
            return
        event = outcome.event
        subject = event.involved.display if event else ""
        cloudevent = {
            "ceId": event.envelope_id or None if event else None,
            "ceSource": event.source or None if event else None,
        }
        for r in outcome.results:
            level = LEVELS.get(r.status, logging.DEBUG)
            if not logger.isEnabledFor(level):
                continue  # a duplicate's line, mostly: not written, so its fields are not built
            log(
                logger,
                level,
                f"hook {r.status.value}",
                **cloudevent,
                hook=r.hook.key,
                incidentKey=r.key.id,
                eventType=r.config.event_type,
                agent=r.config.agent.id,
                resource=subject,
                namespace=r.key.namespace,
                group=r.key.group,
                incident=r.key.event_type,
                cause=r.record.cause_type if r.record else None,
                state=r.record.state.value if r.record else None,
                reason=r.reason,
                taskId=r.task_id or None,
                contextId=r.context_id or None,
                count=r.record.count if r.record else None,
                retryable=r.retryable if r.status is Status.FAILED else None,
            )

    def _not_acted_on(self, outcome: Outcome) -> None:
        reason = outcome.reason()
        due, held_back = self._sampled.due(reason.code.value)
        level = logging.INFO if due else logging.DEBUG
        if not logger.isEnabledFor(level):
            return  # most of a stream: the line is not written, so it is not built
        event = outcome.event
        log(
            logger,
            level,
            "event not acted on",
            ceId=event.envelope_id or None if event else None,
            ceSource=event.source or None if event else None,
            eventTypes=list(outcome.event_types),
            resource=event.involved.display if event else "",
            reason=reason.code.value,
            why=reason.text,
            heldBack=held_back if due else None,
        )
