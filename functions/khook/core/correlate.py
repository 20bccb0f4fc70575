"""Correlation: which incident one detection belongs to, for one Hook.

Between classification and the dedup decision, every detection a Hook matched is given its
incident (see khook.core.incident for the key) and how that incident is decided:

- the **family**: the highest type of the detection's precedence chain that the Hook lists
  (an OOM kill explains the restarts around it), so one session opens under the cause;
- the **group**: a shared cause named by the correlation table (``causes``), the registry of a
  transient image-pull failure (``Registry/<host>/<class>``), the node of a pod-level
  consequence of a NotReady node (``Node/<name>``), else the workload, else the resource;
- the **hold**: whether the detection's type is a blip that usually heals (the table's
  ``holds``, overridden by the configuration's ``minCount``/``for``).

Nothing here crosses a Hook's view: the facts about an object (its workload, node, pull
cause) are only used for Hooks that see the object, and the Hook is part of every key.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from khook.core.classify import Detection
from khook.core.correlation import CorrelationTable, HoldRule
from khook.core.dedup import Hold, Policy, Sighting
from khook.core.durations import show_duration
from khook.core.events import ClusterEvent
from khook.core.hook_fields import MAX_HOLD_FOR, FollowUps
from khook.core.hooks import EventConfiguration, GroupBy, Hook
from khook.core.incident import DedupKey
from khook.core.objects import ObjectRef
from khook.core.quick import quick_init
from khook.core.registry import PULL_RETRY, PullFailure

# The longest a failing pull waits for a message naming its cause: kubelet's next attempt.
CAUSE_WAIT = PULL_RETRY

NODE_FAMILY = "node-not-ready"
IMAGE_PULL = "image-pull-failed"


Table = CorrelationTable


@quick_init
@dataclass(frozen=True)
class Facts:
    """What the shell knows of the object beyond the event itself, from its bounded memories
    or the API server: its workload, its node and whether that node is NotReady, the cause of
    its failing image pull."""

    workload: ObjectRef | None = None
    node: str = ""
    node_not_ready: bool = False
    pull: PullFailure | None = None


@quick_init
@dataclass(frozen=True)
class Incident:
    """One detection, placed: its incident's key, the configuration of the detection's own
    type, how the incident is decided (its family's cooldown and follow-ups), and what the
    detection counts as."""

    key: DedupKey
    config: EventConfiguration
    detection: Detection
    sighting: Sighting
    policy: Policy


@dataclass(frozen=True)
class Explained:
    """A detection that opens nothing: its cause is already an incident the Hook cannot see
    or does not list (a pod on a NotReady node), or is still to be named (a failing pull of
    a pod no message has said the cause of yet). Held, nothing stored."""

    config: EventConfiguration
    detection: Detection
    key: DedupKey
    reason: str


def correlate(
    event: ClusterEvent,
    hook: Hook,
    config: EventConfiguration,
    detection: Detection,
    *,
    table: Table,
    facts: Facts,
    control_namespace: str,
    followup_every: timedelta = timedelta(minutes=5),
    claim_timeout: timedelta | None = None,
) -> Incident | Explained:
    """The incident ``detection`` belongs to for ``hook``, with the key, sighting and policy
    its decision needs (``claim_timeout``: how long a claim may stay unconfirmed, None for
    the store's default); or why it opens none."""
    listed = hook.event_types
    family = table.family(detection.event_type, listed)
    session_config = hook.configuration(family) or config
    signal = detection.signal
    on_lost_node = facts.node and facts.node_not_ready
    if on_lost_node and table.node_consequence(signal.reason, signal.message):
        node_family = family
        key = DedupKey(hook.key, node_family, "", f"Node/{facts.node}")
        if hook.namespace != control_namespace or node_family != NODE_FAMILY:
            # The node's incident explains it; this Hook either cannot see the node or does
            # not list node-not-ready: it opens no incident of its own meanwhile.
            return Explained(config, detection, key, f"explained by Node/{facts.node}, not ready")
        family, session_config = node_family, hook.configuration(NODE_FAMILY) or config
        namespace, group = "", f"Node/{facts.node}"
    else:
        namespace, group = _group(event, detection, session_config, table, facts)
    key = DedupKey(hook.key, family, namespace, group)
    pull = facts.pull if detection.event_type == IMAGE_PULL else None
    rule = table.hold(detection.event_type)
    # The session opens with the configuration of the type that opens it (its prompt, its
    # agent); the incident's cooldown and follow-ups are its family's, so every signal of it
    # is decided alike.
    own = hook.configuration(detection.event_type) or config
    hold = _hold(rule, own)
    waited = _cause_wait(pull, hold, event)
    if waited is not None:
        return Explained(
            config,
            detection,
            key,
            f"no message has named the cause of this failing pull yet: held up to {waited} "
            "for the one that will (kubelet names it on its next pull attempt)",
        )
    holdable = hold is not None and not (
        rule is not None and rule.transient_only and not (pull is not None and pull.transient)
    )
    sighting = Sighting(
        occurrence=signal.occurrence,
        occurred_at=signal.occurred_at,
        observed_at=event.observed_at,
        resource=event.involved.display,
        event_type=detection.event_type,
        count=signal.failures,
        started_at=signal.first_seen,
        workload=(facts.workload or event.involved).display,
        detail=_detail(pull),
        holdable=holdable,
    )
    policy = Policy(
        window=session_config.cooldown,
        hold=hold,
        followups=session_config.incident.followups is FollowUps.CHANGES,
        followup_every=followup_every,
        ranks=_ranks(table.chain(family), listed),
        claim_timeout=claim_timeout,
    )
    return Incident(key, own, detection, sighting, policy)


def _group(
    event: ClusterEvent,
    detection: Detection,
    config: EventConfiguration,
    table: Table,
    facts: Facts,
) -> tuple[str, str]:
    """(namespace, group) of a detection's incident."""
    named = table.cause_group(detection.event_type, detection.signal.message)
    if named is not None:
        group, scope = named
        return ("" if scope == "cluster" else event.namespace), group
    pull = facts.pull
    if detection.event_type == IMAGE_PULL and pull is not None and pull.transient:
        # One registry answering 429 is one incident, whatever the workloads pulling from it.
        return "", f"Registry/{pull.registry}/{pull.pull_class}"
    if config.group_by is GroupBy.OWNER:
        owner = facts.workload or event.owner
        if owner is not None:
            return event.namespace, owner.display
    return event.namespace, event.involved.display


def _cause_wait(pull: PullFailure | None, hold: Hold | None, event: ClusterEvent) -> str | None:
    """How long (shown) a failing pull whose cause no message has named yet is still held:
    for its hold's ``for``, at most CAUSE_WAIT, from the pod's earliest such signal (of its
    current spell: see OwnerMemory.pull_cause_for). In
    a registry outage a pod's first signals may state no cause (khook started, or the source
    re-listed its Events in no order, mid-storm); kubelet's next pull attempt names it, and
    puts the pod in the outage's incident (or, a terminal cause, in its own, at once). None:
    not held for that (a named cause, a Hook with no hold, or the wait is over: then it is
    the conservative ``unknown``, per workload)."""
    if pull is None or pull.unstated_since is None or hold is None:
        return None
    wait = min(hold.hold_for, CAUSE_WAIT)
    if event.observed_at - pull.unstated_since >= wait:
        return None
    return show_duration(wait)


def _hold(rule: HoldRule | None, config: EventConfiguration) -> Hold | None:
    options = config.incident
    if rule is None and options.min_count is None and options.hold_for is None:
        return None
    min_count = options.min_count or (rule.min_count if rule is not None else 1)
    # A minCount without a `for` and without a table rule holds only by count.
    hold_for = options.hold_for or (rule.for_ if rule is not None else MAX_HOLD_FOR)
    if min_count <= 1:
        return None  # minCount 1: fire at the first sighting, as the Go khook does
    return Hold(min_count, hold_for)


def _ranks(chain: tuple[str, ...], listed: Collection[str]) -> tuple[str, ...]:
    """The family's types the Hook lists, the cause first."""
    return tuple(t for t in chain if t in listed)


def _detail(pull: PullFailure | None) -> str:
    if pull is None:
        return ""
    return f"{pull.registry}: {pull.detail} ({pull.pull_class})"
