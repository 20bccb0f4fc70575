"""Why khook did not act on an event: no rule recognised it, or no Hook wants it, and why each
Hook that could see it did not. Plain text for people (the answer's ``X-Khook-Reason``, the
log, ``khook render --explain``); the decisions themselves are made in classify and match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from khook.core.classify import Detection
from khook.core.events import EVENT_KINDS, ClusterEvent
from khook.core.hooks import ALL_NAMESPACES, Hook
from khook.core.objects import ObjectRef, get_str
from khook.core.signals import Signal, extract_signals

_NAMED = 3  # Hooks named in an answer's reason; khook render --explain names them all


def why_no_rule(event: ClusterEvent, signals: list[Signal] | None = None) -> str:
    """What the object showed, and that no classification rule recognised it (``signals``: the
    event's, when the caller has extracted them already)."""
    what = f"{event.subject.kind} {_named(event.subject)}"
    if (event.object.get("apiVersion"), event.subject.kind) in EVENT_KINDS:
        reason = get_str(event.object, "reason")
        kind = get_str(event.object, "type") or "no type"
        if not reason:
            where = "reason" if event.object.get("apiVersion") == "v1" else "reason (or note)"
            return f"{what} has no {where}: no classification rule can match it"
        return (
            f"{what}: {kind} {reason!r} about {event.involved.kind} {_named(event.involved)}: "
            "no classification rule matched"
        )
    if signals is None:
        signals = extract_signals(event)
    if not signals:
        return f"{what} shows nothing failing: no classification rule applies"
    shown = ", ".join(sorted({f"{s.signal.value} {s.reason}" for s in signals})[:4])
    return f"{what} shows {shown}: no classification rule matched"


def why_not(hook: Hook, event: ClusterEvent, detections: Sequence[Detection], control: str) -> str:
    """Why ``hook`` does not act on ``event`` ("" when it does)."""
    namespace = event.namespace
    if namespace in hook.selector.exclude_namespaces:
        return f"spec.selector.exclude.namespaces lists {namespace}"
    in_control = hook.namespace == control
    if not namespace and not in_control:
        return (
            f"{event.involved.display} is cluster-scoped: only Hooks in the control namespace "
            f"({control}) see it"
        )
    if namespace and namespace != hook.namespace:
        if not in_control:
            return (
                f"the object is in namespace {namespace}: a Hook sees only its own namespace "
                f"(selector.namespaces is honoured only in {control})"
            )
        listed = hook.selector.namespaces
        if not (namespace in listed or ALL_NAMESPACES in listed):
            return f"spec.selector.namespaces does not list {namespace}"
    configured = {c.event_type for c in hook.configurations}
    types = sorted({d.event_type for d in detections})
    wanted = [d for d in detections if d.event_type in configured]
    if not wanted:
        return f"it configures {', '.join(sorted(configured))}, not {', '.join(types)}"
    excluded = {r.lower() for r in hook.selector.exclude_reasons}
    if all(d.signal.reason.lower() in excluded for d in wanted):
        reasons = sorted({d.signal.reason for d in wanted})
        return f"spec.selector.exclude.reasons lists {', '.join(reasons)}"
    return ""


def why_no_hook(
    event: ClusterEvent, detections: Sequence[Detection], hooks: Iterable[Hook], control: str
) -> str:
    """Why no Hook acts on a classified event, naming the first few Hooks that could see it."""
    types = ", ".join(sorted({d.event_type for d in detections}))
    about = f"{types} on {event.involved.kind} {_named(event.involved)}"
    seen = list(hooks)
    if not seen:
        where = event.namespace or "(cluster-scoped)"
        return f"{about}: no Hook in force in {where}" + (
            f" or in the control namespace {control}" if event.namespace != control else ""
        )
    reasons = [f"{hook.key}: {why_not(hook, event, detections, control)}" for hook in seen]
    more = len(reasons) - _NAMED
    listed = "; ".join(reasons[:_NAMED]) + (f"; and {more} more" if more > 0 else "")
    return f"{about}: no Hook wants it ({listed})"


def _named(ref: ObjectRef) -> str:
    return f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
