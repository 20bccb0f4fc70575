"""The classification table: rules (data, not code) that turn signals into event types.

For each signal the first matching rule wins; user rules come before the built-in ones, so a
user can both add new event types and refine built-in ones. Every key of a rule narrows it:
a list means "any of these" and a ``message`` is a case-insensitive regular expression, run
with RE2 (see :mod:`khook.core.patterns`) so that no pattern can stall on a tenant's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from khook.core.hook_fields import show
from khook.core.patterns import (
    MessagePattern,
    PatternError,
    backtracking_risk,
    compile_message_pattern,
)
from khook.core.signals import Signal, SignalKind, Source

EVENT_TYPE_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

_LIST_KEYS = {
    "involvedKinds": "kinds",
    "types": "types",
    "reasons": "reasons",
    "signals": "signals",
    "conditions": "conditions",
    "statuses": "statuses",
}
_ALLOWED_KEYS = {"eventType", "source", "message", "description", *_LIST_KEYS}
_NARROWING_KEYS = {"reasons", "message", "conditions", "signals"}


class RulesError(ValueError):
    """A rules document is invalid; ``problems`` lists every problem found."""

    def __init__(self, origin: str, problems: Sequence[str], warnings: Sequence[str] = ()) -> None:
        self.origin = origin
        self.problems = list(problems)
        self.warnings = list(warnings)  # about the rules that are valid
        super().__init__(f"{origin}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class Rule:
    event_type: str
    source: Source
    kinds: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()  # compared case-insensitively
    signals: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    message: MessagePattern | None = None
    origin: str = ""

    def matches(self, signal: Signal) -> bool:
        return (
            signal.source is self.source
            and _any(self.kinds, signal.kind)
            and _any(self.types, signal.type)
            and _any(self.reasons, signal.reason.lower())
            and _any(self.signals, signal.signal.value)
            and _any(self.conditions, signal.condition)
            and _any(self.statuses, signal.status)
            and (self.message is None or self.message.search(signal.message))
        )


def _any(allowed: frozenset[str], value: str) -> bool:
    return not allowed or value in allowed


@dataclass(frozen=True)
class RuleTable:
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    # Patterns that run safely here but would be catastrophic under a backtracking engine.
    warnings: tuple[str, ...] = ()

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(rule.event_type for rule in self.rules)

    def then(self, other: RuleTable) -> RuleTable:
        """This table's rules first, then the other's."""
        return RuleTable(self.rules + other.rules, self.warnings + other.warnings)

    def first_match(self, signal: Signal) -> Rule | None:
        # Only the rules that could match the signal's source and reason are tried, in table
        # order: most of a stream (Normal Events, healthy objects) meets none of them.
        index = self._index
        candidates = index.get((signal.source, signal.reason.lower()))
        if candidates is None:
            candidates = index.get((signal.source, None), ())
        return next((rule for rule in candidates if rule.matches(signal)), None)

    def may_match(self, source: Source, reason: str) -> bool:
        """Whether any rule could match a signal of ``source`` with ``reason`` (False: none
        will, whatever the rest of the signal)."""
        index = self._index
        return bool(index.get((source, reason.lower())) or index.get((source, None)))

    @cached_property
    def _index(self) -> dict[tuple[Source, str | None], tuple[Rule, ...]]:
        """(source, reason) -> the rules that name that reason or no reason; (source, None) ->
        the rules that name no reason. Built on first use; the table is immutable."""
        index: dict[tuple[Source, str | None], list[Rule]] = {}
        for source in Source:
            mine = [rule for rule in self.rules if rule.source is source]
            index[(source, None)] = [rule for rule in mine if not rule.reasons]
            for reason in {r for rule in mine for r in rule.reasons}:
                index[(source, reason)] = [
                    rule for rule in mine if not rule.reasons or reason in rule.reasons
                ]
        return {key: tuple(rules) for key, rules in index.items()}


def parse_rules(document: Any, origin: str) -> RuleTable:
    """Build a table from a parsed rules document ``{"rules": [...]}``; all problems at once."""
    if not isinstance(document, Mapping) or not isinstance(document.get("rules"), list):
        raise RulesError(origin, ["a rules file is a mapping with a 'rules' list"])
    rules: list[Rule] = []
    problems: list[str] = []
    warnings: list[str] = []
    for index, raw in enumerate(document["rules"]):
        where = _where(index, raw)
        try:
            rule = _parse_rule(raw, f"{origin}:rules[{index}]")
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        rules.append(rule)
        risk = backtracking_risk(rule.message.source) if rule.message is not None else None
        if risk and rule.message is not None:
            warnings.append(
                f"{origin}: rules[{index}].message {_pattern(rule.message.source)} "
                f"(eventType {rule.event_type}): {risk}; khook runs it with RE2, in time linear "
                "in the message, so it is safe here"
            )
    if problems:
        raise RulesError(origin, problems, warnings)
    return RuleTable(tuple(rules), tuple(warnings))


def _where(index: int, raw: Any) -> str:
    """A rule's path, with its event type when it has a readable one."""
    event_type = raw.get("eventType") if isinstance(raw, Mapping) else None
    if isinstance(event_type, str) and event_type:
        return f"rules[{index}] (eventType {show(event_type)})"
    return f"rules[{index}]"


def _pattern(value: Any) -> str:
    """A pattern as its author wrote it (backslashes not doubled) when that is safe to show."""
    if isinstance(value, str) and value.isprintable() and "'" not in value and len(value) <= 80:
        return f"'{value}'"
    return show(value)


def _parse_rule(raw: Any, origin: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError("a rule is a mapping")
    unknown = sorted(show(k, 40) for k in raw if k not in _ALLOWED_KEYS)
    if unknown:
        listed = ", ".join(unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ValueError(f"unknown keys [{listed}]; allowed: {sorted(_ALLOWED_KEYS)}")
    event_type = raw.get("eventType")
    if not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
        raise ValueError(
            f"eventType {show(event_type)} must be a lowercase DNS label such as 'disk-full'"
        )
    source_value = raw.get("source")
    try:
        source = Source(source_value if isinstance(source_value, str) else "")
    except ValueError:
        raise ValueError(
            f"source must be one of {[s.value for s in Source]}, not {show(source_value)}"
        ) from None
    if not _NARROWING_KEYS & set(raw):
        raise ValueError(f"a rule must narrow by at least one of {sorted(_NARROWING_KEYS)}")
    values: dict[str, frozenset[str]] = {}
    for key, attr in _LIST_KEYS.items():
        values[attr] = frozenset(_str_list(raw.get(key), key))
    values["reasons"] = frozenset(r.lower() for r in values["reasons"])
    known_signals = {s.value for s in SignalKind}
    bad = sorted(values["signals"] - known_signals)
    if bad:
        raise ValueError(f"unknown signals {bad}; known: {sorted(known_signals)}")
    message = raw.get("message")
    pattern = None
    if message is not None:
        try:
            pattern = compile_message_pattern(message)
        except PatternError as exc:
            raise ValueError(f"message {_pattern(message)} {exc}") from None
    return Rule(event_type=event_type, source=source, message=pattern, origin=origin, **values)


def _str_list(value: Any, key: str) -> Iterable[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key} must be a non-empty list")
    out = []
    for item in value:
        if isinstance(item, bool):  # YAML reads an unquoted False/True as a bool
            out.append("True" if item else "False")
        elif isinstance(item, str) and item:
            out.append(item)
        elif isinstance(item, int):
            out.append(str(item))
        else:
            raise ValueError(f"{key} holds {show(item)}, which is not a non-empty string")
    return out
