"""Matching: which Hook configurations a classified cluster event concerns.

Tenant isolation: a Hook sees only objects in its own namespace. Cluster-scoped objects
(Nodes) and ``spec.selector.namespaces`` are honoured only for Hooks in the control namespace,
where the platform team keeps its Hooks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from khook.core.classify import Detection
from khook.core.events import ClusterEvent
from khook.core.hooks import ALL_NAMESPACES, EventConfiguration, GroupBy, Hook
from khook.core.quick import quick_init


@quick_init
@dataclass(frozen=True)
class HookMatch:
    """One Hook configuration and the detections (one or more signals) that concern it."""

    hook: Hook
    config: EventConfiguration
    detections: tuple[Detection, ...]


def hook_sees(hook: Hook, namespace: str, control_namespace: str) -> bool:
    if namespace in hook.selector.exclude_namespaces:
        return False
    in_control = hook.namespace == control_namespace
    if not namespace:  # a cluster-scoped object
        return in_control
    if in_control and hook.selector.namespaces:
        return namespace in hook.selector.namespaces or ALL_NAMESPACES in hook.selector.namespaces
    return namespace == hook.namespace


def match(
    event: ClusterEvent,
    detections: Iterable[Detection],
    hooks: Iterable[Hook],
    control_namespace: str,
) -> list[HookMatch]:
    found = list(detections)
    matches = []
    for hook in hooks:
        if not hook_sees(hook, event.namespace, control_namespace):
            continue
        excluded = {r.lower() for r in hook.selector.exclude_reasons}
        for config in hook.configurations:
            mine = tuple(
                d
                for d in found
                if d.event_type == config.event_type and d.signal.reason.lower() not in excluded
            )
            if mine:
                matches.append(HookMatch(hook, config, mine))
    return matches


def incident_group(event: ClusterEvent, config: EventConfiguration) -> str:
    """What one incident is: the owner (all pods of a Deployment together), or the resource."""
    if config.group_by is GroupBy.OWNER and event.owner is not None:
        return event.owner.display
    return event.involved.display
