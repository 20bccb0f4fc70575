"""The three streams, as request templates: binary-mode CloudEvents exactly as an
ApiServerSource sends them, with placeholders the load generator fills in per request.

- ``@ID@``: a token unique to the request (round, thread, counter: ``r3t1n1234``, DNS-safe).
  Every ce-id holds it; a new incident's pod and workload names hold it, so each is new.
- ``@N@``: the thread's request counter alone, a number: the ``count`` of a repeated Event,
  so each sighting of an Event is a new occurrence of it, as a kubelet's repeats are.

Times are fixed when a stream is built (the CloudEvent's ``time`` is that moment, each
signal 5 s older): khook judges a signal's age against its CloudEvent's time, so a stream stays
fresh for the 15 minutes of KHOOK_MAX_SIGNAL_AGE. Build a stream just before using it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from tests.support.events import (
    apiserver_event,
    binary,
    core_event,
    oom_status,
    pod,
    recovered,
    sample_object,
)

ID = "@ID@"
N = "@N@"
IGNORED, NEW, REPEAT, STORM = "ignored", "new", "repeat", "storm"
NAMES = ("nothing", "realistic", "storm")
LIVE_INCIDENTS = 10  # the incidents the realistic stream's repeats are sightings of
STORM_WORKLOADS = 40
REGISTRY = "registry.example.com"
# The sample Hooks watch default (pod-incidents), khook-demo (hook-sample) and, from
# khook-system, every namespace but default and kube-system (cluster-incidents).
NAMESPACES = ("default", "khook-demo", "shop")
PULL_503 = (
    'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull and '
    'unpack image "{image}": failed to resolve reference "{image}": unexpected status from '
    "HEAD request to https://{registry}/v2/shop/{name}/manifests/1.4.2: 503 Service Unavailable"
)


@dataclass(frozen=True)
class Template:
    kind: str  # IGNORED, NEW, REPEAT or STORM: what khook is meant to make of it
    headers: dict[str, str]
    body: str

    def render(self, token: str, counter: int) -> tuple[dict[str, str], bytes]:
        """What the load generator sends for this request (the Lua script does the same)."""
        headers = {k: v.replace(ID, token) for k, v in self.headers.items()}
        body = self.body.replace(ID, token).replace(N, str(counter))
        return headers, body.encode()


@dataclass(frozen=True)
class Stream:
    name: str
    templates: tuple[Template, ...]  # sent in this order, round and round
    prime: tuple[Template, ...] = ()  # sent once before measuring: the live incidents' start

    def share(self, kind: str) -> float:
        return sum(t.kind == kind for t in self.templates) / len(self.templates)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _template(kind: str, obj: dict[str, Any], now: datetime, action: str = "update") -> Template:
    event = apiserver_event(obj, action, id=f"bench-{ID}", time=_stamp(now))
    headers, _ = binary(event)
    # The SDK's body, as compact as the adapter's (Go's encoding/json): the placeholders are in
    # strings, so writing the object ourselves keeps them intact.
    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
    # A counter is a JSON number: its placeholder goes in unquoted.
    return Template(kind, headers, orjson.dumps(obj).decode().replace(f'"{N}"', N))


def _normal(reason: str, message: str, **kw: Any) -> dict[str, Any]:
    return core_event(reason, message, type_="Normal", **kw)


def nothing_of_interest(now: datetime) -> list[Template]:
    """Normal Events of pods starting and workloads scaling, updates of healthy running pods,
    a healthy Node's status: most of what a cluster sends, and nothing any Hook wants."""
    signal = _stamp(now - timedelta(seconds=5))
    out: list[Template] = []
    for i, ns in enumerate(NAMESPACES):
        name, rs = f"api-{i}-6f9c7b8d4-k7p2w", f"api-{i}-6f9c7b8d4"
        image = f"{REGISTRY}/shop/api:1.{i}.0"
        at = {"namespace": ns, "last": signal}
        events = [
            _normal(
                "Scheduled", f"Successfully assigned {ns}/{name} to worker-{i}", name=name, **at
            ),
            _normal("Pulling", f'Pulling image "{image}"', name=name, **at),
            _normal("Pulled", f'Successfully pulled image "{image}" in 1.2s', name=name, **at),
            _normal("Created", "Created container: app", name=name, **at),
            _normal("Started", "Started container app", name=name, **at),
            _normal("SuccessfulCreate", f"Created pod: {name}", kind="ReplicaSet", name=rs, **at),
            _normal(
                "ScalingReplicaSet",
                f"Scaled up replica set {rs} from 2 to 3",
                kind="Deployment",
                name=f"api-{i}",
                **at,
            ),
        ]
        for event in events:
            event["metadata"]["name"] = f"{event['involvedObject']['name']}.{i}{len(out):x}"
            event["metadata"]["uid"] = f"uid-{event['metadata']['name']}"
            out.append(_template(IGNORED, event, now, "add"))
        for k in range(3):
            healthy = pod(f"api-{i}-6f9c7b8d4-h{k}x2z", ns, owner=rs)
            healthy["status"]["containerStatuses"] = [{"name": "app", "restartCount": 0}]
            out.append(_template(IGNORED, recovered(healthy, since=signal), now))
    out.append(_template(IGNORED, healthy_node(now), now))
    return out


