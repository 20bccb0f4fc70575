from __future__ import annotations

from khook.cluster._events import HELD, HookEventWriter, HookRef
from khook.cluster._status import HookStatusWriter
from khook.core.hooks import Hook
from khook.core.incident import State
from khook.core.outcome import FiringResult, Outcome, Status
from khook.recorder import LogRecorder


def hook_ref(hook: Hook) -> HookRef:
    return HookRef(hook.namespace, hook.name, hook.uid)


class KubeRecorder:
    """The log, plus Kubernetes Events on the Hook and a debounced status update. Both are
    queued: recording never delays or blocks a firing."""

    def __init__(self, status: HookStatusWriter, events: HookEventWriter) -> None:
        self.status = status
        self.events = events
        self._log = LogRecorder()

    def record(self, outcome: Outcome) -> None:
        self._log.record(outcome)
        subject = outcome.event.involved.display if outcome.event else ""
        for r in outcome.results:
            self._result(r, subject)

    def _result(self, r: FiringResult, subject: str) -> None:
        ref = hook_ref(r.hook)
        agent = r.config.agent.id
        group = r.key.group
        what = f"{r.config.event_type} on {subject or group}"
        if r.render_failed:
            where = f"spec.eventConfigurations[{r.hook.event_types.index(r.config.event_type)}]"
            self.events.emit(
                ref, "PromptRenderFailed", f"{what}: {where}.prompt: {r.reason}", warning=True
            )
            self.status.prompt_failed(r.hook.key, r.hook.generation, f"{where}.prompt: {r.reason}")
            return
        if r.status is Status.FAILED:
            if r.agent_called:
                self.events.emit(ref, "EventFiring", f"{what}: calling agent {agent}")
            self.events.emit(ref, "AgentCallFailure", f"{what}: {r.reason}", warning=True)
            return
        if r.joined:
            self.events.emit(ref, "IncidentJoined", f"{r.joined} joined the incident {group}")
        if r.status is Status.FIRED:
            if r.overflow:
                self.events.emit(ref, "IncidentOverflow", f"{group}: {r.reason}", warning=True)
            else:
                self.events.emit(ref, "EventFiring", f"{what}: calling agent {agent}")
                self.events.emit(
                    ref, "AgentCallSuccess", f"agent {agent} accepted task {r.task_id or '-'}"
                )
            self.status.prompt_rendered(r.hook.key)
        elif r.status is Status.FOLLOWUP:
            kind = "IncidentOverflow" if r.overflow else "IncidentFollowUp"
            self.events.emit(ref, kind, f"{group}: told agent {agent}: {r.reason}")
        elif r.status is Status.RESOLVED or (
            r.record is not None and r.record.state is State.RESOLVED
        ):
            how = "" if r.record is None or r.record.opened else " before it opened a session"
            self.events.emit(
                ref, "EventResolved", f"{r.key.event_type} for {group} resolved{how}: {r.reason}"
            )
        elif r.status is Status.HELD:
            self.events.aggregate(ref, HELD, r.config.event_type, group)
        elif r.status is not Status.STALE or r.record is not None:
            self.events.duplicate(ref, r.config.event_type, group)
        if r.record is not None:
            self.status.touched(r.hook.key)
