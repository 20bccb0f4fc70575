"""Reading a ``correlation:`` mapping into a :class:`CorrelationTable`.

Every reader appends what is wrong to ``problems`` with the field's path and goes on, so one
run reports every problem. Nothing recurses into a value, every list is bounded before it is
read, and a value shown in a problem is cut short (:func:`khook.core.hook_fields.show`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from khook.core.correlation import (
    PLACEHOLDER,
    CauseRule,
    CorrelationTable,
    HoldRule,
    PullErrorRule,
    Scope,
)
from khook.core.durations import DurationError, parse_duration
from khook.core.hook_fields import show, unknown_fields
from khook.core.patterns import (
    MessagePattern,
    PatternError,
    backtracking_risk,
    compile_message_pattern,
)
from khook.core.rules import EVENT_TYPE_PATTERN

MAX_CHAINS = 32  # precedence chains in one document
MAX_CHAIN_LENGTH = 16  # event types in one chain
MAX_HOLDS = 256  # event types with a hold in one document
MAX_MIN_COUNT = 1000  # as a Hook's minCount allows
MAX_HOLD_FOR = timedelta(hours=24)  # as a Hook's `for` allows
MAX_PULL_ERRORS = 128  # pullErrors entries in one document
MAX_PULL_WITHOUT_CAUSE = 32
MAX_NODE_REASONS = 64
MAX_REASON_LENGTH = 128
MAX_CAUSES = 64
MAX_CAUSE_EVENT_TYPES = 32
MAX_GROUP_TEMPLATE_LENGTH = 253
MAX_PLACEHOLDERS = 4  # {name} placeholders in one group template

_KEYS = ("precedence", "holds", "pullErrors", "pullWithoutCause", "nodeConsequences", "causes")
_HOLD_KEYS = ("minCount", "for", "transientOnly")
_PULL_KEYS = ("class", "transient", "message")
_NODE_KEYS = ("reasons", "evictionMessage")
_CAUSE_KEYS = ("eventTypes", "message", "group", "scope")
# Literal characters of a group template: a kind, slashes, and DNS-name characters.
_TEMPLATE = re.compile(r"(?:[A-Za-z0-9./:-]|\{[A-Za-z_][A-Za-z0-9_]{0,31}\})+")
_CLASS_RULE = "a lowercase DNS label such as 'rate-limited'"


class _Reader:
    """Collects problems and warnings for one document."""

    def __init__(self, origin: str, problems: list[str], warnings: list[str]) -> None:
        self.origin = origin
        self.problems = problems
        self.warnings = warnings

    def problem(self, where: str, what: str) -> None:
        self.problems.append(f"{where}: {what}")

    def bounded_list(self, raw: Any, where: str, limit: int) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(where, f"must be a list, not {show(raw)}")
            return []
        if len(raw) > limit:
            self.problem(where, f"holds {len(raw)} entries; at most {limit} are allowed")
            return []
        return raw

    def event_type(self, raw: Any, where: str) -> str | None:
        if isinstance(raw, str) and EVENT_TYPE_PATTERN.match(raw):
            return raw
        self.problem(where, f"{show(raw)} must be an event type: a lowercase DNS label")
        return None

    def pattern(self, raw: Any, where: str) -> MessagePattern | None:
        try:
            pattern = compile_message_pattern(raw)
        except PatternError as exc:
            self.problem(where, f"{show(raw)} {exc}")
            return None
        risk = backtracking_risk(pattern.source)
        if risk:
            self.warnings.append(
                f"{self.origin}: {where} {show(raw)}: {risk}; khook runs it with RE2, in time "
                "linear in the message, so it is safe here"
            )
        return pattern

    def flag(self, raw: Any, where: str, default: bool | None = None) -> bool | None:
        if raw is None and default is not None:
            return default
        if isinstance(raw, bool):
            return raw
        self.problem(where, f"must be true or false, not {show(raw)}")
        return None

    def mapping(self, raw: Any, where: str, allowed: tuple[str, ...]) -> Mapping[str, Any] | None:
        if not isinstance(raw, Mapping):
            self.problem(where, f"must be a mapping, not {show(raw)}")
            return None
        self.problems.extend(unknown_fields(raw, allowed, where))
        return raw


def read_table(
    raw: Mapping[str, Any], origin: str, problems: list[str], warnings: list[str]
) -> CorrelationTable:
    reader = _Reader(origin, problems, warnings)
    problems.extend(unknown_fields(raw, _KEYS, "correlation"))
    eviction, reasons = _node(reader, raw.get("nodeConsequences"))
    return CorrelationTable(
        precedence=_precedence(reader, raw.get("precedence")),
        holds=MappingProxyType(_holds(reader, raw.get("holds"))),
        pull_errors=_pull_errors(reader, raw.get("pullErrors")),
        pull_without_cause=_patterns(reader, raw.get("pullWithoutCause")),
        node_reasons=reasons,
        eviction_message=eviction,
        causes=_causes(reader, raw.get("causes")),
        warnings=tuple(warnings),
    )


def _precedence(reader: _Reader, raw: Any) -> tuple[tuple[str, ...], ...]:
    chains: list[tuple[str, ...]] = []
    seen: dict[str, str] = {}
    for i, item in enumerate(reader.bounded_list(raw, "correlation.precedence", MAX_CHAINS)):
        where = f"correlation.precedence[{i}]"
        if not isinstance(item, list) or not item:
            reader.problem(where, f"must be a non-empty list of event types, not {show(item)}")
            continue
        if len(item) > MAX_CHAIN_LENGTH:
            reader.problem(where, f"holds {len(item)} types; at most {MAX_CHAIN_LENGTH}")
            continue
        chain: list[str] = []
        for j, value in enumerate(item):
            event_type = reader.event_type(value, f"{where}[{j}]")
            if event_type is None:
                continue
            if event_type in seen:
                reader.problem(
                    f"{where}[{j}]",
                    f"'{event_type}' is already in {seen[event_type]}: a type is in one chain",
                )
                continue
            seen[event_type] = where
            chain.append(event_type)
        if chain:
            chains.append(tuple(chain))
    return tuple(chains)


def _holds(reader: _Reader, raw: Any) -> dict[str, HoldRule]:
    holds: dict[str, HoldRule] = {}
    if raw is None:
        return holds
    if not isinstance(raw, Mapping):
        reader.problem("correlation.holds", f"must be a mapping of event types, not {show(raw)}")
        return holds
    if len(raw) > MAX_HOLDS:
        reader.problem("correlation.holds", f"holds {len(raw)} types; at most {MAX_HOLDS}")
        return holds
    for key, item in raw.items():
        readable = isinstance(key, str) and len(key) <= 63 and key.isprintable()
        where = f"correlation.holds.{key}" if readable else f"correlation.holds[{show(key, 40)}]"
        event_type = reader.event_type(key, where)
        body = reader.mapping(item, where, _HOLD_KEYS)
        rule = _hold(reader, body, where) if body is not None else None
        if event_type is not None and rule is not None:
            holds[event_type] = rule
    return holds


def _hold(reader: _Reader, body: Mapping[str, Any], where: str) -> HoldRule | None:
    before = len(reader.problems)
    min_count = body.get("minCount")
    if (
        not isinstance(min_count, int)
        or isinstance(min_count, bool)
        or not 1 <= min_count <= MAX_MIN_COUNT
    ):
        reader.problem(
            f"{where}.minCount",
            f"must be a whole number from 1 to {MAX_MIN_COUNT}, not {show(min_count)}",
        )
        min_count = 1
    hold_for = timedelta(0)
    raw_for = body.get("for")
    if raw_for is None and min_count > 1:
        reader.problem(f"{where}.for", "is required with a minCount above 1 (such as 2m)")
    elif raw_for is not None:
        hold_for = _duration(reader, raw_for, f"{where}.for")
    transient_only = reader.flag(body.get("transientOnly"), f"{where}.transientOnly", False)
    if len(reader.problems) > before:
        return None
    return HoldRule(min_count, hold_for, bool(transient_only))


def _duration(reader: _Reader, raw: Any, where: str) -> timedelta:
    try:
        if not isinstance(raw, str) or len(raw) > 64:
            raise DurationError("not a duration")
        value = parse_duration(raw)
    except (DurationError, OverflowError):
        reader.problem(where, f"{show(raw)} must be a duration such as 2m or 90s")
        return timedelta(0)
    if not timedelta(0) < value <= MAX_HOLD_FOR:
        reader.problem(where, f"{show(raw)} must be more than 0s and at most 24h")
    return value


def _pull_errors(reader: _Reader, raw: Any) -> tuple[PullErrorRule, ...]:
    rules: list[PullErrorRule] = []
    for i, item in enumerate(reader.bounded_list(raw, "correlation.pullErrors", MAX_PULL_ERRORS)):
        where = f"correlation.pullErrors[{i}]"
        body = reader.mapping(item, where, _PULL_KEYS)
        if body is None:
            continue
        before = len(reader.problems)
        pull_class = body.get("class")
        if not isinstance(pull_class, str) or not EVENT_TYPE_PATTERN.match(pull_class):
            reader.problem(f"{where}.class", f"{show(pull_class)} must be {_CLASS_RULE}")
        transient = reader.flag(body.get("transient"), f"{where}.transient")
        pattern = reader.pattern(body.get("message"), f"{where}.message")
        if len(reader.problems) == before and pattern is not None:
            rules.append(
                PullErrorRule(str(pull_class), bool(transient), pattern, f"{reader.origin}:{where}")
            )
    return tuple(rules)


def _patterns(reader: _Reader, raw: Any) -> tuple[MessagePattern, ...]:
    where = "correlation.pullWithoutCause"
    patterns = (
        reader.pattern(item, f"{where}[{i}]")
        for i, item in enumerate(reader.bounded_list(raw, where, MAX_PULL_WITHOUT_CAUSE))
    )
    return tuple(p for p in patterns if p is not None)


def _node(reader: _Reader, raw: Any) -> tuple[MessagePattern | None, frozenset[str]]:
    where = "correlation.nodeConsequences"
    if raw is None:
        return None, frozenset()
    body = reader.mapping(raw, where, _NODE_KEYS)
    if body is None:
        return None, frozenset()
    reasons: set[str] = set()
    for i, item in enumerate(
        reader.bounded_list(body.get("reasons"), f"{where}.reasons", MAX_NODE_REASONS)
    ):
        if isinstance(item, str) and item and len(item) <= MAX_REASON_LENGTH and item.isprintable():
            reasons.add(item.lower())
        else:
            reader.problem(
                f"{where}.reasons[{i}]",
                f"{show(item)} must be a reason: printable, 1 to {MAX_REASON_LENGTH} characters",
            )
    eviction = body.get("evictionMessage")
    pattern = reader.pattern(eviction, f"{where}.evictionMessage") if eviction is not None else None
    return pattern, frozenset(reasons)


def _causes(reader: _Reader, raw: Any) -> tuple[CauseRule, ...]:
    rules: list[CauseRule] = []
    for i, item in enumerate(reader.bounded_list(raw, "correlation.causes", MAX_CAUSES)):
        where = f"correlation.causes[{i}]"
        body = reader.mapping(item, where, _CAUSE_KEYS)
        if body is not None:
            rule = _cause(reader, body, where)
            if rule is not None:
                rules.append(rule)
    return tuple(rules)


def _cause(reader: _Reader, body: Mapping[str, Any], where: str) -> CauseRule | None:
    before = len(reader.problems)
    types: set[str] = set()
    raw_types = body.get("eventTypes")
    if not isinstance(raw_types, list) or not raw_types:
        reader.problem(f"{where}.eventTypes", "must be a non-empty list of event types")
        raw_types = []
    for j, value in enumerate(
        reader.bounded_list(raw_types, f"{where}.eventTypes", MAX_CAUSE_EVENT_TYPES)
    ):
        event_type = reader.event_type(value, f"{where}.eventTypes[{j}]")
        if event_type is not None:
            types.add(event_type)
    pattern = reader.pattern(body.get("message"), f"{where}.message")
    group = _template(reader, body.get("group"), pattern, f"{where}.group")
    scope_value = body.get("scope", Scope.NAMESPACE.value)
    if scope_value not in {s.value for s in Scope}:
        reader.problem(
            f"{where}.scope", f"must be one of {[s.value for s in Scope]}, not {show(scope_value)}"
        )
    if len(reader.problems) > before or pattern is None or group is None:
        return None
    return CauseRule(
        frozenset(types), pattern, group, Scope(scope_value), f"{reader.origin}:{where}"
    )


def _template(reader: _Reader, raw: Any, pattern: MessagePattern | None, where: str) -> str | None:
    """A group template such as ``ResourceQuota/{name}``: a kind, '/', DNS-name characters and
    placeholders for the pattern's named groups, at most 253 characters."""
    if not isinstance(raw, str) or not raw:
        reader.problem(
            where, f"{show(raw)} must be a group template such as 'ResourceQuota/{{name}}'"
        )
        return None
    if len(raw) > MAX_GROUP_TEMPLATE_LENGTH or not _TEMPLATE.fullmatch(raw):
        reader.problem(
            where,
            f"{show(raw)} must be at most {MAX_GROUP_TEMPLATE_LENGTH} characters of letters, "
            "digits, '.', '/', ':', '-' and {name} placeholders",
        )
        return None
    names = PLACEHOLDER.findall(raw)
    if len(names) > MAX_PLACEHOLDERS:
        reader.problem(where, f"has {len(names)} placeholders; at most {MAX_PLACEHOLDERS}")
        return None
    if pattern is not None:
        known = set(pattern._compiled.groupindex)  # the pattern's named groups
        missing = sorted(set(names) - known)
        if missing:
            reader.problem(
                where,
                f"names {missing}, which the message pattern does not capture: name a group "
                "in it, such as (?P<name>[a-z0-9-]+)",
            )
            return None
    return raw
