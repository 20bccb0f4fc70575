"""What a prompt is told about one firing (:class:`PromptFacts`): the names its template
sees, each fenced and capped, and the block of facts that ends every prompt."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from khook.core.objects import format_time
from khook.core.quick import quick_init
from khook.core.text import MESSAGE_LIMIT, NAME_LIMIT, clean, clean_object, fence

INCIDENT_LIST_LIMIT = 20  # objects and workloads named in a prompt (the totals count on)


@quick_init
@dataclass(frozen=True)
class PromptFacts:
    """What khook knows about one firing; every string is fenced before a template sees it."""

    event_type: str
    namespace: str
    kind: str
    name: str
    reason: str
    message: str
    timestamp: datetime
    count: int
    first_seen: datetime
    last_seen: datetime
    hook: str
    owner: str = ""
    container: str = ""
    api_version: str = ""
    action: str = ""
    # The incident: one root cause, possibly many objects (bounded lists, and totals).
    incident_group: str = ""
    incident_cause: str = ""
    incident_detail: str = ""
    incident_state: str = ""
    affected: tuple[str, ...] = ()
    affected_total: int = 0
    workloads: tuple[str, ...] = ()
    workloads_total: int = 0

    def incident(self) -> dict[str, Any]:
        affected = [fence(a, NAME_LIMIT) for a in self.affected[:INCIDENT_LIST_LIMIT]]
        workloads = [fence(w, NAME_LIMIT) for w in self.workloads[:INCIDENT_LIST_LIMIT]]
        return {
            "group": fence(self.incident_group, NAME_LIMIT),
            "cause": fence(self.incident_cause or self.event_type, NAME_LIMIT),
            "detail": fence(self.incident_detail, MESSAGE_LIMIT),
            "state": fence(self.incident_state, NAME_LIMIT),
            "affected": affected,
            "affectedTotal": max(self.affected_total, len(affected)),
            "workloads": workloads,
            "workloadsTotal": max(self.workloads_total, len(workloads)),
            "count": self.count,
            "firstSeen": format_time(self.first_seen),
            "lastSeen": format_time(self.last_seen),
        }

    def event(self) -> dict[str, Any]:
        return {
            "type": fence(self.event_type, NAME_LIMIT),
            "namespace": fence(self.namespace, NAME_LIMIT),
            "kind": fence(self.kind, NAME_LIMIT),
            "name": fence(self.name, NAME_LIMIT),
            "resource": fence(f"{self.kind}/{self.name}", NAME_LIMIT),
            "owner": fence(self.owner, NAME_LIMIT),
            "container": fence(self.container, NAME_LIMIT),
            "apiVersion": fence(self.api_version, NAME_LIMIT),
            "reason": fence(self.reason, NAME_LIMIT),
            "message": fence(self.message, MESSAGE_LIMIT),
            "count": self.count,
            "firstSeen": format_time(self.first_seen),
            "lastSeen": format_time(self.last_seen),
            "timestamp": format_time(self.timestamp),
            "action": fence(self.action, NAME_LIMIT),
        }

    def context(
        self, obj: Mapping[str, Any] | None, names: frozenset[str] | None = None
    ) -> dict[str, Any]:
        """The names a template sees. ``names``: only these (a template that reads no other,
        which a straight-line template's own names say: its render cannot tell the
        difference), each worked out alone; None: all of them."""
        if names is None:
            return {name: value(self, obj) for name, value in _VALUES.items()}
        return {name: _VALUES[name](self, obj) for name in names if name in _VALUES}

    def context_block(self) -> str:
        """The facts, last in every prompt: a YAML mapping of JSON strings (lossless; a
        backtick is written ``\\u0060``, so nothing inside can close the fence)."""
        rows = [
            ("eventType", clean(self.event_type, NAME_LIMIT)),
            ("namespace", clean(self.namespace, NAME_LIMIT) or "(cluster-scoped)"),
            ("resource", clean(f"{self.kind}/{self.name}", NAME_LIMIT)),
            ("owner", clean(self.owner, NAME_LIMIT) or "(none)"),
            ("container", clean(self.container, NAME_LIMIT)),
            ("reason", clean(self.reason, NAME_LIMIT)),
            ("message", clean(self.message, MESSAGE_LIMIT)),
            ("count", self.count),
            ("firstSeen", format_time(self.first_seen)),
            ("lastSeen", format_time(self.last_seen)),
            ("hook", clean(self.hook, NAME_LIMIT)),
        ]
        if self.incident_group:
            listed = [clean(a, NAME_LIMIT) for a in self.affected[:INCIDENT_LIST_LIMIT]]
            rows += [
                ("incident", clean(self.incident_group, NAME_LIMIT)),
                ("cause", clean(self.incident_cause or self.event_type, NAME_LIMIT)),
                ("causeDetail", clean(self.incident_detail, MESSAGE_LIMIT)),
                ("affected", ", ".join(listed)),
                ("affectedTotal", max(self.affected_total, len(listed))),
            ]
            if self.workloads_total > 1:
                workloads = [clean(w, NAME_LIMIT) for w in self.workloads[:INCIDENT_LIST_LIMIT]]
                rows += [
                    ("workloads", ", ".join(workloads)),
                    ("workloadsTotal", self.workloads_total),
                ]
        lines = [f"{key}: {_json_string(value)}" for key, value in rows if value != ""]
        return "```yaml\n# khook event context\n" + "\n".join(lines) + "\n```"


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps builds one per call


def _json_string(value: Any) -> str:
    # What _ENCODE writes, without its Python-level dispatch for the two types the block
    # holds: a str through the same C escaper, an int as its repr.
    if type(value) is str:
        text = encode_basestring(value)
    elif type(value) is int:
        text = str(value)
    else:
        text = _ENCODE(value)
    return text.replace("`", "\\u0060").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _affected(facts: PromptFacts) -> list[str]:
    return [fence(a, NAME_LIMIT) for a in facts.affected[:INCIDENT_LIST_LIMIT]]


def _hook(facts: PromptFacts) -> dict[str, str]:
    namespace, name = facts.hook.partition("/")[::2]
    return {"namespace": fence(namespace, NAME_LIMIT), "name": fence(name, NAME_LIMIT)}


# Each name a template sees, from the facts (and the object's part the template may see).
# The placeholders are what event() and incident() hold under their names: the same values.
_VALUES: dict[str, Callable[[PromptFacts, Mapping[str, Any] | None], Any]] = {
    "EventType": lambda f, _: fence(f.event_type, NAME_LIMIT),
    "ResourceName": lambda f, _: fence(f.name, NAME_LIMIT),
    "Namespace": lambda f, _: fence(f.namespace, NAME_LIMIT),
    "Reason": lambda f, _: fence(f.reason, NAME_LIMIT),
    "Message": lambda f, _: fence(f.message, MESSAGE_LIMIT),
    "EventMessage": lambda f, _: fence(f.message, MESSAGE_LIMIT),
    "Timestamp": lambda f, _: format_time(f.timestamp),
    "EventTime": lambda f, _: format_time(f.timestamp),
    "Cause": lambda f, _: fence(f.incident_cause or f.event_type, NAME_LIMIT),
    "Affected": lambda f, _: ", ".join(_affected(f)),
    "AffectedCount": lambda f, _: max(f.affected_total, len(f.affected[:INCIDENT_LIST_LIMIT])),
    "event": lambda f, _: f.event(),
    "incident": lambda f, _: f.incident(),
    "object": lambda _, obj: clean_object(obj) if obj is not None else {},
    "hook": lambda f, _: _hook(f),
}
NAMES = frozenset(_VALUES)