def healthy_node(now: datetime) -> dict[str, Any]:
    node = sample_object("node-not-ready-node-status")
    node["metadata"]["name"] = "worker-7"
    node["spec"].pop("taints", None)
    beat = _stamp(now - timedelta(seconds=5))
    node["status"]["conditions"] = [
        {
            "type": kind,
            "status": "True" if kind == "Ready" else "False",
            "reason": "KubeletReady" if kind == "Ready" else f"KubeletHas{kind}",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": beat,
            "lastTransitionTime": "2026-10-02T07:13:40Z",
        }
        for kind in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")
    ]
    return node


def oom_killed(name: str, owner: str, now: datetime) -> dict[str, Any]:
    finished = _stamp(now - timedelta(seconds=5))
    return pod(name, "default", owner=owner, container_statuses=[oom_status(finished=finished)])


def new_incident(now: datetime) -> Template:
    """A pod of a workload never seen before, OOM-killed: the sample Hook default/pod-incidents
    opens a session for it (rendered, sent to the dry-run agent)."""
    return _template(NEW, oom_killed(f"new-{ID}-7d4b9c8f5-x2x9z", f"new-{ID}-7d4b9c8f5", now), now)


def live_incidents(now: datetime) -> list[Template]:
    """The OOM kills of LIVE_INCIDENTS workloads: sent once to open them (``prime``), then again
    and again, as a kubelet's later status updates repeat the last termination."""
    return [
        _template(REPEAT, oom_killed(f"live-{i}-7d4b9c8f5-x2x9z", f"live-{i}-7d4b9c8f5", now), now)
        for i in range(LIVE_INCIDENTS)
    ]


def registry_outage(now: datetime) -> list[Template]:
    """One root cause seen many times: the registry answers 503, and every pod of
    STORM_WORKLOADS workloads in default fails its pull: kubelet's Failed (with the cause),
    Failed "Error: ErrImagePull", BackOff, Failed "Error: ImagePullBackOff" Events, each again
    with a higher count, and the pods' waiting statuses."""
    signal = _stamp(now - timedelta(seconds=5))
    out: list[Template] = []
    for w in range(STORM_WORKLOADS):
        name, rs = f"svc-{w}-7d4b9c8f5-x2x9z", f"svc-{w}-7d4b9c8f5"
        image = f"{REGISTRY}/shop/svc-{w}:1.4.2"
        cause = PULL_503.format(image=image, registry=REGISTRY, name=f"svc-{w}")
        events = [
            core_event("Failed", cause, name=name, last=signal),
            core_event("Failed", "Error: ErrImagePull", name=name, last=signal),
            _normal("BackOff", f'Back-off pulling image "{image}"', name=name, last=signal),
            core_event("Failed", "Error: ImagePullBackOff", name=name, last=signal),
        ]
        for k, event in enumerate(events):
            event["metadata"]["name"] = f"{name}.{w:x}{k}"
            event["metadata"]["uid"] = f"uid-{name}-{k}"
            out.append(_template(STORM, {**event, "count": N}, now))
        waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
        status = {"name": "app", "restartCount": 0, "ready": False, "state": {"waiting": waiting}}
        failing = pod(name, "default", owner=rs, container_statuses=[status])
        failing["spec"]["containers"][0]["image"] = image
        failing["status"]["phase"] = "Pending"
        out.append(_template(STORM, failing, now))
    return out


def _interleave(parts: dict[int, list[Template]], seed: int) -> tuple[Template, ...]:
    """``parts``: how many slots of 100 each list fills, cycling through it; shuffled once with
    a fixed seed, so that every run sends the same sequence."""
    slots = [t for count, items in parts.items() for t in (items * count)[:count]]
    random.Random(seed).shuffle(slots)
    return tuple(slots)


def build(name: str, now: datetime | None = None) -> Stream:
    now = now or datetime.now(UTC)
    nothing = nothing_of_interest(now)
    if name == "nothing":
        return Stream(name, tuple(nothing))
    if name == "realistic":
        live = live_incidents(now)
        # 85% events no Hook wants, 10% repeats of live incidents, 5% new incidents.
        templates = _interleave({85: nothing, 10: live, 5: [new_incident(now)]}, seed=10)
        return Stream(name, templates, prime=tuple(live))
    if name == "storm":
        return Stream(name, tuple(registry_outage(now)))
    raise ValueError(f"unknown stream {name!r}: one of {', '.join(NAMES)}")


def sample(now: datetime | None = None) -> Callable[[str], tuple[dict[str, str], bytes]]:
    """A request for probing a server (cold start, readiness): an event no Hook wants."""
    template = nothing_of_interest(now or datetime.now(UTC))[4]  # Normal Started
    return lambda token: template.render(token, 1)
