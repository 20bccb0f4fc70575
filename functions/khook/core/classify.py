"""Classification: the signals of one cluster event, through the rule table, into detections."""

from __future__ import annotations

from dataclasses import dataclass

from khook.core.events import ClusterEvent
from khook.core.objects import get_str
from khook.core.quick import quick_init
from khook.core.rules import Rule, RuleTable
from khook.core.signals import Signal, Source, extract_signals


@quick_init
@dataclass(frozen=True)
class Detection:
    """One signal recognised as an event type, and the rule that recognised it."""

    event_type: str
    signal: Signal
    rule: Rule


def classify(
    event: ClusterEvent, table: RuleTable, signals: list[Signal] | None = None
) -> list[Detection]:
    """``signals``: the event's, when the caller has extracted them already."""
    if event.subject.kind == "Event" and not table.may_match(Source.EVENT, _reason(event)):
        return []  # an Event's one signal, by its reason alone: most Events end here
    detections = []
    for signal in extract_signals(event) if signals is None else signals:
        rule = table.first_match(signal)
        if rule is not None:
            detections.append(Detection(rule.event_type, signal, rule))
    return detections


def event_types(detections: list[Detection]) -> list[str]:
    """Distinct event types, in order of first detection."""
    return list(dict.fromkeys(d.event_type for d in detections))


def _reason(event: ClusterEvent) -> str:
    return get_str(event.object, "reason")  # what the Event's signal carries as its reason
