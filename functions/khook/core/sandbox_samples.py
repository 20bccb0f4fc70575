"""Sample facts and objects for a trial render of a Hook's prompt, one per built-in event type.

A prompt that cannot render against its event type's sample (it divides by zero, calls
something it may not, or goes over a limit) is refused when its Hook loads, not discovered
at the first real incident. Any other event type is tried against a generic Pod.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from khook.core.prompt import PromptFacts

SAMPLE_TIME = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
_NAMESPACE = "team-a"
_POD = "web-7d4b9c8f5-x2x9z"
_NODE = "worker-1"


def _pod(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": _POD,
            "namespace": _NAMESPACE,
            "uid": "5c0b6a6e-1f55-4a43-9d0b-6c2f4f0f7a11",
            "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5"},
            "annotations": {"example.com/owner": "team-a"},
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c8f5"}
            ],
        },
        "spec": {
            "nodeName": _NODE,
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/shop/web:1.14.2",
                    "resources": {
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                    },
                }
            ],
        },
        "status": {"phase": "Running", **status},
    }


def _container(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "containerStatuses": [
            {
                "name": "app",
                "image": "registry.example.com/shop/web:1.14.2",
                "ready": False,
                "restartCount": 3,
                "state": state,
                "lastState": last or {},
            }
        ]
    }


def _event(kind: str, name: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.1870b8a1c2d3e4f5", "namespace": _NAMESPACE},
        "involvedObject": {"kind": kind, "name": name, "namespace": _NAMESPACE},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": 3,
        "firstTimestamp": "2026-01-01T08:55:00Z",
        "lastTimestamp": "2026-01-01T09:00:00Z",
        "source": {"component": "kubelet", "host": _NODE},
    }


_TERMINATED = {"reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-01-01T09:00:00Z"}
# event type: (kind, name, reason, message, object)
_SAMPLES: dict[str, tuple[str, str, str, str, dict[str, Any]]] = {
    "oom-kill": (
        "Pod",
        _POD,
        "OOMKilled",
        "Container app was OOM-killed (exit code 137, restart count 3)",
        _pod(_container({"running": {}}, {"terminated": _TERMINATED})),
    ),
    "pod-restart": (
        "Pod",
        _POD,
        "CrashLoopBackOff",
        "back-off 5m0s restarting failed container=app",
        _pod(_container({"waiting": {"reason": "CrashLoopBackOff"}})),
    ),
    "image-pull-failed": (
        "Pod",
        _POD,
        "ImagePullBackOff",
        'Back-off pulling image "registry.example.com/shop/web:1.14.2"',
        _pod(_container({"waiting": {"reason": "ImagePullBackOff"}})),
    ),
    "pod-pending": (
        "Pod",
        _POD,
        "Unschedulable",
        "0/3 nodes are available: 3 Insufficient memory.",
        _pod(
            {
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
                ],
            }
        ),
    ),
    "evicted": (
        "Pod",
        _POD,
        "Evicted",
        "The node was low on resource: memory.",
        _pod({"phase": "Failed", "reason": "Evicted"}),
    ),
    "probe-failed": (
        "Pod",
        _POD,
        "Unhealthy",
        "Liveness probe failed: HTTP probe failed with statuscode: 500",
        _event("Pod", _POD, "Unhealthy", "Liveness probe failed"),
    ),
    "failed-mount": (
        "Pod",
        _POD,
        "FailedMount",
        'MountVolume.SetUp failed for volume "data": secret "data" not found',
        _event("Pod", _POD, "FailedMount", "MountVolume.SetUp failed"),
    ),
    "job-failed": (
        "Job",
        "nightly-report",
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
        _event("Job", "nightly-report", "BackoffLimitExceeded", "backoff limit reached"),
    ),
    "node-not-ready": (
        "Node",
        _NODE,
        "NodeNotReady",
        "Node worker-1 status is now: NodeNotReady",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": _NODE, "labels": {"kubernetes.io/hostname": _NODE}},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown"}
                ]
            },
        },
    ),
}
_GENERIC = (
    "Pod",
    _POD,
    "BackOff",
    "Back-off restarting failed container app",
    _pod(_container({"waiting": {"reason": "CrashLoopBackOff"}})),
)
BUILTIN_EVENT_TYPES = tuple(_SAMPLES)


def sample_facts(event_type: str, hook: str = f"{_NAMESPACE}/sample-hook") -> PromptFacts:
    kind, name, reason, message, _ = _SAMPLES.get(event_type, _GENERIC)
    cluster_scoped = kind == "Node"
    return PromptFacts(
        event_type=event_type,
        namespace="" if cluster_scoped else _NAMESPACE,
        kind=kind,
        name=name,
        reason=reason,
        message=message,
        timestamp=SAMPLE_TIME,
        count=3,
        first_seen=SAMPLE_TIME,
        last_seen=SAMPLE_TIME,
        hook=hook,
        owner="" if kind != "Pod" else "Deployment/web",
        container="app" if kind == "Pod" else "",
        api_version="batch/v1" if kind == "Job" else "v1",
        action="update",
    )


def sample_object(event_type: str) -> dict[str, Any]:
    return copy.deepcopy(_SAMPLES.get(event_type, _GENERIC)[4])
