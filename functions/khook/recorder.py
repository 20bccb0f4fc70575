"""Recording what happened. Locally that is the log; in a cluster also the Hook's status and
Kubernetes Events (see the cluster recorder)."""

from __future__ import annotations

import logging
from typing import Protocol

from khook.core.outcome import Outcome, Status
from khook.logs import log

logger = logging.getLogger("khook.pipeline")


class Recorder(Protocol):
    def record(self, outcome: Outcome) -> None: ...


class LogRecorder:
    def record(self, outcome: Outcome) -> None:
        event = outcome.event
        subject = event.involved.display if event else ""
        if not outcome.results:
            log(
                logger,
                logging.DEBUG if outcome.ignored else logging.INFO,
                "event not acted on",
                eventTypes=list(outcome.event_types),
                resource=subject,
                why=outcome.ignored or "no Hook matched",
            )
            return
        for r in outcome.results:
            level = {
                Status.FIRED: logging.INFO,
                Status.FOLLOWUP: logging.INFO,
                Status.RESOLVED: logging.INFO,
                Status.FAILED: logging.ERROR,
            }.get(r.status, logging.DEBUG)
            log(
                logger,
                level,
                f"hook {r.status.value}",
                hook=r.hook.key,
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
