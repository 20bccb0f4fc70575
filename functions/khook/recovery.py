"""Recovery: a healthy object leaves the incidents it was failing in. One left with no failing
object is over (its session is told) or, if it never opened, healed.

Most of what a source sends is healthy objects, so the question "could this object be in a
live incident?" is answered from what this process knows (:meth:`Recovery.may_concern`, no
I/O) before any store is read.
"""

from __future__ import annotations

import logging
from typing import Protocol

from khook.core.classify import Detection
from khook.core.correlate import Facts, Table
from khook.core.dedup import DedupKey, Verdict
from khook.core.events import ClusterEvent
from khook.core.hooks import Hook
from khook.core.match import hook_sees
from khook.core.outcome import FiringResult, Status
from khook.logs import log
from khook.sessions import Sessions
from khook.stores import Deduplicator, StoreError

logger = logging.getLogger("khook.pipeline")


class FactSource(Protocol):
    def facts(self, event: ClusterEvent, detection: Detection | None) -> Facts: ...


class Recovery:
    def __init__(
        self,
        *,
        dedup: Deduplicator,
        sessions: Sessions,
        correlation: Table,
        memory: FactSource,
        control_namespace: str,
    ) -> None:
        self.dedup = dedup
        self.sessions = sessions
        self.correlation = correlation
        self.memory = memory
        self.control_namespace = control_namespace

    def may_concern(self, event: ClusterEvent, hooks: tuple[Hook, ...]) -> bool:
        """Whether recovering ``event``'s object could change an incident this process knows
        to be live; False means :meth:`recover` would do nothing. Memory only."""
        if not hooks or not self.dedup.may_know_live_any():
            return False
        groups = self._groups(event)
        if not self.dedup.may_know_live(groups):
            return False  # most healthy objects: no key of any Hook is worth building
        return any(
            self.dedup.knows_live(key)
            for hook in hooks
            for key in self._candidates(event, hook, groups)
        )

    def recover(self, event: ClusterEvent, hooks: tuple[Hook, ...]) -> tuple[FiringResult, ...]:
        done = []
        resource = event.involved.display
        groups = self._groups(event)
        for hook in hooks:
            for key in self._candidates(event, hook, groups):
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
                    status, called = Status.RESOLVED, told is not None
                elif decision.verdict is Verdict.HEALED:
                    status, called = Status.HELD, False
                else:
                    continue
                done.append(
                    FiringResult(
                        hook,
                        config,
                        None,
                        key,
                        status,
                        record=record,
                        reason=decision.reason,
                        agent_called=called,
                    )
                )
        return tuple(done)

    def _groups(self, event: ClusterEvent) -> set[tuple[str, str]]:
        """The (namespace, group) of every incident the object may be failing in."""
        facts = self.memory.facts(event, None)
        groups = {(event.namespace, event.involved.display)}
        workload = facts.workload or event.owner
        if workload is not None:
            groups.add((event.namespace, workload.display))
        if facts.node:
            groups.add(("", f"Node/{facts.node}"))
        if facts.pull is not None and facts.pull.transient:
            groups.add(("", f"Registry/{facts.pull.registry}/{facts.pull.pull_class}"))
        return groups

    def _candidates(
        self, event: ClusterEvent, hook: Hook, groups: set[tuple[str, str]]
    ) -> set[DedupKey]:
        """The incidents of this Hook the object may be failing in (``groups``: its
        :meth:`_groups`, worked out once for all Hooks)."""
        if not hook_sees(hook, event.namespace, self.control_namespace):
            return set()
        families = {self.correlation.family(t, hook.event_types) for t in hook.event_types}
        return {DedupKey(hook.key, f, ns, g) for f in families for ns, g in groups}
