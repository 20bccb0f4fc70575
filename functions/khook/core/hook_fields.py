"""Reading one field of a Hook: each reader takes the raw value (anything a tenant can write),
appends what is wrong with it to ``problems`` with the field's path, and returns a plain value.

Nothing here recurses into a value, and a value shown in a problem is cut short: a Hook may be
huge, deeply nested or hostile, and its problems end up in logs and in the Hook's status.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from khook.core.durations import DurationError, parse_duration
from khook.core.tenancy import DNS_LABEL_RULE, is_dns_label

MIN_COOLDOWN = timedelta(seconds=10)
MAX_COOLDOWN = timedelta(days=7)
MAX_SELECTOR_ITEMS = 1000  # entries in each selector list, as the CRD allows
MAX_SELECTOR_ITEM_LENGTH = 253


def show(value: Any, limit: int = 80) -> str:
    """A value for a problem message: strings quoted and cut short, containers by type only
    (their repr could be huge or endlessly deep)."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[: limit - 1] + "…")
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if abs(value) < 10**18 else "a very large number"
    return f"a {type(value).__name__}"


def unknown_fields(obj: Mapping[Any, Any], allowed: Iterable[str], where: str) -> list[str]:
    known = set(allowed)
    extra = sorted(show(k, 40) for k in obj if k not in known)
    if not extra:
        return []
    listed = ", ".join(extra[:10]) + (f" and {len(extra) - 10} more" if len(extra) > 10 else "")
    return [f"{where}: unknown field(s) [{listed}]; allowed: {sorted(known)}"]


def read_agent(
    item: Mapping[str, Any], namespace: str, where: str, problems: list[str]
) -> tuple[str, str, str] | None:
    """(agent namespace, agent name, path of the field that named the namespace, or "" when it
    is the Hook's own) from ``agentRef`` or the legacy ``agentId``; both parts DNS labels."""
    ref, legacy = item.get("agentRef"), item.get("agentId")
    if ref is not None and legacy is not None:
        problems.append(f"{where}: set agentRef or the legacy agentId, not both")
        return None
    if ref is not None:
        return _agent_ref(ref, namespace, f"{where}.agentRef", problems)
    if legacy is not None:
        return _agent_id(legacy, namespace, f"{where}.agentId", problems)
    problems.append(f"{where}.agentRef is required (agentRef: {{name: my-agent}})")
    return None


def _agent_ref(
    ref: Any, namespace: str, where: str, problems: list[str]
) -> tuple[str, str, str] | None:
    if not isinstance(ref, Mapping):
        problems.append(f"{where} must be a mapping with a name")
        return None
    before = len(problems)
    problems += unknown_fields(ref, ("name", "namespace"), where)
    name, agent_ns = ref.get("name"), ref.get("namespace")
    if name is None or name == "":
        problems.append(f"{where}.name is required")
    elif not is_dns_label(name):
        problems.append(f"{where}.name {show(name)} must be {DNS_LABEL_RULE}")
    if agent_ns is not None and not is_dns_label(agent_ns):
        problems.append(f"{where}.namespace {show(agent_ns)} must be {DNS_LABEL_RULE}")
    if len(problems) > before or not isinstance(name, str):
        return None
    if agent_ns is None:
        return namespace, name, ""
    return str(agent_ns), name, f"{where}.namespace"


def _agent_id(
    legacy: Any, namespace: str, where: str, problems: list[str]
) -> tuple[str, str, str] | None:
    if not isinstance(legacy, str) or not legacy.strip():
        problems.append(f"{where} must be a string 'namespace/name' or 'name'")
        return None
    agent_ns, slash, name = legacy.strip().rpartition("/")
    if not name or "/" in agent_ns or (slash and not agent_ns):
        problems.append(f"{where} {show(legacy)} must be 'namespace/name' or 'name'")
        return None
    for part, what in ((agent_ns, "namespace"), (name, "name")):
        if part and not is_dns_label(part):
            problems.append(
                f"{where} {show(legacy)}: the {what} {show(part)} must be {DNS_LABEL_RULE}"
            )
            return None
    return (agent_ns, name, where) if agent_ns else (namespace, name, "")


