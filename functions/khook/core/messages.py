"""What khook says to an agent about an incident: the facts a Hook's prompt renders from,
the follow-ups and the resolution khook writes itself (cluster text fenced as in a prompt),
and message ids derived from the incident, so every retry and redelivery of one message
carries the same id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from khook.core.correlate import Incident
from khook.core.events import ClusterEvent
from khook.core.hooks import Hook
from khook.core.ids import uuid5_text
from khook.core.incident import DedupKey, Record
from khook.core.objects import format_time
from khook.core.prompt import PromptFacts
from khook.core.text import NAME_LIMIT, clean

_MESSAGE_NAMESPACE = uuid.UUID("6f1c1f8e-3f0e-4d5e-9a5e-6b686f6f6b21")


def message_id(key: DedupKey, record: Record) -> str:
    """The id of an incident's first message."""
    return uuid5_text(_MESSAGE_NAMESPACE, f"{key.id}@{record.first_seen}")


def followup_message_id(record: Record, number: int) -> str:
    """The id of an incident's follow-up ``number``."""
    return uuid5_text(_MESSAGE_NAMESPACE, f"{record.key.id}@{record.first_seen}#{number}")


def metadata(hook: Hook, item: Incident, event: ClusterEvent) -> dict[str, str]:
    return {
        "khook.dev/hook": hook.key,
        "khook.dev/eventType": item.config.event_type,
        "khook.dev/namespace": event.namespace,
        "khook.dev/resource": event.involved.display,
        "khook.dev/incident": item.key.digest,
    }


def prompt_facts(event: ClusterEvent, hook: Hook, item: Incident, record: Record) -> PromptFacts:
    signal = item.detection.signal
    # The cluster's own times where the signal has them; khook's clock only counts.
    when = signal.occurred_at or event.observed_at
    first = min(signal.first_seen or when, when, record.first_seen)
    return PromptFacts(
        event_type=item.config.event_type,
        namespace=event.namespace,
        kind=event.involved.kind,
        name=event.involved.name,
        reason=signal.reason,
        message=signal.message,
        timestamp=when,
        count=max(signal.count, record.count),
        first_seen=first,
        last_seen=max(when, record.last_seen),
        hook=hook.key,
        owner=event.owner.display if event.owner else "",
        container=signal.container,
        api_version=event.involved.api_version,
        action=event.action.value,
        incident_group=record.key.group,
        incident_cause=record.cause_type,
        incident_detail=record.detail,
        incident_state=record.state.value,
        affected=record.resources,
        affected_total=record.affected,
        workloads=record.workloads,
        workloads_total=record.workloads_total,
    )


def followup_text(record: Record, changes: Sequence[str]) -> str:
    lines = [
        f"Update from khook on the incident {clean(record.key.group, NAME_LIMIT)} "
        f"({clean(record.cause_type, NAME_LIMIT)}), still going:",
        *(f"- {clean(change, 500)}" for change in changes),
        f"- {record.count} signal(s) from {record.affected} object(s) since "
        f"{format_time(record.first_seen)}; last at {format_time(record.last_seen)}",
    ]
    if record.detail:
        lines.append(f"- cause: {clean(record.detail, 500)}")
    return "\n".join(lines)


def resolution_text(record: Record, why: str) -> str:
    return (
        f"Resolved: the incident {clean(record.key.group, NAME_LIMIT)} "
        f"({clean(record.cause_type, NAME_LIMIT)}) is over: {clean(why, 500)}. "
        f"{record.count} signal(s) from {record.affected} object(s) between "
        f"{format_time(record.first_seen)} and {format_time(record.last_seen)}."
    )
