"""What khook remembers of the objects that pass through, as facts for correlation.

A Pod's workload and node, a node's readiness and a pod's image-pull cause, in the bounded
memories of :class:`khook.core.owners.OwnerMemory`; read for the Events about those objects,
which carry none of it. Pure: no I/O (in cluster mode the shell adds what it reads).
"""

from __future__ import annotations

from khook.core.classify import Detection
from khook.core.correlate import IMAGE_PULL, Facts
from khook.core.correlation import CorrelationTable
from khook.core.events import ClusterEvent
from khook.core.objects import ObjectRef, get_list, get_str
from khook.core.owners import OwnerMemory, guess_workload
from khook.core.registry import PullFailure

NODE_REASONS = frozenset({"NodeNotReady", "NodeReady"})
_CONTAINER_LIMIT = 64


class ObjectMemory:
    def __init__(self, table: CorrelationTable, owners: OwnerMemory | None = None) -> None:
        self.table = table
        self.owners = owners or OwnerMemory()

    def observe(self, event: ClusterEvent, detections: list[Detection]) -> None:
        kind, obj = event.subject.kind, event.object
        if kind == "Pod":
            # Decoding read its name, namespace and controller owner.
            self.owners.observe_pod(obj, event.owner, event.subject)
        elif kind == "Node":
            self.owners.observe_node(obj, event.observed_at)
        elif kind == "Event" and event.involved.kind == "Node":
            reason = get_str(obj, "reason")
            if reason in NODE_REASONS:
                when = detections[0].signal.occurred_at if detections else None
                self.owners.node_event(reason, event.involved.name, when or event.observed_at)
        for detection in detections:
            if detection.event_type == IMAGE_PULL:
                self._pull(event, detection)  # remembers a cause the message states

    def facts(self, event: ClusterEvent, detection: Detection | None) -> Facts:
        ref = event.involved
        if ref.kind != "Pod":
            workload = event.owner or guess_workload(ref.kind, ref.name, ref.namespace)
            return Facts(workload=workload)
        node = self.owners.node_of(ref.namespace, ref.name)
        if not node and event.subject.kind == "Pod":
            node = get_str(event.object, "spec", "nodeName")
        pull: PullFailure | None
        if detection is not None and detection.event_type == IMAGE_PULL:
            pull = self._pull(event, detection)
        else:
            pull = self.owners.pull_cause(ref.namespace, ref.name)
        return Facts(
            workload=event.owner or self.owners.workload(ref.namespace, ref.name),
            node=node,
            node_not_ready=bool(node) and self.owners.node_not_ready(node),
            pull=pull,
        )

    def workload_of(self, pod: ObjectRef) -> ObjectRef | None:
        return self.owners.workload(pod.namespace, pod.name)

    def node_known(self, node: str) -> bool:
        return self.owners.not_ready_since(node) is not None

    def _pull(self, event: ClusterEvent, detection: Detection) -> PullFailure:
        ref = event.involved
        image = _image_of(event, detection.signal.container)
        return self.owners.pull_cause_for(
            ref.namespace,
            ref.name,
            detection.signal.message,
            self.table,
            image,
            at=event.observed_at,
        )


def _image_of(event: ClusterEvent, container: str) -> str:
    """The image a Pod's container runs (its status), for messages that do not quote it."""
    if event.subject.kind != "Pod" or not container:
        return ""
    status = event.object.get("status")
    for field in ("initContainerStatuses", "containerStatuses"):
        for cs in get_list(status, field)[:_CONTAINER_LIMIT]:
            if get_str(cs, "name") == container:
                return get_str(cs, "image")
    return ""