def read_cooldown(raw: Any, default: timedelta, where: str, problems: list[str]) -> timedelta:
    if raw is None:
        return default
    if not isinstance(raw, str) or len(raw) > 64:
        problems.append(f"{where} {show(raw)} must be a duration such as 10m or 1h30m")
        return default
    try:
        value = parse_duration(raw)
    except (OverflowError, ValueError) as exc:  # DurationError is a ValueError
        too_long = isinstance(exc, OverflowError) or not isinstance(exc, DurationError)
        problems.append(
            f"{where} {show(raw)} must be between 10s and 7d" if too_long else f"{where}: {exc}"
        )
        return default
    if not MIN_COOLDOWN <= value <= MAX_COOLDOWN:
        problems.append(f"{where} {raw!r} must be between 10s and 7d")
    return value


def read_choice(raw: Any, choices: Iterable[str], where: str, problems: list[str]) -> str | None:
    allowed = list(choices)
    if raw is None:
        return None
    if isinstance(raw, str) and raw in allowed:
        return raw
    problems.append(f"{where} must be one of {allowed}, not {show(raw)}")
    return None


def read_names(raw: Any, where: str, problems: list[str]) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        problems.append(f"{where} must be a list of non-empty strings")
        return frozenset()
    if len(raw) > MAX_SELECTOR_ITEMS or any(len(x) > MAX_SELECTOR_ITEM_LENGTH for x in raw):
        problems.append(
            f"{where} may hold at most {MAX_SELECTOR_ITEMS} entries of at most "
            f"{MAX_SELECTOR_ITEM_LENGTH} characters"
        )
        return frozenset()
    return frozenset(raw)


MAX_MIN_COUNT = 1000
MAX_HOLD_FOR = timedelta(hours=24)


class FollowUps(StrEnum):
    CHANGES = "changes"  # tell the open session about material changes (the default)
    NONE = "none"


@dataclass(frozen=True)
class IncidentOptions:
    """khook extensions of one event configuration, beside ``cooldown``: when a held incident
    opens a session (``minCount``, ``for``; None: the correlation table's default for the
    type), and whether the session hears of changes (``followUps``)."""

    min_count: int | None = None
    hold_for: timedelta | None = None
    followups: FollowUps = FollowUps.CHANGES


def read_incident_options(
    item: Mapping[str, Any], where: str, problems: list[str]
) -> IncidentOptions:
    min_count = item.get("minCount")
    if min_count is not None and (
        not isinstance(min_count, int)
        or isinstance(min_count, bool)
        or not 1 <= min_count <= MAX_MIN_COUNT
    ):
        problems.append(
            f"{where}.minCount must be a whole number from 1 to {MAX_MIN_COUNT}, "
            f"not {show(min_count)}"
        )
        min_count = None
    hold_for = None
    raw_for = item.get("for")
    if raw_for is not None:
        try:
            hold_for = parse_duration(raw_for if isinstance(raw_for, str) else "")
        except DurationError:
            problems.append(f"{where}.for {show(raw_for)} must be a duration such as 2m or 90s")
        else:
            if hold_for > MAX_HOLD_FOR:
                problems.append(f"{where}.for {show(raw_for)} must be at most 24h")
                hold_for = None
    followups = read_choice(item.get("followUps"), FollowUps, f"{where}.followUps", problems)
    return IncidentOptions(min_count, hold_for, FollowUps(followups or FollowUps.CHANGES))


_SELECTOR_KEYS = {"namespaces", "exclude"}
_EXCLUDE_KEYS = {"namespaces", "reasons"}


@dataclass(frozen=True)
class Selector:
    """Which events a Hook wants beyond its own namespace, and which it never wants."""

    namespaces: frozenset[str] = frozenset()
    exclude_namespaces: frozenset[str] = frozenset()
    exclude_reasons: frozenset[str] = frozenset()


def read_selector(raw: Any, problems: list[str]) -> Selector:
    if raw is None:
        return Selector()
    if not isinstance(raw, Mapping):
        problems.append("spec.selector must be a mapping")
        return Selector()
    problems += unknown_fields(raw, _SELECTOR_KEYS, "spec.selector")
    exclude = raw.get("exclude") or {}
    if not isinstance(exclude, Mapping):
        problems.append("spec.selector.exclude must be a mapping")
        exclude = {}
    problems += unknown_fields(exclude, _EXCLUDE_KEYS, "spec.selector.exclude")
    return Selector(
        namespaces=read_names(raw.get("namespaces"), "spec.selector.namespaces", problems),
        exclude_namespaces=read_names(
            exclude.get("namespaces"), "spec.selector.exclude.namespaces", problems
        ),
        exclude_reasons=read_names(
            exclude.get("reasons"), "spec.selector.exclude.reasons", problems
        ),
    )
