"""The workload a Pod belongs to, without an API call, and what correlation remembers of pods
and nodes (bounded).

**From the Pod** (its ownerReferences, :func:`workload_of_pod`): a ReplicaSet named
``<deployment>-<pod-template-hash>`` whose hash is the Pod's ``pod-template-hash`` label is
its Deployment; a StatefulSet, DaemonSet or Job is itself; a Job named ``<cronjob>-<minutes>``
is its CronJob's.

**From the name alone** (an Event about a Pod that never passed through, :func:`guess_workload`):
only the shape a Deployment's pods have is recognised, because it cannot be mistaken for
another controller's: ``<deployment>-<hash>-<suffix>``, where the hash is a
``pod-template-hash`` and the suffix the 5 random characters every generated name ends with.
The other shapes are too ambiguous to guess and are not guessed: a DaemonSet's or a Job's
pods (``<name>-<5 random>``) look alike and like a bare pod named ``web-x7k2p``; a
StatefulSet's (``<name>-<ordinal>``) look like any name ending in a number.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from khook.core.correlation import CorrelationTable
from khook.core.lru import BoundedLRU
from khook.core.objects import (
    MAPPING,
    ObjectRef,
    controller_owner,
    get_list,
    get_str,
    parse_time,
)
from khook.core.registry import (
    PULL_RETRY,
    UNKNOWN,
    PullFailure,
    classify_pull,
    image_in,
    registry_of,
)

MAX_PODS = 10_000  # pods whose workload, node and pull cause are remembered (LRU)
MAX_NODES = 5_000  # NotReady nodes remembered (Kubernetes supports 5,000 nodes a cluster)
MAX_NAME_LENGTH = 253  # a longer name is not a Kubernetes name: nothing is remembered of it
MAX_NAMESPACE_LENGTH = 63
CONDITION_LIMIT = 32  # conditions of a Node read for its Ready condition

# k8s.io/apimachinery/pkg/util/rand: the characters of generated names (no vowels, no 0/1/3).
SAFE_ALPHABET = frozenset("bcdfghjklmnpqrstvwxz2456789")
# pod-template-hash is rand.SafeEncodeString of a 32-bit FNV hash written in decimal
# (pkg/controller/controller_utils.go ComputeHash): each digit becomes alphanums[ord(d) % 27],
# so only these ten characters occur in it, 1 to 10 of them (6 or fewer: 1 hash in 40,000).
HASH_ALPHABET = frozenset("456789bcdf")
HASH_LENGTHS = range(6, 11)
SUFFIX_LENGTH = 5  # names.SimpleNameGenerator: generateName + 5 random characters
# A generated name longer than 58 + 5 has its prefix cut to 58 characters
# (apiserver/pkg/storage/names), which may cut into the hash: a 63-character pod name may be
# such a name, so it is not guessed.
TRUNCATED_LENGTH = 63
# The CronJob controller names a Job <cronjob>-<scheduled time in minutes since the epoch>
# (pkg/controller/cronjob/utils.go getJobName): 8 digits from 1989 until 2160.
CRONJOB_SUFFIX_DIGITS = 8
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "CronJob"})
_APPS = "apps/v1"


# ---- names ------------------------------------------------------------------------------


def workload_of_pod(pod: Any) -> ObjectRef | None:
    """The workload of a Pod object, from its controlling owner reference (see the module
    doc); None for a Pod without one, or owned by a Node (a static pod's mirror)."""
    return workload_of_owner(controller_owner(pod))


def workload_of_owner(owner: ObjectRef | None) -> ObjectRef | None:
    """:func:`workload_of_pod`, from the Pod's :func:`controller_owner` already read."""
    if owner is None or owner.kind == "Node":
        return None
    if owner.kind == "Job":
        return cronjob_of_job(owner.name, owner.namespace) or owner
    return owner


def guess_workload(kind: str, name: str, namespace: str) -> ObjectRef | None:
    """The workload of an object known only by kind and name (an Event's involved object):
    a Pod or ReplicaSet by the Deployment shape, a Job by the CronJob shape (else itself), a
    workload kind itself; None when the name does not say."""
    if not _is_name(name):
        return None
    if kind == "Pod":
        return deployment_of_pod_name(name, namespace)
    if kind == "ReplicaSet":
        return deployment_of_replicaset(name, namespace)
    if kind == "Job":
        return cronjob_of_job(name, namespace) or ObjectRef("Job", name, namespace, "batch/v1")
    if kind in _WORKLOAD_KINDS:
        return ObjectRef(kind, name, namespace, "batch/v1" if kind == "CronJob" else _APPS)
    return None


def deployment_of_pod_name(name: str, namespace: str) -> ObjectRef | None:
    """Deployment ``web`` from pod ``web-66b6c48dd5-x7k2p``; None for any other shape."""
    if not _is_name(name) or len(name) >= TRUNCATED_LENGTH:
        return None
    prefix, dash, suffix = name.rpartition("-")
    if not dash or len(suffix) != SUFFIX_LENGTH or not set(suffix) <= SAFE_ALPHABET:
        return None
    return deployment_of_replicaset(prefix, namespace)


def deployment_of_replicaset(name: str, namespace: str) -> ObjectRef | None:
    """Deployment ``web`` from ReplicaSet ``web-66b6c48dd5``; None for any other shape."""
    deployment, dash, template_hash = name.rpartition("-")
    if (
        not dash
        or len(template_hash) not in HASH_LENGTHS
        or not set(template_hash) <= HASH_ALPHABET
        or not _SUBDOMAIN.fullmatch(deployment)
    ):
        return None
    return ObjectRef("Deployment", deployment, namespace, _APPS)


def cronjob_of_job(name: str, namespace: str) -> ObjectRef | None:
    """CronJob ``backup`` from Job ``backup-28948930``; None for any other shape. A Job
    someone named ``migrate-20240101`` reads as CronJob ``migrate`` too: its pods then share
    an incident with other Jobs named ``migrate-<8 digits>``."""
    cronjob, dash, minutes = name.rpartition("-")
    if (
        not dash
        or len(minutes) != CRONJOB_SUFFIX_DIGITS
        or not minutes.isascii()
        or not minutes.isdigit()
        or not _SUBDOMAIN.fullmatch(cronjob)
    ):
        return None
    return ObjectRef("CronJob", cronjob, namespace, "batch/v1")


def _is_name(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= MAX_NAME_LENGTH


# ---- memory -----------------------------------------------------------------------------


class Unread(Enum):
    """The type of :data:`UNREAD`: not read yet (unlike None, which is an answer)."""

    UNREAD = "unread"


UNREAD = Unread.UNREAD


@dataclass(frozen=True)
class PodFacts:
    """What is remembered of one pod."""

    workload: ObjectRef | None = None
    seen: bool = False  # the Pod itself passed through: ``workload`` is known (None: none)
    node: str = ""  # spec.nodeName
    pull: PullFailure | None = None  # the cause of its last failing image pull
    # Its current spell of failing pulls whose cause no message named: since (the earliest
    # signal's time) and the latest signal's time.
    causeless_since: datetime | None = None
    causeless_last: datetime | None = None


class OwnerMemory:
    """Bounded memories that let an Event about a Pod be correlated without an API call:
    pod -> workload and node (from Pod objects that pass through), pod -> the cause of its
    last failing image pull (so kubelet's causeless pull events inherit it), and node ->
    since when it is not Ready (from Node objects and Events; cleared when Ready).

    At most ``max_pods`` pods (default 10,000) and ``max_nodes`` nodes (default 5,000) are
    remembered, the least recently used forgotten first. Pure: no I/O; thread-safe."""

    def __init__(self, max_pods: int = MAX_PODS, max_nodes: int = MAX_NODES) -> None:
        self._pods: BoundedLRU[tuple[str, str], PodFacts] = BoundedLRU(max_pods)
        self._not_ready: BoundedLRU[str, datetime] = BoundedLRU(max_nodes)
        self._update = threading.Lock()  # read-modify-write of one pod's facts

    # -- pods --

    def observe_pod(
        self, pod: Any, owner: ObjectRef | Unread | None = UNREAD, ref: ObjectRef | None = None
    ) -> None:
        """Remember a Pod object's workload and node (``owner``: its :func:`controller_owner`,
        ``ref``: its :meth:`ObjectRef.of`, when the caller has read them already)."""
        if ref is None:
            key = _pod_key(get_str(pod, "metadata", "namespace"), get_str(pod, "metadata", "name"))
        else:
            key = _pod_key(ref.namespace, ref.name)
        if key is None:
            return
        node = get_str(pod, "spec", "nodeName")
        workload = workload_of_owner(controller_owner(pod) if owner is UNREAD else owner)
        with self._update:
            facts = self._pods.get(key) or PodFacts()
            node = node if _is_name(node) else facts.node
            if facts.seen and facts.workload == workload and facts.node == node:
                return  # a Pod's update most often changes neither (get made it recent)
            self._pods.put(key, replace(facts, workload=workload, seen=True, node=node))

    def forget_pod(self, namespace: str, name: str) -> None:
        key = _pod_key(namespace, name)
        if key is not None:
            self._pods.pop(key)

    def workload(self, namespace: str, name: str) -> ObjectRef | None:
        """The pod's workload: remembered from its Pod object, else guessed from its name
        (:func:`deployment_of_pod_name`); None when neither says."""
        key = _pod_key(namespace, name)
        if key is None:
            return None
        facts = self._pods.get(key)
        if facts is not None and facts.seen:
            return facts.workload
        return deployment_of_pod_name(name, namespace)

    def node_of(self, namespace: str, name: str) -> str:
        key = _pod_key(namespace, name)
        facts = self._pods.get(key) if key is not None else None
        return facts.node if facts is not None else ""

    def remember_pull(self, namespace: str, name: str, failure: PullFailure) -> None:
        key = _pod_key(namespace, name)
        if key is None:
            return
        with self._update:
            facts = self._pods.get(key) or PodFacts()
            self._pods.put(key, replace(facts, pull=failure))

    def pull_cause(self, namespace: str, name: str) -> PullFailure | None:
        key = _pod_key(namespace, name)
        facts = self._pods.get(key) if key is not None else None
        return facts.pull if facts is not None else None

    def pull_cause_for(
        self,
        namespace: str,
        name: str,
        message: str,
        table: CorrelationTable,
        image: str = "",
        *,
        at: datetime | None = None,
    ) -> PullFailure:
        """The cause of a failing pull of this pod: the one ``message`` states (remembered for
        the pod's later messages), else the one remembered from an earlier message, else
        ``unknown`` (per workload, fires), with since when the pod has failed to pull without
        a cause khook knows (``at``: this signal's time; see _causeless_since and
        khook.core.correlate)."""
        stated = classify_pull(message, table, image)
        if stated is not None:
            self.remember_pull(namespace, name, stated)
            return stated
        remembered = self.pull_cause(namespace, name)
        if remembered is not None:
            return remembered
        reference = image_in(message) or (image if isinstance(image, str) else "")
        since = self._causeless_since(namespace, name, at)
        return PullFailure(reference, registry_of(reference), UNKNOWN, False, "", since)

    def _causeless_since(self, namespace: str, name: str, at: datetime | None) -> datetime | None:
        """Since when this pod's pulls have failed with no cause named: the earliest time of
        its current spell, one that a gap longer than PULL_RETRY (kubelet retries a failing
        pull at least that often) ends. None, so nothing waits for a cause, when that cannot
        be told: no time, not a pod name, or a pod not remembered while the memory is full
        (its spell forgotten with it: it must not begin again, nor push out another pod's)."""
        key = _pod_key(namespace, name)
        if key is None or at is None:
            return None
        with self._update:
            facts = self._pods.get(key)
            if facts is None and len(self._pods) >= self._pods.limit:
                return None
            facts = facts or PodFacts()
            since, last = facts.causeless_since, facts.causeless_last
            if since is None or last is None or at - last > PULL_RETRY:
                since = last = at  # a new spell
            else:
                since, last = min(since, at), max(last, at)
            self._pods.put(key, replace(facts, causeless_since=since, causeless_last=last))
            return since

    def pods_remembered(self) -> int:
        return len(self._pods)

    # -- nodes --

    def observe_node(self, node: Any, now: datetime) -> None:
        """Read a Node object's Ready condition: True clears it; False or Unknown marks it not
        ready since the condition's lastTransitionTime (``now`` without one)."""
        name = get_str(node, "metadata", "name")
        for cond in get_list(node, "status", "conditions")[:CONDITION_LIMIT]:
            if isinstance(cond, MAPPING) and get_str(cond, "type") == "Ready":
                ready = get_str(cond, "status") == "True"
                since = parse_time(cond.get("lastTransitionTime")) or now
                self._node_state(name, ready, since)
                return

    def node_event(self, reason: str, node: str, at: datetime) -> None:
        """A ``NodeNotReady`` Event about a Node (the node controller's, or kubelet's own)
        marks it not ready since ``at``; ``NodeReady`` clears it. Other reasons are ignored."""
        if reason == "NodeNotReady":
            self._node_state(node, False, at)
        elif reason == "NodeReady":
            self._node_state(node, True, at)

    def forget_node(self, node: str) -> None:
        if _is_name(node):
            self._not_ready.pop(node)

    def not_ready_since(self, node: str) -> datetime | None:
        return self._not_ready.get(node) if _is_name(node) else None

    def node_not_ready(self, node: str) -> bool:
        return self.not_ready_since(node) is not None

    def _node_state(self, node: str, ready: bool, since: datetime) -> None:
        if not _is_name(node):
            return
        if since.tzinfo is None:  # compared with parsed times, which are aware (UTC)
            since = since.replace(tzinfo=UTC)
        if ready:
            self._not_ready.pop(node)
            return
        with self._update:
            known = self._not_ready.get(node)
            self._not_ready.put(node, since if known is None else min(known, since))


def _pod_key(namespace: object, name: object) -> tuple[str, str] | None:
    if (
        isinstance(namespace, str)
        and len(namespace) <= MAX_NAMESPACE_LENGTH
        and _is_name(name)
        and isinstance(name, str)
    ):
        return namespace, name
    return None
