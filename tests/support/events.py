"""CloudEvents for tests, made with the cloudevents SDK, and Kubernetes objects to put in them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent

from khook.core.events import Envelope

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sources" / "samples"
CAPTURED = ROOT / "tests" / "fixtures" / "captured"
HOOKS = ROOT / "config" / "samples" / "hooks"


def apiserver_event(obj: dict[str, Any], action: str = "update", **attrs: Any) -> CloudEvent:
    """A CloudEvent shaped like an ApiServerSource in Resource mode would send it."""
    meta = obj.get("metadata", {})
    ns, name = meta.get("namespace", ""), meta.get("name", "")
    scope = f"namespaces/{ns}/" if ns else ""
    attributes = {
        "type": f"dev.knative.apiserver.resource.{action}",
        "source": "https://10.96.0.1:443",
        "subject": f"/apis/{obj['apiVersion']}/{scope}{obj['kind'].lower()}s/{name}",
        "datacontenttype": "application/json",
        "kind": obj["kind"],
        "name": name,
        "namespace": ns,
        "apiversion": obj["apiVersion"],
        "time": "2026-11-23T09:20:10.000000000Z",
    }
    attributes.update(attrs)
    return CloudEvent(attributes, obj)


def envelope(event: CloudEvent) -> Envelope:
    """What the HTTP entry hands the pipeline for this CloudEvent."""
    return Envelope({k: str(v) for k, v in event.get_attributes().items()}, event.get_data())


def binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    headers, body = to_binary(event)
    return dict(headers), body


def structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    headers, body = to_structured(event)
    return dict(headers), body


def sample(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    return doc


def sample_object(name: str) -> dict[str, Any]:
    return copy.deepcopy(sample(name)["body"])


def captured(name: str) -> tuple[dict[str, str], bytes]:
    """A captured ApiServerSource request, headers and body as they were sent."""
    doc = json.loads((CAPTURED / f"{name}.json").read_text())
    headers = {
        k: v for k, v in doc["headers"].items() if k.lower() not in ("host", "content-length")
    }
    body = json.dumps(doc["body"], separators=(",", ":")).encode()
    assert str(len(body)) == doc["headers"]["Content-Length"], "replay must be byte for byte"
    return headers, body


def core_event(
    reason: str,
    message: str,
    *,
    type_: str = "Warning",
    kind: str = "Pod",
    name: str = "web-1",
    namespace: str = "default",
    count: int = 1,
    last: str = "2026-11-23T09:20:00Z",
    uid: str = "",
) -> dict[str, Any]:
    involved: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "name": name}
    if kind != "Node":
        involved["namespace"] = namespace
    event_ns = namespace if kind != "Node" else "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{reason.lower()}",
            "namespace": event_ns,
            "uid": uid or f"uid-{name}-{reason}",
        },
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "type": type_,
        "count": count,
        "firstTimestamp": last,
        "lastTimestamp": last,
    }


def pod(
    name: str = "web-7d4b9c8f5-x2x9z",
    namespace: str = "default",
    *,
    container_statuses: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    owner: str | None = "web-7d4b9c8f5",
    uid: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": uid or f"uid-{name}",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5"},
    }
    if owner:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner,
                "uid": f"uid-{owner}",
                "controller": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "web:1"}]},
        "status": {
            "phase": "Running",
            "conditions": conditions or [],
            "containerStatuses": container_statuses or [],
        },
    }


def oom_status(finished: str = "2026-11-23T09:19:59Z", restarts: int = 1) -> dict[str, Any]:
    return {
        "name": "app",
        "restartCount": restarts,
        "state": {"running": {"startedAt": finished}},
        "lastState": {
            "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": finished}
        },
    }


def oom_request(namespace: str = "default") -> tuple[dict[str, str], bytes]:
    """An ApiServerSource request (binary mode) for a Pod that was just OOM-killed."""
    return binary(apiserver_event(pod(namespace=namespace, container_statuses=[oom_status()])))


def recovered(obj: dict[str, Any], since: str = "2026-11-23T09:10:00Z") -> dict[str, Any]:
    """The Pod healthy again: Ready, every container ready and running since ``since`` (a
    container that restarted counts as recovered only once it has run a while)."""
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    for status in obj["status"].get("containerStatuses", []):
        status["ready"] = True
        status["lastState"] = {}
        status["state"] = {"running": {"startedAt": since}}
    return obj


def outcome(
    *,
    fired: int = 0,
    duplicate: int = 0,
    failed: int = 0,
    held: int = 0,
    followup: int = 0,
    stale: int = 0,
) -> str:
    """The X-Khook-Outcome header khook answers for these counts."""
    return (
        f"fired={fired} duplicate={duplicate} failed={failed} held={held} "
        f"followup={followup} stale={stale}"
    )
