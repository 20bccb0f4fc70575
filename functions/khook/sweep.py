"""The sweep: incidents that went quiet for their window are over. Each replica runs it in
the background (every 30 s); the replica whose store write marks an incident resolved tells
its session and announces it, so it is told once across replicas."""

from __future__ import annotations

import logging

from khook import metrics
from khook.clock import Clock
from khook.core.hooks import Hook
from khook.core.incident import BUDGET_TYPE, Record, open_sessions
from khook.core.outcome import FiringResult, Outcome, Status
from khook.files import HookSource
from khook.logs import log
from khook.recorder import Recorder
from khook.sessions import Sessions
from khook.stores import Deduplicator, StoreError

logger = logging.getLogger("khook.pipeline")


def sweep(
    hooks: HookSource,
    dedup: Deduplicator,
    sessions: Sessions,
    clock: Clock,
    recorder: Recorder,
) -> list[tuple[Hook, Record]]:
    """Incidents that went quiet for their window are over: marked resolved (by one
    replica: the one whose store write did it), their sessions told. Runs in the
    background; returns what this call resolved."""
    done = []
    told: set[str] = set()  # the incidents whose sessions were told they are over
    firing: dict[tuple[str, str], int] = {}  # per Hook, for kagent_hook_active_events
    unlisted: set[tuple[str, str]] = set()
    hook_set = hooks.current(wait=False)
    for hook in hook_set.hooks:
        try:
            records = dedup.store.records(hook.key)
        except StoreError as exc:
            unlisted.add((hook.namespace, hook.name))
            log(
                logger,
                logging.WARNING,
                "could not list incidents",
                hook=hook.key,
                error=str(exc),
            )
            continue
        dedup.learn(records)
        now = clock.now()
        firing[(hook.namespace, hook.name)] = open_sessions(records, now)
        for record in records:
            if record.state.value == "resolved" or record.live(now):
                continue
            if record.key.event_type == BUDGET_TYPE:
                continue
            expired = dedup.expire(record.key)
            if expired is None:
                continue
            done.append((hook, expired))
            resolved = "quiet for its cooldown"
            if expired.opened and sessions.tell_resolved(hook, expired, resolved):
                told.add(expired.key.id)
    metrics.active_incidents(firing, unlisted)
    if done:
        outcome = Outcome(
            results=tuple(
                FiringResult(
                    hook,
                    hook.configuration(r.key.event_type) or hook.configurations[0],
                    None,
                    r.key,
                    Status.RESOLVED if r.opened else Status.HELD,
                    record=r,
                    reason="quiet for its cooldown",
                    agent_called=r.key.id in told,
                )
                for hook, r in done
            )
        )
        recorder.record(outcome)
        metrics.swept(outcome)
    return done
