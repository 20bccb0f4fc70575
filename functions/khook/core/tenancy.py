"""Tenancy: which agents a Hook may call, and which of a namespace's Hooks are in force.

Both are pure policy, decided the same way by every replica:

- **Agent boundaries.** A Hook in namespace N may call agents in N, in the shared agent
  namespaces (Kagent's own, ``kagent``, by default) and in the namespaces granted to N. Hooks in
  the control namespace, where the platform team keeps its Hooks, may call any namespace.
- **Hook quota.** At most ``limit`` Hooks are in force per namespace: the oldest, by
  creationTimestamp and then name, so that a new Hook can never push out one that works.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

ANY = "*"
DNS_LABEL_MAX = 63
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_LABEL_RULE = (
    "a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with "
    "a letter or digit"
)
DEFAULT_AGENT_NAMESPACES = ("kagent",)
DEFAULT_MAX_HOOKS_PER_NAMESPACE = 50


def is_dns_label(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= DNS_LABEL_MAX
        and _DNS_LABEL.fullmatch(value) is not None
    )


class PolicyError(ValueError):
    """The agent policy's configuration is wrong; khook must not start with it."""


def parse_grants(text: str) -> dict[str, frozenset[str]]:
    """``"team-a=ml-agents,shared;team-b=ml-agents"``: which agent namespaces each Hook
    namespace is granted on top of its own and the shared ones. ``*`` on the left means every
    namespace; on the right, any agent namespace. A namespace named twice gets the union."""
    grants: dict[str, set[str]] = {}
    if not isinstance(text, str):
        raise PolicyError(f"agent grants must be a string, not {type(text).__name__}")
    for number, raw in enumerate(text.split(";"), start=1):
        entry = raw.strip()
        if not entry:
            continue
        shown = entry if len(entry) <= 80 else entry[:79] + "…"
        hook_namespace, equals, targets = (part.strip() for part in entry.partition("="))
        if not equals:
            raise PolicyError(
                f"agent grants entry {number} {shown!r}: expected "
                "'hook-namespace=agent-namespace[,agent-namespace...]'"
            )
        _check_namespace(hook_namespace, f"agent grants entry {number} {shown!r}")
        names = [t.strip() for t in targets.split(",") if t.strip()]
        if not names:
            raise PolicyError(
                f"agent grants entry {number} {shown!r}: names no agent namespace after '='"
            )
        for name in names:
            _check_namespace(name, f"agent grants entry {number} {shown!r}")
        grants.setdefault(hook_namespace, set()).update(names)
    return {namespace: frozenset(names) for namespace, names in grants.items()}


def _check_namespace(name: str, where: str) -> None:
    if name != ANY and not is_dns_label(name):
        shown = name if len(name) <= 80 else name[:79] + "…"
        raise PolicyError(f"{where}: {shown!r} is not '*' or {DNS_LABEL_RULE}")


@dataclass(frozen=True)
class AgentPolicy:
    """Which agent namespaces the Hooks of each namespace may call."""

    control_namespace: str = "khook-system"
    agent_namespaces: frozenset[str] = frozenset(DEFAULT_AGENT_NAMESPACES)
    grants: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def build(
        cls,
        control_namespace: str,
        agent_namespaces: Iterable[str] = DEFAULT_AGENT_NAMESPACES,
        grants: str = "",
    ) -> AgentPolicy:
        """The policy from its settings; a PolicyError says what is wrong with them."""
        shared = frozenset(agent_namespaces)
        for name in sorted(shared):
            _check_namespace(name, "agent namespaces")
        return cls(control_namespace, shared, MappingProxyType(parse_grants(grants)))

    def allowed(self, hook_namespace: str) -> frozenset[str]:
        """The agent namespaces a Hook in ``hook_namespace`` may call; ``{"*"}`` means any."""
        if hook_namespace == self.control_namespace:
            return frozenset({ANY})
        allowed = {hook_namespace, *self.agent_namespaces}
        allowed |= self.grants.get(hook_namespace, frozenset())
        allowed |= self.grants.get(ANY, frozenset())
        return frozenset({ANY}) if ANY in allowed else frozenset(allowed)

    def allows(self, hook_namespace: str, agent_namespace: str) -> bool:
        allowed = self.allowed(hook_namespace)
        return ANY in allowed or agent_namespace in allowed

    def check_agents(self, hook_namespace: str, refs: Iterable[tuple[str, str]]) -> list[str]:
        """Problems for the agents a Hook may not call; ``refs`` are (field path, agent
        namespace) pairs."""
        return [
            f"{path}: a Hook in namespace {hook_namespace!r} may not call agents in namespace "
            f"{agent_namespace!r}; it may call agents in {self.describe(hook_namespace)} "
            "(the platform team grants more with KHOOK_AGENT_GRANTS)"
            for path, agent_namespace in refs
            if not self.allows(hook_namespace, agent_namespace)
        ]

    def describe(self, hook_namespace: str) -> str:
        allowed = self.allowed(hook_namespace)
        if ANY in allowed:
            return "any namespace"
        return ", ".join(repr(n) for n in sorted(allowed))


# ---- the Hook quota ---------------------------------------------------------------------


def quota_order(created: object, name: str) -> tuple[str, str]:
    """Where a Hook stands in its namespace's queue: older first, then by name. The API server
    writes creationTimestamp as RFC 3339 UTC to the second, which sorts as text; a Hook from a
    file usually has none and sorts by name."""
    return (created if isinstance(created, str) else "", name)


def in_quota(orders: Mapping[str, tuple[str, str]], limit: int) -> frozenset[str]:
    """The keys that are in force: the ``limit`` first by their order."""
    ranked = sorted(orders, key=lambda key: (orders[key], key))
    return frozenset(ranked[: max(limit, 0)])


def quota_problem(namespace: str, limit: int) -> str:
    # No count and no rank in the text: it must not change (and be rewritten into every
    # status) each time another Hook is added to a crowded namespace.
    return (
        f"namespace {namespace!r} has more than {limit} Hooks: only the {limit} oldest (by "
        "creationTimestamp, then name) are in force; delete Hooks or merge their "
        "eventConfigurations into fewer Hooks"
    )
