from __future__ import annotations

from khook.cluster._events import HookEventWriter, HookRef
from khook.cluster._status import HookStatusWriter
from khook.core.hooks import Hook
from khook.core.outcome import Outcome, Status
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
            ref = hook_ref(r.hook)
            agent = r.config.agent.id
            what = f"{r.config.event_type} on {subject}"
            if r.status is Status.FIRED:
                self.events.emit(ref, "EventFiring", f"{what}: calling agent {agent}")
                self.events.emit(
                    ref, "AgentCallSuccess", f"agent {agent} accepted task {r.task_id or '-'}"
                )
                self.status.prompt_rendered(r.hook.key)
                self.status.touched(r.hook.key)
            elif r.render_failed:
                where = f"spec.eventConfigurations[{r.hook.event_types.index(r.config.event_type)}]"
                self.events.emit(
                    ref, "PromptRenderFailed", f"{what}: {where}.prompt: {r.reason}", warning=True
                )
                self.status.prompt_failed(
                    r.hook.key, r.hook.generation, f"{where}.prompt: {r.reason}"
                )
            elif r.status is Status.FAILED:
                if r.agent_called:
                    self.events.emit(ref, "EventFiring", f"{what}: calling agent {agent}")
                self.events.emit(ref, "AgentCallFailure", f"{what}: {r.reason}", warning=True)
            else:
                self.events.duplicate(ref, r.config.event_type, r.key.group)
                if r.record is not None and r.status is Status.DUPLICATE:
                    self.status.touched(r.hook.key)
        for hook, record in outcome.resolved:
            self.events.emit(
                hook_ref(hook),
                "EventResolved",
                f"{record.key.event_type} for {record.key.group} resolved: "
                f"{subject} is healthy again",
            )
            self.status.touched(hook.key)
