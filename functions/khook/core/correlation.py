"""The correlation table: data that decides which incident a detection belongs to.

Like the classification table (:mod:`khook.core.rules`), it ships built in
(``builtin_correlation.yaml``) and a ``--rules`` file can extend or override it under a
``correlation:`` key. It holds:

- ``precedence``: chains of event types, highest first; within one Hook the highest type of a
  chain that the Hook lists names the incident (an OOM kill explains the restarts after it);
- ``holds``: types whose incidents usually heal by themselves, held until ``minCount`` or
  ``for``;
- ``pullErrors``: image-pull error texts and their class (first match wins), and
  ``pullWithoutCause``: the kubelet messages that state no cause;
- ``nodeConsequences``: pod-level signals that a NotReady node causes;
- ``causes``: a shared cause named in a message (``exceeded quota: compute``), one incident
  for every object it names.

Every regular expression is RE2 (:mod:`khook.core.patterns`): linear time, length-capped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from khook.core.patterns import SEARCH_LIMIT, MessagePattern

MAX_GROUP_LENGTH = 512  # characters of a group a cause rule renders; longer: does not apply
MAX_CAPTURE_LENGTH = 253  # a captured name is a DNS-1123 subdomain: at most 253 characters
EVICTION_REASON = "evicted"  # kubelet's eviction reason (pkg/kubelet/eviction/helpers.go)

# A DNS-1123 subdomain, as Kubernetes names most objects (a ResourceQuota, a volume).
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,31})\}")


class CorrelationError(ValueError):
    """A correlation document is invalid; ``problems`` lists every problem, with its path."""

    def __init__(self, origin: str, problems: list[str], warnings: list[str] | None = None):
        self.origin = origin
        self.problems = list(problems)
        self.warnings = list(warnings or [])  # about the patterns that are valid
        super().__init__(f"{origin}: " + "; ".join(self.problems))


class Scope(StrEnum):
    NAMESPACE = "namespace"  # one incident per namespace the cause is named in
    CLUSTER = "cluster"  # one incident across namespaces (per Hook: tenants stay apart)


@dataclass(frozen=True)
class HoldRule:
    """Hold a type's incident until an object failed ``min_count`` times, or ``min_count``
    objects fail at once, or it lasted ``for_``; ``transient_only``: only for transient
    image-pull classes (a terminal pull fires at once)."""

    min_count: int
    for_: timedelta
    transient_only: bool = False


@dataclass(frozen=True)
class PullErrorRule:
    pull_class: str
    transient: bool
    message: MessagePattern
    origin: str = ""


@dataclass(frozen=True)
class CauseRule:
    """A shared cause named in a message: ``group`` is a template whose ``{name}``
    placeholders are the pattern's named groups."""

    event_types: frozenset[str]
    message: MessagePattern
    group: str
    scope: Scope = Scope.NAMESPACE
    origin: str = ""

    def render(self, message: str) -> str | None:
        """The group this message names, or None: no match, or a captured value that is not a
        DNS-1123 subdomain of at most 253 characters (then the rule does not apply)."""
        match = first_match(self.message, message)
        if match is None:
            return None
        values: dict[str, str] = {}
        for name in PLACEHOLDER.findall(self.group):
            value = match.group(name)
            if (
                not isinstance(value, str)
                or len(value) > MAX_CAPTURE_LENGTH
                or not _SUBDOMAIN.fullmatch(value)
            ):
                return None
            values[name] = value
        group = PLACEHOLDER.sub(lambda m: values[m.group(1)], self.group)
        return group if len(group) <= MAX_GROUP_LENGTH else None


def _no_holds() -> Mapping[str, HoldRule]:
    return MappingProxyType({})


@dataclass(frozen=True)
class CorrelationTable:
    precedence: tuple[tuple[str, ...], ...] = ()
    holds: Mapping[str, HoldRule] = field(default_factory=_no_holds)
    pull_errors: tuple[PullErrorRule, ...] = ()
    pull_without_cause: tuple[MessagePattern, ...] = ()
    node_reasons: frozenset[str] = frozenset()  # lower-cased: reasons compare case-insensitively
    eviction_message: MessagePattern | None = None
    causes: tuple[CauseRule, ...] = ()
    # Patterns that run safely here but would be catastrophic under a backtracking engine.
    warnings: tuple[str, ...] = ()

    def without_holds(self) -> CorrelationTable:
        """The same table with no hold: every incident opens at its first sighting."""
        return replace(self, holds=_no_holds())

    def then(self, other: CorrelationTable) -> CorrelationTable:
        """This table first, then ``other`` (a user's table, then the built-in one):

        - ``precedence``: this table's chains, then ``other``'s without the types this table's
          chains name (a type belongs to one chain); a chain left with fewer than 2 types is
          dropped, so a one-type chain here takes a type out of ``other``'s chains;
        - ``holds``: per type, this table's rule replaces ``other``'s;
        - ``pullErrors``, ``pullWithoutCause``, ``causes``: this table's entries first (the
          first match wins);
        - ``nodeConsequences.reasons``: the union; ``evictionMessage``: this table's if set.
        """
        named = {t for chain in self.precedence for t in chain}
        rest = tuple(
            kept
            for chain in other.precedence
            if len(kept := tuple(t for t in chain if t not in named)) >= 2
        )
        return CorrelationTable(
            precedence=self.precedence + rest,
            holds=MappingProxyType({**other.holds, **self.holds}),
            pull_errors=self.pull_errors + other.pull_errors,
            pull_without_cause=self.pull_without_cause + other.pull_without_cause,
            node_reasons=self.node_reasons | other.node_reasons,
            eviction_message=self.eviction_message or other.eviction_message,
            causes=self.causes + other.causes,
            warnings=self.warnings + other.warnings,
        )

    @cached_property
    def pull_memo(self) -> dict[tuple[str, str], Any]:
        """What khook.core.registry.classify_pull found for a (message, image) under this
        table: a storm repeats a few messages thousands of times. Bounded there."""
        return {}

    @cached_property
    def _chains(self) -> dict[str, tuple[str, ...]]:
        index: dict[str, tuple[str, ...]] = {}
        for chain in self.precedence:
            for event_type in chain:
                index.setdefault(event_type, chain)  # the first chain that names a type
        return index

    def chain(self, event_type: str) -> tuple[str, ...]:
        """The precedence chain ``event_type`` is in, highest first; ``(event_type,)`` if none."""
        return self._chains.get(event_type, (event_type,))

    def family(self, event_type: str, listed: Collection[str]) -> str:
        """The highest type of ``event_type``'s chain, at or above it, that ``listed`` (the
        Hook's types) contains; else ``event_type``. A type never maps to one below it."""
        chain = self.chain(event_type)
        above = chain[: chain.index(event_type) + 1] if event_type in chain else ()
        return next((t for t in above if t in listed), event_type)

    def hold(self, event_type: str) -> HoldRule | None:
        return self.holds.get(event_type)

    def node_consequence(self, reason: str, message: str) -> bool:
        """Whether a pod-level signal is the kind a NotReady node (or node pressure) causes:
        its reason is one of ``nodeConsequences.reasons``, or it is an eviction whose message
        is kubelet's node-pressure text. Whether the pod's node *is* NotReady is for the
        caller to know (see :class:`khook.core.owners.OwnerMemory`)."""
        lowered = reason.lower() if isinstance(reason, str) else ""
        if lowered in self.node_reasons:
            return True
        return (
            lowered == EVICTION_REASON
            and self.eviction_message is not None
            and first_match(self.eviction_message, message) is not None
        )

    def cause_group(self, event_type: str, message: str) -> tuple[str, str] | None:
        """(group, scope) of the first ``causes`` rule for this type that names a cause in
        ``message``; None when none does."""
        for rule in self.causes:
            if event_type in rule.event_types:
                group = rule.render(message)
                if group is not None:
                    return group, rule.scope.value
        return None


def first_match(pattern: MessagePattern, text: Any) -> Any:
    """RE2's match of ``pattern`` in the first SEARCH_LIMIT characters of ``text`` (None when
    there is none). The match object is needed for its named groups and the matched phrase,
    which :class:`MessagePattern` does not expose; the search is the same as its own."""
    if not isinstance(text, str):
        return None
    return pattern._compiled.search(searchable(text[:SEARCH_LIMIT]))


def searchable(text: str) -> str:
    """``text`` as RE2 can take it: a lone surrogate (JSON allows ``\\ud800``) cannot be
    encoded to UTF-8 and would raise, so it becomes '?' (same length: indexes stay)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def parse_correlation(document: Any, origin: str) -> CorrelationTable:
    """The table in a parsed document ``{"correlation": {...}}``; every problem at once, each
    with its path (``correlation.holds.probe-failed.minCount: ...``)."""
    from khook.core._correlation_read import read_table  # noqa: PLC0415 (no import cycle)

    if not isinstance(document, Mapping) or not isinstance(document.get("correlation"), Mapping):
        raise CorrelationError(
            origin, ["a correlation document is a mapping with a 'correlation' mapping"]
        )
    problems: list[str] = []
    warnings: list[str] = []
    table = read_table(document["correlation"], origin, problems, warnings)
    if problems:
        raise CorrelationError(origin, problems, warnings)
    return table
