"""The storm corpus (``sources/storms/``), built deterministically from how Kubernetes behaves.

``python -m tests.support.storms`` rewrites the corpus; ``tests/test_storms.py`` checks that the
committed files are exactly what this module makes. Each storm is a small discrete-event
simulation of the components that write what an ApiServerSource watches (Events, Pods, Nodes),
with their real message shapes and timings (checked against the Kubernetes source):

- **client-go's event recorder** (``tools/record``), used by kubelet and the controllers: an
  Event named ``<object>.<hex nanoseconds>``; the same event again (same source, object, type,
  reason, message) is a PATCH of that Event with ``count`` + 1 and a new ``lastTimestamp``
  (an ``update``); more than 10 different messages for one reason within 10 minutes are
  combined; a token bucket per source and object (burst 25, one more every 5 minutes) drops
  writes, while the count keeps counting, so the next write jumps;
- **events.k8s.io recorders** (the scheduler): ``eventTime``, ``action``, no ``count``;
- **kubelet**: image pulls (``Pulling``; ``Failed`` with the cause; ``Failed`` "Error:
  ErrImagePull"; ``BackOff`` "Back-off pulling image" (Normal); ``Failed`` "Error:
  ImagePullBackOff"), the image back-off (10 s doubling to 300 s, per pod and image), crash
  loops (``BackOff`` "Back-off restarting failed container <c> in pod <name>_<ns>(<uid>)",
  back-off 10 s doubling to 300 s, the first restart immediate), probes ("Readiness probe
  failed: ...", ``Killing`` "Container <c> failed liveness probe, will be restarted"), pod
  syncs every 10-15 s while a pod is in back-off, and status updates only when status changes;
- **the node lifecycle controller**: after 50 s without a heartbeat the Node's conditions go
  ``Unknown`` (``NodeStatusUnknown``, "Kubelet stopped posting node status."), a Normal
  ``NodeNotReady`` Event on the Node, the ``unreachable`` taints, every pod on it ``Ready=False``
  (no reason: the controller only flips the status) with a Warning ``NodeNotReady`` "Node is not
  ready"; after the pods' 300 s toleration the taint-eviction controller marks them
  (``TaintManagerEviction`` "Marking for deletion Pod <ns>/<name>", a ``DisruptionTarget``
  condition) and deletes them;
- **controllers**: ReplicaSet ``FailedCreate`` "Error creating: pods "<rs>-" is forbidden:
  exceeded quota: ..." retried with the workqueue's back-off (5 ms doubling), the
  attach/detach controller's ``FailedAttachVolume`` "Multi-Attach error ...", kubelet's
  ``FailedMount`` "Unable to attach or mount volumes: ..." every 2m03s.

Everything is fixed: uids and names come from the storm's name, times from a fixed start.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from khook.replay import adapter_headers, go_json

ROOT = Path(__file__).resolve().parents[2]
STORMS = ROOT / "sources" / "storms"
START = datetime(2026, 3, 2, 10, 0, 0, tzinfo=UTC)
SINK_HOST = "khook.khook-system.svc.cluster.local"
SOURCE_NAMESPACE = "khook-system"  # where the ApiServerSource (its adapter) runs
REGISTRY = "registry.example.com"
_UID_NAMESPACE = uuid.UUID("9a8e6f2c-51a4-4c1e-8f0e-6b686f6f6b73")
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand

Json = dict[str, Any]
Process = Iterator[float]  # a simulated component: yields the seconds to wait


def ts(t: datetime) -> str:
    """metav1.Time: seconds."""
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro(t: datetime) -> str:
    """metav1.MicroTime: always six digits."""
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the world: a clock, an API server that numbers writes, and the adapter ---------------


class World:
    def __init__(self, name: str, start: datetime = START) -> None:
        self.name = name
        self.start = start
        self.now = start
        self.rng = random.Random(f"khook-storm/{name}")
        self.requests: list[Json] = []
        self._rv = 48_213_000
        self._queue: list[tuple[datetime, int, Process]] = []
        self._seq = itertools.count()
        self._sent = start
        self.events: dict[tuple[str, str], Json] = {}  # the API server's Events
        self.recorders: dict[tuple[str, str], Recorder] = {}

    # -- identity
    def uid(self, *parts: str) -> str:
        return str(uuid.uuid5(_UID_NAMESPACE, "/".join((self.name, *parts))))

    def suffix(self, n: int = 5) -> str:
        return "".join(self.rng.choice(_ALPHABET) for _ in range(n))

    def template_hash(self) -> str:
        """pod-template-hash / controller-revision-hash: rand.SafeEncodeString of a 32-bit
        hash written in decimal, so only ten characters of the alphabet occur in it."""
        return "".join(_ALPHABET[ord(d) % len(_ALPHABET)] for d in str(self.rng.getrandbits(32)))

    def hexdigits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(n))

    def jitter(self, base: float, factor: float = 0.5) -> float:
        """wait.Jitter: base to base * (1 + factor)."""
        return round(base * (1 + factor * self.rng.random()), 3)

    # -- time
    def at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def spawn(self, process: Process, delay: float = 0.0) -> None:
        heapq.heappush(self._queue, (self.now + timedelta(seconds=delay), next(self._seq), process))

    def run(self, seconds: float) -> None:
        end = self.at(seconds)
        while self._queue and self._queue[0][0] <= end:
            moment, _, process = heapq.heappop(self._queue)
            self.now = moment
            delay = next(process, None)
            if delay is not None:
                self.spawn(process, delay)

    # -- the API server and the adapter
    def write(self, obj: Json, action: str = "update") -> None:
        """The API server stores ``obj`` (a new resourceVersion); the adapter posts it."""
        self._rv += 1 + self.rng.randrange(3)  # other objects are written in between
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self.post(action, copy.deepcopy(obj))

    def post(self, action: str, obj: Json) -> None:
        sent = max(self.now + timedelta(seconds=self.rng.uniform(0.002, 0.04)), self._sent)
        sent += timedelta(microseconds=1)
        self._sent = sent
        body = go_json(obj)
        headers = {"Host": SINK_HOST, "User-Agent": "Go-http-client/1.1"}
        headers["Content-Length"] = str(len(body))
        headers.update(
            adapter_headers(
                obj,
                action=action,
                event_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                sent_at=sent,
                nanosecond=sent.microsecond * 1000 + self.rng.randrange(1000),
            )
        )
        headers["Kn-Namespace"] = SOURCE_NAMESPACE
        headers["Accept-Encoding"] = "gzip"
        self.requests.append({"headers": headers, "body": obj})

    def recorder(self, component: str, host: str = "") -> Recorder:
        key = (component, host)
        if key not in self.recorders:
            self.recorders[key] = Recorder(self, component, host)
        return self.recorders[key]


def managed(obj: Json, manager: str, when: datetime, fields: Json, **extra: str) -> None:
    """Record a field manager's write (fieldsV1 abbreviated to the top-level fields)."""
    entries = obj["metadata"].setdefault("managedFields", [])
    for entry in entries:
        if entry["manager"] == manager and entry.get("subresource") == extra.get("subresource"):
            entry["time"] = ts(when)
            return
    entry = {
        "apiVersion": extra.pop("apiVersion", "v1"),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
        "manager": manager,
        "operation": "Update",
        "time": ts(when),
    }
    entry.update(extra)
    entries.append(entry)


# ---- client-go's event recorder -----------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    last: datetime


@dataclass
class _Seen:
    name: str
    count: int
    first: datetime


class Recorder:
    """tools/record's EventCorrelator and its sink, for one source (component, host)."""

    SPAM_BURST, SPAM_QPS = 25, 1.0 / 300.0
    AGGREGATE_MAX, AGGREGATE_WINDOW = 10, timedelta(minutes=10)

    def __init__(self, world: World, component: str, host: str) -> None:
        self.world, self.component, self.host = world, component, host
        self.manager = "kubelet" if component == "kubelet" else "kube-controller-manager"
        self._seen: dict[tuple[str, ...], _Seen] = {}
        self._buckets: dict[tuple[str, ...], _Bucket] = {}
        self._similar: dict[tuple[str, ...], tuple[set[str], datetime]] = {}

    def event(self, involved: Json, type_: str, reason: str, message: str) -> None:
        w, now = self.world, self.world.now
        obj_key = tuple(str(involved.get(k, "")) for k in ("kind", "namespace", "name", "uid"))
        similar = (*obj_key, type_, reason)
        messages, last = self._similar.get(similar, (set(), now))
        if now - last > self.AGGREGATE_WINDOW:
            messages = set()
        messages.add(message)
        self._similar[similar] = (messages, now)
        if len(messages) >= self.AGGREGATE_MAX:
            message = f"(combined from similar events): {message}"
        key = (*obj_key, str(involved.get("fieldPath", "")), type_, reason, message)
        seen = self._seen.get(key)
        if seen is None:
            nanos = int(now.timestamp()) * 10**9 + now.microsecond * 1000 + w.rng.randrange(1000)
            seen = _Seen(f"{involved['name']}.{nanos:x}", 0, now)
            self._seen[key] = seen
        seen.count += 1
        if not self._allowed(obj_key, now):
            return  # the spam filter dropped this write; the count goes on
        namespace = involved.get("namespace") or "default"
        stored = w.events.get((namespace, seen.name))
        if stored is None:
            stored = self._new(involved, namespace, seen, type_, reason)
            stored.update(count=seen.count, lastTimestamp=ts(now), message=message)
            w.events[(namespace, seen.name)] = stored
            w.write(stored, "add")
        else:
            stored.update(count=seen.count, lastTimestamp=ts(now), message=message)
            managed(stored, self.manager, now, {})
            w.write(stored, "update")

    def _allowed(self, obj_key: tuple[str, ...], now: datetime) -> bool:
        bucket = self._buckets.setdefault(obj_key, _Bucket(self.SPAM_BURST, now))
        elapsed = (now - bucket.last).total_seconds()
        bucket.tokens = min(self.SPAM_BURST, bucket.tokens + elapsed * self.SPAM_QPS)
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _new(self, involved: Json, namespace: str, seen: _Seen, type_: str, reason: str) -> Json:
        w, now = self.world, self.world.now
        source: Json = {"component": self.component}
        if self.host:
            source["host"] = self.host
        event: Json = {
            "apiVersion": "v1",
            "eventTime": None,
            "firstTimestamp": ts(seen.first),
            "involvedObject": dict(involved),
            "kind": "Event",
            "metadata": {
                "creationTimestamp": ts(now),
                "name": seen.name,
                "namespace": namespace,
                "uid": w.uid("event", namespace, seen.name),
            },
            "reason": reason,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "source": source,
            "type": type_,
        }
        fields = {f"f:{k}": {} for k in ("count", "firstTimestamp", "involvedObject")}
        fields.update({f"f:{k}": {} for k in ("lastTimestamp", "message", "reason", "type")})
        fields.update({"f:reportingComponent": {}, "f:reportingInstance": {}, "f:source": {}})
        managed(event, self.manager, now, fields)
        return event


def scheduled_event(world: World, pod: Pod) -> None:
    """The scheduler records through events.k8s.io/v1: seen as core v1, with eventTime, an
    action and reportingController, and neither count nor first/lastTimestamp."""
    now, meta = world.now, pod.obj["metadata"]
    nanos = int(now.timestamp()) * 10**9 + now.microsecond * 1000 + world.rng.randrange(1000)
    name = f"{meta['name']}.{nanos:x}"
    event: Json = {
        "action": "Binding",
        "apiVersion": "v1",
        "eventTime": micro(now),
        "firstTimestamp": None,
        "involvedObject": pod.ref(field_path=False),
        "kind": "Event",
        "lastTimestamp": None,
        "message": f"Successfully assigned {meta['namespace']}/{meta['name']} to {pod.node}",
        "metadata": {
            "creationTimestamp": ts(now),
            "name": name,
            "namespace": meta["namespace"],
            "uid": world.uid("event", meta["namespace"], name),
        },
        "reason": "Scheduled",
        "reportingComponent": "default-scheduler",
        "reportingInstance": "default-scheduler-control-plane",
        "source": {},
        "type": "Normal",
    }
    fields = {f"f:{k}": {} for k in ("action", "eventTime", "note", "reason", "regarding")}
    fields.update({"f:reportingController": {}, "f:reportingInstance": {}, "f:type": {}})
    managed(event, "kube-scheduler", now, fields, apiVersion="events.k8s.io/v1")
    world.write(event, "add")


# ---- workloads and pods -------------------------------------------------------------------


@dataclass
class App:
    """A workload and the pod template its controller stamps out."""

    kind: str  # Deployment | StatefulSet | DaemonSet
    name: str
    namespace: str
    image: str
    replicas: int = 3
    cpu: str = "250m"
    memory: str = "256Mi"
    readiness: Json | None = None
    liveness: Json | None = None
    volume_claim: str = ""  # a StatefulSet's volumeClaimTemplate name
    hash: str = ""  # pod-template-hash / controller-revision-hash
    pods: list[Pod] = field(default_factory=list)

    @property
    def owner_kind(self) -> str:
        return "ReplicaSet" if self.kind == "Deployment" else self.kind

    @property
    def owner_name(self) -> str:
        return f"{self.name}-{self.hash}" if self.kind == "Deployment" else self.name

    def owner_uid(self, world: World) -> str:
        return world.uid(self.owner_kind, self.namespace, self.owner_name)


def app(world: World, kind: str, name: str, namespace: str, image: str, **kw: Any) -> App:
    made = App(kind, name, namespace, image, **kw)
    made.hash = world.template_hash()
    return made


class Pod:
    def __init__(
        self, world: World, owner: App, name: str, node: str = "", existing: float = 0.0
    ) -> None:
        """A new pod, or (``existing``: started that many seconds ago) one already running
        on ``node`` before the recording began."""
        self.world, self.app, self.node = world, owner, ""
        self.name, self.namespace = name, owner.namespace
        self.ip = ""
        self.restarts = 0
        self.container_id = ""
        created = world.now - timedelta(seconds=existing)
        labels: Json = {"app": owner.name}
        if owner.kind == "Deployment":
            labels["pod-template-hash"] = owner.hash
        elif owner.kind == "StatefulSet":
            labels["apps.kubernetes.io/pod-index"] = name.rsplit("-", 1)[1]
            labels["controller-revision-hash"] = f"{owner.name}-{owner.hash}"
            labels["statefulset.kubernetes.io/pod-name"] = name
        else:
            labels["controller-revision-hash"] = owner.hash
            labels["pod-template-generation"] = "1"
        meta: Json = {
            "creationTimestamp": ts(created),
            "labels": labels,
            "name": name,
            "namespace": self.namespace,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "blockOwnerDeletion": True,
                    "controller": True,
                    "kind": owner.owner_kind,
                    "name": owner.owner_name,
                    "uid": owner.owner_uid(world),
                }
            ],
            "uid": world.uid("pod", self.namespace, name),
        }
        if owner.kind != "StatefulSet":
            meta["generateName"] = f"{owner.owner_name}-"
        token = f"kube-api-access-{world.suffix(5)}"
        container: Json = {
            "image": owner.image,
            "imagePullPolicy": "IfNotPresent",
            "name": "app",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {
                "limits": {"memory": owner.memory},
                "requests": {"cpu": owner.cpu, "memory": owner.memory},
            },
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "volumeMounts": [
                {
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "name": token,
                    "readOnly": True,
                }
            ],
        }
        volumes: list[Json] = [_token_volume(token)]
        if owner.readiness:
            container["readinessProbe"] = owner.readiness
        if owner.liveness:
            container["livenessProbe"] = owner.liveness
        if owner.volume_claim:
            container["volumeMounts"].insert(
                0, {"mountPath": "/var/lib/data", "name": owner.volume_claim}
            )
            volumes.insert(
                0,
                {
                    "name": owner.volume_claim,
                    "persistentVolumeClaim": {"claimName": f"{owner.volume_claim}-{name}"},
                },
            )
        tolerations = [
            {
                "effect": "NoExecute",
                "key": f"node.kubernetes.io/{taint}",
                "operator": "Exists",
                "tolerationSeconds": 300,
            }
            for taint in ("not-ready", "unreachable")
        ]
        if owner.kind == "DaemonSet":  # DaemonSet pods stay on an unreachable node
            for toleration in tolerations:
                del toleration["tolerationSeconds"]
        self.obj: Json = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "containers": [container],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": True,
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "default",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
                "tolerations": tolerations,
                "volumes": volumes,
            },
            "status": {"phase": "Pending", "qosClass": "Burstable"},
        }
        managed(
            self.obj,
            "kube-controller-manager",
            created,
            {"f:metadata": {"f:labels": {}, "f:ownerReferences": {}}, "f:spec": {}},
        )
        owner.pods.append(self)
        if existing:
            self._already_running(node, created)
            return
        world.write(self.obj, "add")
        if node:
            self.bind(node)

    def _already_running(self, node: str, since: datetime) -> None:
        w, now = self.world, self.world.now
        self.world.now = since
        self.node = node
        self.obj["spec"]["nodeName"] = node
        self._condition("PodScheduled", "True")
        index = int(node.rsplit("-", 1)[1])
        self.ip = f"10.244.{index}.{w.rng.randrange(2, 250)}"
        self.obj["status"].update(
            hostIP=f"10.0.0.{10 + index}",
            hostIPs=[{"ip": f"10.0.0.{10 + index}"}],
            phase="Running",
            podIP=self.ip,
            podIPs=[{"ip": self.ip}],
            startTime=ts(since),
        )
        self._condition("PodReadyToStartContainers", "True")
        self._condition("Initialized", "True")
        self.world.now = since + timedelta(seconds=4)
        self.container_id = f"containerd://{w.hexdigits(64)}"
        cs = {
            "containerID": self.container_id,
            "image": self.app.image,
            "imageID": f"{self.app.image.rsplit(':', 1)[0]}@sha256:{self._digest()}",
            "lastState": {},
            "name": "app",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": ts(self.world.now)}},
        }
        self.obj["status"]["containerStatuses"] = [cs]
        self._ready(True)
        managed(self.obj, "kubelet", self.world.now, {"f:status": {}}, subresource="status")
        self.obj["metadata"]["resourceVersion"] = str(47_000_000 + w.rng.randrange(900_000))
        self.world.now = now

    # -- references
    def ref(self, field_path: bool = True) -> Json:
        ref: Json = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": self.name,
            "namespace": self.namespace,
            "resourceVersion": self.obj["metadata"]["resourceVersion"],
            "uid": self.obj["metadata"]["uid"],
        }
        if field_path:
            ref["fieldPath"] = "spec.containers{app}"
        return ref

    @property
    def uid(self) -> str:
        return str(self.obj["metadata"]["uid"])

    @property
    def formatted(self) -> str:
        """kubelet's format.Pod: name_namespace(uid)."""
        return f"{self.name}_{self.namespace}({self.uid})"

    def kubelet(self) -> Recorder:
        return self.world.recorder("kubelet", self.node)

    def event(self, type_: str, reason: str, message: str, container: bool = True) -> None:
        self.kubelet().event(self.ref(field_path=container), type_, reason, message)

    # -- the scheduler
    def bind(self, node: str) -> None:
        w = self.world
        self.node = node
        self.obj["spec"]["nodeName"] = node
        self._condition("PodScheduled", "True")
        w.write(self.obj)
        scheduled_event(w, self)

    # -- kubelet: status as the status manager writes it
    def _condition(self, type_: str, status: str, reason: str = "", message: str = "") -> None:
        conditions = self.obj["status"].setdefault("conditions", [])
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"]
        order += ["PodScheduled", "DisruptionTarget"]
        found = next((c for c in conditions if c["type"] == type_), None)
        if found is None:
            found = {"lastProbeTime": None, "type": type_}
            conditions.append(found)
            conditions.sort(key=lambda c: order.index(c["type"]))
        if found.get("status") != status:
            found["lastTransitionTime"] = ts(self.world.now)
        found["status"] = status
        for key, value in (("reason", reason), ("message", message)):
            if value:
                found[key] = value
            else:
                found.pop(key, None)

    def _ready(self, ready: bool) -> None:
        unready = "containers with unready status: [app]"
        for type_ in ("Ready", "ContainersReady"):
            if ready:
                self._condition(type_, "True")
            else:
                self._condition(type_, "False", "ContainersNotReady", unready)

    def _status(self, state: Json, ready: bool, last: Json | None = None) -> None:
        """The status manager writes a status only when it changed."""
        status = self.obj["status"]
        before = copy.deepcopy(status)
        cs: Json = {
            "containerID": self.container_id,
            "image": self.app.image,
            "imageID": f"{self.app.image.rsplit(':', 1)[0]}@sha256:{self._digest()}",
            "lastState": last if last is not None else self._last(),
            "name": "app",
            "ready": ready,
            "restartCount": self.restarts,
            "started": "running" in state,
            "state": state,
        }
        if not self.container_id:
            del cs["containerID"]
            cs["imageID"] = ""
        status["containerStatuses"] = [cs]
        self._ready(ready)
        if status != before:
            self.write_status()

    def write_status(self) -> None:
        managed(self.obj, "kubelet", self.world.now, {"f:status": {}}, subresource="status")
        self.world.write(self.obj)

    def _last(self) -> Json:
        old = self.obj["status"].get("containerStatuses")
        return dict(old[0]["lastState"]) if old else {}

    def _digest(self) -> str:
        return uuid.uuid5(_UID_NAMESPACE, self.app.image).hex * 2

    def sandbox(self) -> None:
        """kubelet admits the pod: sandbox, IPs, ContainerCreating."""
        w = self.world
        node_index = int(self.node.rsplit("-", 1)[1])
        self.ip = f"10.244.{node_index}.{w.rng.randrange(2, 250)}"
        status = self.obj["status"]
        status.update(
            hostIP=f"10.0.0.{10 + node_index}",
            hostIPs=[{"ip": f"10.0.0.{10 + node_index}"}],
            podIP=self.ip,
            podIPs=[{"ip": self.ip}],
            startTime=ts(w.now),
        )
        self._condition("PodReadyToStartContainers", "True")
        self._condition("Initialized", "True")
        self._status({"waiting": {"reason": "ContainerCreating"}}, ready=False)

    def started(self, ready: bool, restart: Json | None = None) -> None:
        """A container starts (after a pull, or a restart after ``restart``)."""
        self.event("Normal", "Created", "Created container: app")
        self.event("Normal", "Started", "Started container app")
        self.container_id = f"containerd://{self.world.hexdigits(64)}"
        self.obj["status"]["phase"] = "Running"
        state = {"running": {"startedAt": ts(self.world.now)}}
        self._status(state, ready=ready, last=restart)

    def waiting(self, reason: str, message: str) -> None:
        self._status({"waiting": {"message": message, "reason": reason}}, ready=False)

    def terminated(self, state: Json) -> None:
        self._status(state, ready=False)

    def crash_waiting(self, last: Json, backoff: float) -> None:
        message = (
            f"back-off {go_duration(backoff)} restarting failed container=app pod={self.formatted}"
        )
        state = {"waiting": {"message": message, "reason": "CrashLoopBackOff"}}
        self._status(state, ready=False, last=last)

    def present(self) -> None:
        self.event(
            "Normal", "Pulled", f'Container image "{self.app.image}" already present on machine'
        )

    def exited(self, reason: str, code: int, started_at: str) -> Json:
        return {
            "terminated": {
                "containerID": self.container_id,
                "exitCode": code,
                "finishedAt": ts(self.world.now),
                "reason": reason,
                "startedAt": started_at,
            }
        }

    def running_since(self) -> str:
        return str(self.obj["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])

    def set_ready(self, ready: bool) -> None:
        cs = self.obj["status"]["containerStatuses"][0]
        self._status(cs["state"], ready=ready, last=cs["lastState"])

    # -- controllers acting on the pod
    def not_ready_by_node_controller(self) -> None:
        """MarkPodsNotReady: only the Ready condition's status flips (no reason is set)."""
        for cond in self.obj["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["status"] = "False"
                cond["lastTransitionTime"] = ts(self.world.now)
        self._controller_status()

    def disrupted(self, reason: str, message: str) -> None:
        self._condition("DisruptionTarget", "True", reason, message)
        self._controller_status()

    def _controller_status(self) -> None:
        fields = {"f:status": {}}
        managed(self.obj, "kube-controller-manager", self.world.now, fields, subresource="status")
        self.world.write(self.obj)

    def deleting(self, grace: int = 30) -> None:
        meta = self.obj["metadata"]
        meta["deletionTimestamp"] = ts(self.world.now + timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        self.world.write(self.obj)

    def replaced(self, nodes: list[str]) -> Process:
        """Its ReplicaSet makes a replacement on a healthy node (a StatefulSet waits for the
        old pod to be gone, which it never is on an unreachable node; a DaemonSet's pod is
        not evicted)."""
        w, owner = self.world, self.app
        if owner.kind != "Deployment":
            return
        yield w.jitter(0.05, 2)
        pod = create_pod(w, owner, len(owner.pods), w.rng.choice(nodes))
        w.spawn(pull_and_start(pod, present=True))

    def pending_volumes(self) -> None:
        """kubelet admitted the pod but waits for its volumes: no sandbox yet."""
        node_index = int(self.node.rsplit("-", 1)[1])
        self.obj["status"].update(
            hostIP=f"10.0.0.{10 + node_index}",
            hostIPs=[{"ip": f"10.0.0.{10 + node_index}"}],
            startTime=ts(self.world.now),
        )
        self._condition("PodReadyToStartContainers", "False")
        self._condition("Initialized", "True")
        self._status({"waiting": {"reason": "ContainerCreating"}}, ready=False)


def _token_volume(name: str) -> Json:
    return {
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        "name": "kube-root-ca.crt",
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "fieldRef": {
                                    "apiVersion": "v1",
                                    "fieldPath": "metadata.namespace",
                                },
                                "path": "namespace",
                            }
                        ]
                    }
                },
            ],
        },
    }


def pod_name(world: World, owner: App, index: int) -> str:
    if owner.kind == "StatefulSet":
        return f"{owner.name}-{index}"
    return f"{owner.owner_name}-{world.suffix(5)}"


def controller_event(  # noqa: PLR0917 - an Event's parts, in the recorder's order
    world: World, component: str, involved: Json, type_: str, reason: str, message: str
) -> None:
    world.recorder(component).event(involved, type_, reason, message)


def owner_ref(world: World, owner: App, kind: str = "") -> Json:
    kind = kind or owner.owner_kind
    name = owner.name if kind in ("Deployment", "StatefulSet", "DaemonSet") else owner.owner_name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name,
        "namespace": owner.namespace,
        "resourceVersion": str(48_000_000 + world.rng.randrange(200_000)),
        "uid": world.uid(kind, owner.namespace, name),
    }


def create_pod(world: World, owner: App, index: int, node: str) -> Pod:
    """The workload's controller creates a pod (and says so), the scheduler binds it."""
    name = pod_name(world, owner, index)
    pod = Pod(world, owner, name)
    if owner.kind == "StatefulSet":
        message = f"create Pod {name} in StatefulSet {owner.name} successful"
        controller_event(
            world,
            "statefulset-controller",
            owner_ref(world, owner),
            "Normal",
            "SuccessfulCreate",
            message,
        )
    else:
        component = (
            "replicaset-controller" if owner.kind == "Deployment" else "daemonset-controller"
        )
        controller_event(
            world,
            component,
            owner_ref(world, owner),
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {name}",
        )
    pod.bind(node)
    return pod


# ---- kubelet at work ------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for whole seconds (10s, 1m20s, 5m0s)."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    return f"{whole // 60}m{whole % 60}s"


def pull_and_start(
    pod: Pod,
    pull_error: Callable[[datetime], str | None] | None = None,
    present: bool = False,
    ready: bool = True,
    size: int = 48_213_337,
) -> Process:
    """kubelet starts a new pod: sandbox, the image (pulled with back-off while it fails), the
    container. Status is written when it changes; the pod worker syncs every 10-15 s while
    the image is in back-off."""
    w, image = pod.world, pod.app.image
    yield w.jitter(0.6)
    pod.sandbox()
    yield w.jitter(0.4)
    if present:
        pod.present()
    backoff, until = 0.0, None
    while not present:
        if until is not None and w.now < until:
            pod.event("Normal", "BackOff", f'Back-off pulling image "{image}"')
            pod.event("Warning", "Failed", "Error: ImagePullBackOff")
            pod.waiting("ImagePullBackOff", f'Back-off pulling image "{image}"')
        else:
            pod.event("Normal", "Pulling", f'Pulling image "{image}"')
            took = w.jitter(0.4, 2) if pull_error else w.jitter(1.8, 1)
            yield took
            error = pull_error(w.now) if pull_error else None
            if error is None:
                pod.event(
                    "Normal",
                    "Pulled",
                    f'Successfully pulled image "{image}" in {took:.3f}s ({took:.3f}s '
                    f"including waiting). Image size: {size} bytes.",
                )
                break
            pod.event("Warning", "Failed", f'Failed to pull image "{image}": {error}')
            pod.event("Warning", "Failed", "Error: ErrImagePull")
            pod.waiting("ErrImagePull", error)
            backoff = 10.0 if not backoff else min(backoff * 2, 300.0)
            until = w.now + timedelta(seconds=backoff)
        yield w.jitter(10)
    yield w.jitter(0.3)
    pod.started(ready=ready)


def crash_loop(
    pod: Pod, dies: Callable[[], Process], reason: str, code: int, until: float
) -> Process:
    """A container that dies (``dies`` runs from each start to the death), and kubelet's
    restart back-off: the first restart at once, then 10 s doubling to 5 minutes. At each
    death kubelet writes the terminated state; in back-off it records BackOff on every sync
    (every 10-15 s), and from the second sync the pod shows the CrashLoopBackOff waiting state."""
    w = pod.world
    backoff = 0.0
    end = w.at(until)
    while w.now < end:
        started_at = pod.running_since()
        yield from dies()
        last = pod.exited(reason, code, started_at)
        yield w.jitter(0.5, 1)  # PLEG notices
        pod.terminated(last)
        finished = w.now
        if backoff:
            message = f"Back-off restarting failed container app in pod {pod.formatted}"
            pod.event("Warning", "BackOff", message)
            while True:
                yield w.jitter(10)
                if w.now >= end:
                    return
                if (w.now - finished).total_seconds() >= backoff:
                    break
                pod.crash_waiting(last, backoff)
                pod.event("Warning", "BackOff", message)
        backoff = 10.0 if not backoff else min(backoff * 2, 300.0)
        pod.restarts += 1
        pod.present()
        pod.started(ready=pod.app.readiness is None, restart=last)


def runs_for(seconds: float) -> Callable[[], Process]:
    def dies() -> Process:
        yield seconds

    return dies


def readiness_warmup(pod: Pod, failures: list[str]) -> Process:
    """A readiness probe (initialDelaySeconds 5, periodSeconds 5) failing while the app warms
    up, then passing: the pod turns Ready."""
    yield 5.0
    for message in failures:
        pod.event("Warning", "Unhealthy", f"Readiness probe failed: {message}")
        yield 5.0
    pod.set_ready(True)


def liveness_hang(pod: Pod, healthy_for: float) -> Process:
    """The app hangs ``healthy_for`` seconds after it starts; the liveness probe
    (periodSeconds 10, failureThreshold 3, timeout 1 s) fails three times, kubelet kills the
    container, and the hung process ignores SIGTERM until the 30 s grace period ends."""
    w = pod.world
    yield healthy_for
    timeout = (
        f'Get "http://{pod.ip}:8080/healthz": context deadline exceeded '
        "(Client.Timeout exceeded while awaiting headers)"
    )
    for _ in range(3):
        yield w.jitter(10, 0.05)
        pod.event("Warning", "Unhealthy", f"Liveness probe failed: {timeout}")
    pod.event("Normal", "Killing", "Container app failed liveness probe, will be restarted")
    yield 30.0


def terminate(pod: Pod, grace: float = 30.0, exit_after: float = 1.5) -> Process:
    """A graceful delete: deletionTimestamp, kubelet stops the container, the pod is gone."""
    w = pod.world
    meta = pod.obj["metadata"]
    meta["deletionTimestamp"] = ts(w.now + timedelta(seconds=grace))
    meta["deletionGracePeriodSeconds"] = int(grace)
    w.write(pod.obj)
    yield w.jitter(0.3)
    pod.event("Normal", "Killing", "Stopping container app")
    yield exit_after
    last = pod.exited("Completed", 0, pod.running_since())
    pod.obj["status"]["phase"] = "Succeeded"
    pod.terminated(last)
    yield w.jitter(0.5)
    w.write(pod.obj, "delete")


# ---- nodes and the controllers that act on them -------------------------------------------


class Node:
    """A Node whose kubelet has been posting status (nothing of it is in the recording yet)."""

    CONDITIONS = (
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    )

    def __init__(self, world: World, name: str) -> None:
        self.world, self.name = world, name
        self.elsewhere = [n for n in ("worker-1", "worker-2", "worker-4", "worker-5") if n != name]
        index = int(name.rsplit("-", 1)[1])
        born, beat = world.now - timedelta(days=41), world.now - timedelta(seconds=8)
        self.obj: Json = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "creationTimestamp": ts(born),
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "node.kubernetes.io/instance-type": "m6i.2xlarge",
                    "topology.kubernetes.io/zone": "eu-west-1b",
                },
                "name": name,
                "resourceVersion": str(47_500_000 + world.rng.randrange(400_000)),
                "uid": world.uid("node", name),
            },
            "spec": {
                "podCIDR": f"10.244.{index}.0/24",
                "podCIDRs": [f"10.244.{index}.0/24"],
                "providerID": f"aws:///eu-west-1b/i-0{world.hexdigits(16)}",
            },
            "status": {
                "addresses": [
                    {"address": f"10.0.0.{10 + index}", "type": "InternalIP"},
                    {"address": name, "type": "Hostname"},
                ],
                "allocatable": {"cpu": "7910m", "memory": "31893512Ki", "pods": "58"},
                "capacity": {"cpu": "8", "memory": "32610312Ki", "pods": "58"},
                "conditions": [
                    {
                        "lastHeartbeatTime": ts(beat),
                        "lastTransitionTime": ts(born),
                        "message": message,
                        "reason": reason,
                        "status": status,
                        "type": type_,
                    }
                    for type_, status, reason, message in self.CONDITIONS
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "containerRuntimeVersion": "containerd://2.0.5",
                    "kernelVersion": "6.1.132-147.221.amzn2023.x86_64",
                    "kubeProxyVersion": "",
                    "kubeletVersion": "v1.33.1",
                    "operatingSystem": "linux",
                    "osImage": "Amazon Linux 2023.7.20250512",
                },
            },
        }
        managed(self.obj, "kubelet", beat, {"f:status": {}}, subresource="status")

    def ref(self) -> Json:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "name": self.name,
            "uid": self.obj["metadata"]["uid"],
        }

    def stops_reporting(self, pods: list[Pod], grace: float = 50.0) -> Process:
        """The node lifecycle controller, then the taint-eviction controller, on a node whose
        kubelet went silent: after the grace period (50 s, Kubernetes 1.32+) the conditions
        go Unknown, the node and its pods are marked, the unreachable taints go on; pods that
        tolerate the NoExecute taint for 300 s are deleted 300 s later."""
        w = self.world
        yield grace + w.jitter(2.5, 1)
        for cond in self.obj["status"]["conditions"]:
            cond.update(
                lastTransitionTime=ts(w.now),
                message="Kubelet stopped posting node status.",
                reason="NodeStatusUnknown",
                status="Unknown",
            )
        managed(self.obj, "kube-controller-manager", w.now, {"f:status": {}}, subresource="status")
        w.write(self.obj)
        controller = w.recorder("node-controller")
        controller.event(
            self.ref(), "Normal", "NodeNotReady", f"Node {self.name} status is now: NodeNotReady"
        )
        for pod in pods:
            yield w.jitter(0.02, 2)
            pod.not_ready_by_node_controller()
            controller.event(
                pod.ref(field_path=False), "Warning", "NodeNotReady", "Node is not ready"
            )
        yield w.jitter(0.1)
        taints: list[Json] = [{"effect": "NoSchedule", "key": "node.kubernetes.io/unreachable"}]
        self.obj["spec"]["taints"] = taints
        managed(self.obj, "kube-controller-manager", w.now, {"f:spec": {"f:taints": {}}})
        w.write(self.obj)
        yield w.jitter(0.1)
        taints.append(
            {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "timeAdded": ts(w.now)}
        )
        w.write(self.obj)
        yield 300.0 + w.jitter(0.05, 4)
        evictor = w.recorder("taint-eviction-controller")
        for pod in pods:
            if pod.app.kind == "DaemonSet":
                continue  # DaemonSet pods tolerate the taint for ever
            yield w.jitter(0.01, 2)
            ref = {
                k: v
                for k, v in pod.ref(field_path=False).items()
                if k in ("apiVersion", "kind", "name", "namespace")
            }
            evictor.event(
                ref,
                "Normal",
                "TaintManagerEviction",
                f"Marking for deletion Pod {pod.namespace}/{pod.name}",
            )
            pod.disrupted(
                "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"
            )
            pod.deleting()
            yield from pod.replaced(self.elsewhere)


# ---- the storms -----------------------------------------------------------------------------

BUILTIN_TYPES = (
    "oom-kill",
    "pod-restart",
    "probe-failed",
    "image-pull-failed",
    "pod-pending",
    "failed-mount",
    "evicted",
    "job-failed",
    "node-not-ready",
)
PROMPT = (
    "{{.EventType}} in namespace {{.Namespace}}: {{.ResourceName}} ({{.Reason}}).\n"
    "{{.Message}}\n"
    "Find the root cause and propose a fix.\n"
)
AGENT = {"name": "k8s-agent", "namespace": "kagent"}
BEFORE_COMMIT = "e6fa9e1"  # khook before incidents: one session per signal and cooldown
WORKERS = ["worker-1", "worker-2", "worker-3", "worker-4", "worker-5"]


def tenant_hook(namespace: str, types: tuple[str, ...] = BUILTIN_TYPES, **config: Any) -> Json:
    """The corpus's setup: one Hook per tenant listing every built-in type."""
    return {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": "incidents", "namespace": namespace},
        "spec": {
            "eventConfigurations": [
                {"eventType": t, "agentRef": dict(AGENT), **config, "prompt": PROMPT} for t in types
            ]
        },
    }


def control_hook() -> Json:
    """The platform team's Hook in the control namespace: Nodes, and every namespace."""
    return {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": "cluster-incidents", "namespace": "khook-system"},
        "spec": {
            "selector": {"namespaces": ["*"]},
            "eventConfigurations": [
                {"eventType": "node-not-ready", "agentRef": dict(AGENT), "prompt": PROMPT}
            ],
        },
    }


@dataclass
class Storm:
    name: str
    summary: str  # its line in sources/storms/README.md
    world: World
    hooks: list[Json]
    expected: Json
    rules: Json | None = None
    snapshot: Json | None = None  # played from a kubectl List instead of events.jsonl


def session(hook: str, cause: str, group: str) -> Json:
    entry: Json = {"hook": hook}
    if cause:
        entry["cause"] = cause
    entry["group"] = group
    return entry


def expected(
    title: str,
    sessions: list[Json],
    *,
    followups: tuple[int, int],
    held: tuple[int, int | None] = (0, None),
    measured: int,
    reported: int | None = None,
    why: str = "",
) -> Json:
    """``measured``: the sessions `khook replay` counted on this storm with khook as it was
    before incidents (commit e6fa9e1); ``reported``: what was reported from a live cluster."""
    doc: Json = {"title": title}
    if why:
        doc["why"] = why
    doc["sessions"] = sessions
    doc["followups"] = {"min": followups[0], "max": followups[1]}
    doc["followupEvery"] = "5m"
    doc["held"] = {"min": held[0]} if held[1] is None else {"min": held[0], "max": held[1]}
    before: Json = {"measured": measured, "commit": BEFORE_COMMIT}
    if reported is not None:
        before["reported"] = reported
    doc["before"] = before
    return doc


def image_error(image: str, kind: str) -> str:
    """containerd's pull errors as kubelet reports them."""
    host, _, rest = image.partition("/")
    path, _, tag = rest.rpartition(":")
    if kind == "429":
        return (
            f'rpc error: code = Unknown desc = failed to pull and unpack image "{image}": '
            f'failed to resolve reference "{image}": unexpected status from HEAD request to '
            f"https://{host}/v2/{path}/manifests/{tag}: 429 Too Many Requests"
        )
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": '
        f'failed to resolve reference "{image}": {image}: not found'
    )


def deployment_event(world: World, owner: App, message: str) -> None:
    controller_event(
        world,
        "deployment-controller",
        owner_ref(world, owner, "Deployment"),
        "Normal",
        "ScalingReplicaSet",
        message,
    )


def fresh_install(
    world: World, owner: App, nodes: list[str], start: Callable[[Pod], Process]
) -> Process:
    """A new Deployment: its ReplicaSet creates every replica at once."""
    deployment_event(
        world, owner, f"Scaled up replica set {owner.owner_name} from 0 to {owner.replicas}"
    )
    yield world.jitter(0.05, 2)
    for index in range(owner.replicas):
        pod = create_pod(world, owner, index, nodes[index % len(nodes)])
        world.spawn(start(pod))
        yield world.jitter(0.02, 2)


def rolling_update(
    world: World, old: App, new: App, start: Callable[[Pod], Process], wait_ready: bool = True
) -> Process:
    """maxSurge 1, maxUnavailable 0: one new pod at a time; an old pod goes when it is Ready."""
    replicas = len(old.pods)
    for index in range(replicas):
        deployment_event(
            world, new, f"Scaled up replica set {new.owner_name} from {index} to {index + 1}"
        )
        yield world.jitter(0.05, 2)
        pod = create_pod(world, new, index, old.pods[index].node)
        yield from start(pod)
        if not wait_ready:
            return  # the rollout waits for a pod that never becomes Ready
        yield world.jitter(0.3, 1)
        left = replicas - index
        deployment_event(
            world, new, f"Scaled down replica set {old.owner_name} from {left} to {left - 1}"
        )
        victim = old.pods[index]
        controller_event(
            world,
            "replicaset-controller",
            owner_ref(world, old),
            "Normal",
            "SuccessfulDelete",
            f"Deleted pod: {victim.name}",
        )
        world.spawn(terminate(victim))
        yield world.jitter(0.2, 1)


def existing(world: World, owner: App, nodes: list[str], age_days: float = 3.0) -> App:
    for index in range(owner.replicas):
        name = pod_name(world, owner, index)
        Pod(world, owner, name, nodes[index % len(nodes)], existing=age_days * 86400 + index * 7)
    return owner


def registry_429() -> Storm:
    w = World("registry-429")
    recovered = w.at(150)
    services = ["cart", "catalog", "checkout", "orders", "payments", "search", "users", "web"]

    def start(pod: Pod) -> Process:
        def error(now: datetime) -> str | None:
            return None if now >= recovered else image_error(pod.app.image, "429")

        return pull_and_start(pod, pull_error=error)

    for i, name in enumerate(services):
        owner = app(w, "Deployment", name, "team-a", f"{REGISTRY}/shop/{name}:1.4.2")
        w.spawn(fresh_install(w, owner, WORKERS[i % 5 :] + WORKERS[: i % 5], start), i * 0.4)
    w.run(240)
    return Storm(
        "registry-429",
        "8 new Deployments x 3 pods pull from registry.example.com, which answers "
        "`429 Too Many Requests` for 2.5 minutes: 24 pods in ErrImagePull/ImagePullBackOff, "
        "then all start. One cause: the registry.",
        w,
        [tenant_hook("team-a")],
        expected(
            "The registry answers 429 while 8 Deployments x 3 pods roll out",
            [session("team-a/incidents", "image-pull-failed", f"Registry/{REGISTRY}/*")],
            followups=(1, 3),
            reported=32,
            measured=32,
            why="One transient cause (HTTP 429) on one registry host: one incident for the "
            "Hook, naming the registry and the 8 workloads; new workloads joining it and its "
            "resolution (all 24 pods running at about 3 minutes) are follow-ups, at most one per 5 "
            "minutes and the resolution.",
        ),
    )


def oom_crashloop() -> Storm:
    w = World("oom-crashloop")
    owner = app(
        w, "Deployment", "ledger", "team-a", f"{REGISTRY}/finance/ledger:3.2.0", memory="128Mi"
    )

    def start(pod: Pod) -> Process:
        yield from pull_and_start(pod, present=True)
        yield from crash_loop(pod, runs_for(w.jitter(5.5, 0.4)), "OOMKilled", 137, until=240)

    w.spawn(fresh_install(w, owner, WORKERS[:3], start))
    w.run(240)
    return Storm(
        "oom-crashloop",
        "A new 3-replica Deployment whose JVM needs more than its 128Mi limit: every "
        "container is OOM-killed ~6 s after it starts, and the pods crash-loop "
        "(CrashLoopBackOff, BackOff events) for 4 minutes.",
        w,
        [tenant_hook("team-a")],
        expected(
            "One 3-replica Deployment is OOM-killed at start and crash-loops",
            [session("team-a/incidents", "oom-kill", "Deployment/ledger")],
            followups=(0, 2),
            reported=5,
            measured=5,
            why="The OOM kill explains the restarts (cause precedence oom-kill > pod-restart): "
            "one session under oom-kill for the Deployment; restarts and BackOff are counted "
            "in it.",
        ),
    )


def rollout_warmup() -> Storm:
    w = World("rollout-warmup")
    probe = {
        "failureThreshold": 3,
        "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
        "initialDelaySeconds": 5,
        "periodSeconds": 5,
        "successThreshold": 1,
        "timeoutSeconds": 1,
    }
    old = existing(
        w,
        app(w, "Deployment", "api", "team-a", f"{REGISTRY}/shop/api:2.7.0", readiness=probe),
        WORKERS[:3],
    )
    new = app(w, "Deployment", "api", "team-a", f"{REGISTRY}/shop/api:2.8.0", readiness=probe)
    warmups = iter(
        [
            ["connection refused"],
            ["connection refused", "HTTP probe failed with statuscode: 503"],
            ["connection refused"],
        ]
    )

    def start(pod: Pod) -> Process:
        yield from pull_and_start(pod, ready=False)
        refused = (
            f'Get "http://{pod.ip}:8080/ready": dial tcp {pod.ip}:8080: connect: connection refused'
        )
        failures = [refused if f == "connection refused" else f for f in next(warmups)]
        yield from readiness_warmup(pod, failures)

    w.spawn(rolling_update(w, old, new, start))
    w.run(150)
    return Storm(
        "rollout-warmup",
        "A rolling update (maxSurge 1, maxUnavailable 0) of a 3-replica Deployment whose new "
        "pods fail their readiness probe once or twice while they warm up, then turn Ready: "
        "one new pod warms at a time.",
        w,
        [tenant_hook("team-a")],
        expected(
            "A rollout whose new pods fail readiness once or twice while warming up",
            [],
            followups=(0, 0),
            reported=3,
            measured=3,
            held=(1, 3),
            why="It healed by itself: each pod failed at most twice, never three pods at once, "
            "for seconds; the holds end when the pods turn Ready and nobody is paged.",
        ),
    )


def crashloop_45s() -> Storm:
    w = World("crashloop-45s")
    owner = app(w, "Deployment", "worker", "team-a", f"{REGISTRY}/shop/worker:5.0.1", replicas=1)

    def start(pod: Pod) -> Process:
        yield from pull_and_start(pod, present=True)
        yield from crash_loop(pod, runs_for(1.2), "Error", 1, until=45)

    w.spawn(fresh_install(w, owner, ["worker-2"], start))
    w.run(45)
    return Storm(
        "crashloop-45s",
        "One pod that exits with code 1 a second after each start, crash-looping for 45 s "
        "(back-off 10 s, 20 s, 40 s; BackOff re-recorded on every pod sync) under a Hook "
        "whose cooldown is 10 s.",
        w,
        [tenant_hook("team-a", cooldown="10s")],
        expected(
            "One pod crash-loops for 45 s under a 10 s cooldown",
            [session("team-a/incidents", "pod-restart", "Deployment/worker")],
            followups=(0, 2),
            reported=8,
            measured=4,
            why="The same problem, still going: the window slides with each sighting, so a "
            "10 s cooldown does not reopen it while BackOff keeps coming.",
        ),
    )


def node_lost() -> Storm:
    w = World("node-lost")
    node = Node(w, "worker-3")
    here = ["worker-3"]
    pods: list[Pod] = []
    layout = [
        ("team-a", "Deployment", "web", 2),
        ("team-a", "Deployment", "api", 2),
        ("team-a", "Deployment", "cart", 2),
        ("team-a", "Deployment", "search", 1),
        ("team-a", "StatefulSet", "redis", 1),
        ("team-b", "Deployment", "ingest", 2),
        ("team-b", "Deployment", "report", 2),
        ("team-b", "Deployment", "billing", 2),
        ("team-b", "Deployment", "etl", 2),
        ("monitoring", "DaemonSet", "node-exporter", 1),
        ("monitoring", "DaemonSet", "fluent-bit", 1),
    ]
    for namespace, kind, name, count in layout:
        owner = app(
            w, kind, name, namespace, f"{REGISTRY}/{namespace}/{name}:1.0.0", replicas=count
        )
        for index in range(count):
            pod_index = index + (1 if kind == "StatefulSet" else 0)
            pods.append(
                Pod(
                    w,
                    owner,
                    pod_name(w, owner, pod_index),
                    here[0],
                    existing=2 * 86400 + len(pods) * 11,
                )
            )
    assert len(pods) == 18
    w.spawn(node.stops_reporting(pods))
    w.run(420)
    return Storm(
        "node-lost",
        "worker-3 stops reporting: after 50 s the node controller marks it NotReady "
        "(conditions Unknown), its 18 pods Ready=False with a NodeNotReady event each, and "
        "taints it; 300 s later the taint-eviction controller deletes the 16 evictable pods "
        "and their ReplicaSets start replacements elsewhere.",
        w,
        [tenant_hook("team-a"), tenant_hook("team-b"), control_hook()],
        expected(
            "A node stops reporting; its 18 pods get NodeNotReady",
            [session("khook-system/cluster-incidents", "node-not-ready", "Node/worker-3")],
            followups=(0, 2),
            reported=1,
            measured=1,
            why="One node, one incident for the platform Hook that sees the node; the pods' "
            "NodeNotReady, Ready=False and taint evictions join it and open nothing per "
            "workload (the tenants' Hooks cannot see the node).",
        ),
    )


def bad_tag() -> Storm:
    w = World("bad-tag")
    stuck = "checkout"
    for i, name in enumerate(["cart", "catalog", "checkout", "search", "users"]):
        nodes = WORKERS[i % 5 :] + WORKERS[: i % 5]
        old = existing(
            w, app(w, "Deployment", name, "team-a", f"{REGISTRY}/shop/{name}:2.4.1"), nodes
        )
        tag = "v2.503" if name == stuck else "2.5.0"
        new = app(w, "Deployment", name, "team-a", f"{REGISTRY}/shop/{name}:{tag}")

        def start(pod: Pod) -> Process:
            if pod.app.name != stuck:
                return pull_and_start(pod)
            return pull_and_start(pod, pull_error=lambda _: image_error(pod.app.image, "not found"))

        w.spawn(rolling_update(w, old, new, start, wait_ready=name != stuck), i * 1.5)
    w.run(300)
    return Storm(
        "bad-tag",
        "A release rolls 5 Deployments to new tags; 4 roll out cleanly, checkout's new tag "
        "`v2.503` does not exist (`not found`), so its new pod stays in "
        "ErrImagePull/ImagePullBackOff and its rollout stalls.",
        w,
        [tenant_hook("team-a")],
        expected(
            "A bad tag in one Deployment among healthy ones",
            [session("team-a/incidents", "image-pull-failed", "Deployment/checkout")],
            followups=(0, 1),
            measured=2,
            why="A terminal pull error (not found) stays per workload and fires at once; the "
            "tag's digits (503) are part of the quoted image reference, not an HTTP status.",
        ),
    )


def quota_exhausted() -> Storm:
    w = World("quota-exhausted")
    for i, name in enumerate(["ingest", "report", "etl"]):
        owner = app(w, "Deployment", name, "team-b", f"{REGISTRY}/data/{name}:7.1.0", cpu="500m")
        w.spawn(quota_rejections(w, owner, until=360), i * 2.2)
    w.run(360)
    rules = {
        "rules": [
            {
                "eventType": "quota-exceeded",
                "source": "event",
                "involvedKinds": ["ReplicaSet"],
                "types": ["Warning"],
                "reasons": ["FailedCreate"],
                "message": "exceeded quota",
            }
        ]
    }
    return Storm(
        "quota-exhausted",
        "team-b's ResourceQuota `compute` (requests.cpu 4, 3800m used) is exhausted while 3 "
        "Deployments roll out: each new ReplicaSet's pod creation is forbidden (FailedCreate, "
        "retried with the controller's back-off), with a rules file defining `quota-exceeded`.",
        w,
        [tenant_hook("team-b", (*BUILTIN_TYPES, "quota-exceeded"))],
        expected(
            "A namespace quota exhausted across Deployments",
            [session("team-b/incidents", "quota-exceeded", "ResourceQuota/compute")],
            followups=(0, 2),
            measured=3,
            why="One shared cause named in the message (exceeded quota: compute): one incident "
            "for the three ReplicaSets.",
        ),
        rules=rules,
    )


def quota_rejections(world: World, owner: App, until: float) -> Process:
    """Every sync of the new ReplicaSet tries to create a pod and is forbidden; the workqueue
    retries the ReplicaSet with exponential back-off from 5 ms."""
    deployment_event(world, owner, f"Scaled up replica set {owner.owner_name} from 0 to 1")
    message = (
        f'Error creating: pods "{owner.owner_name}-" is forbidden: exceeded quota: compute, '
        "requested: requests.cpu=500m, used: requests.cpu=3800m, limited: requests.cpu=4"
    )
    delay = 0.005
    while world.now < world.at(until):
        yield world.jitter(0.004, 1)
        controller_event(
            world,
            "replicaset-controller",
            owner_ref(world, owner),
            "Warning",
            "FailedCreate",
            message,
        )
        yield delay
        delay = min(delay * 2, 1000.0)


def volume_multiattach() -> Storm:
    w = World("volume-multiattach")
    db = existing(
        w,
        app(
            w,
            "StatefulSet",
            "postgres",
            "team-b",
            f"{REGISTRY}/data/postgres:16.4",
            volume_claim="data",
        ),
        ["worker-1", "worker-2", "worker-3"],
        age_days=12,
    )
    w.spawn(drained(w, db.pods[1], "worker-4", until=480))
    w.run(480)
    return Storm(
        "volume-multiattach",
        "worker-2 is drained; StatefulSet postgres's pod postgres-1 is evicted and recreated on "
        "worker-4, but its ReadWriteOnce volume is still attached to worker-2: a Multi-Attach "
        "FailedAttachVolume, then kubelet's FailedMount every ~2 minutes.",
        w,
        [tenant_hook("team-b")],
        expected(
            "A volume that cannot attach",
            [session("team-b/incidents", "failed-mount", "StatefulSet/postgres")],
            followups=(0, 2),
            measured=1,
            why="FailedAttachVolume and FailedMount are one problem of one pod of one "
            "StatefulSet: one session, at once (failed-mount does not hold).",
        ),
    )


def drained(world: World, victim: Pod, to: str, until: float) -> Process:
    w = world
    victim.disrupted("EvictionByEvictionAPI", "Eviction API: evicting")
    yield from terminate(victim, exit_after=4.2)
    yield w.jitter(0.2, 1)
    owner = victim.app
    pod = Pod(w, owner, victim.name)
    controller_event(
        w,
        "statefulset-controller",
        owner_ref(w, owner),
        "Normal",
        "SuccessfulCreate",
        f"create Pod {victim.name} in StatefulSet {owner.name} successful",
    )
    pod.bind(to)
    yield w.jitter(0.4, 1)
    pv = f"pvc-{w.uid('pv', 'data', victim.name)}"
    attach = w.recorder("attachdetach-controller")
    attach.event(
        pod.ref(field_path=False),
        "Warning",
        "FailedAttachVolume",
        f'Multi-Attach error for volume "{pv}" Volume is already exclusively attached to one '
        "node and can't be attached to another",
    )
    yield w.jitter(0.3, 1)
    pod.pending_volumes()
    while w.now < w.at(until):
        yield 123.0  # WaitForAttachAndMount: 2m3s
        pod.event(
            "Warning",
            "FailedMount",
            "Unable to attach or mount volumes: unmounted volumes=[data], unattached "
            "volumes=[data], failed to process volumes=[]: context deadline exceeded",
            container=False,
        )
        yield w.jitter(10)  # the pod worker's next sync


def liveness_hangs() -> Storm:
    w = World("liveness-hang")
    probe = {
        "failureThreshold": 3,
        "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
        "periodSeconds": 10,
        "successThreshold": 1,
        "timeoutSeconds": 1,
    }
    owner = existing(
        w,
        app(
            w,
            "Deployment",
            "gateway",
            "team-a",
            f"{REGISTRY}/shop/gateway:4.0.3",
            replicas=2,
            liveness=probe,
        ),
        ["worker-1", "worker-4"],
    )
    for i, pod in enumerate(owner.pods):
        first = [5.0 + 14 * i]

        def dies(pod: Pod = pod, first: list[float] = first) -> Process:
            hang_after = first.pop() if first else 40.0
            return liveness_hang(pod, hang_after)

        w.spawn(crash_loop(pod, dies, "Error", 137, until=480))
    w.run(480)
    return Storm(
        "liveness-hang",
        "Both pods of a Deployment hang (a deadlock after ~40 s of uptime): the liveness probe "
        "times out three times, kubelet kills the container (exit 137 after the 30 s grace), "
        "restarts it with back-off, and it hangs again, for 8 minutes.",
        w,
        [tenant_hook("team-a")],
        expected(
            "A liveness probe that really fails",
            [session("team-a/incidents", "", "Deployment/gateway")],
            followups=(0, 3),
            measured=5,
            why="Probe failures, kills and restarts of one Deployment are one incident "
            "(probe-failed < pod-restart < oom-kill): one session, opened under whichever "
            "crosses its threshold first; the escalation is a follow-up.",
        ),
    )


def crashloop_hour() -> Storm:
    w = World("crashloop-hour")
    owner = app(w, "Deployment", "worker", "team-a", f"{REGISTRY}/shop/worker:5.0.1", replicas=1)

    def start(pod: Pod) -> Process:
        yield from pull_and_start(pod, present=True)
        yield from crash_loop(pod, runs_for(1.2), "Error", 1, until=3600)

    w.spawn(fresh_install(w, owner, ["worker-2"], start))
    w.run(3600)
    return Storm(
        "crashloop-hour",
        "The crash loop of crashloop-45s for an hour with the default cooldown: the back-off "
        "reaches its 5-minute cap, so the pod crashes every ~5 minutes, and kubelet's event "
        "spam filter lets about one event write through per 5 minutes.",
        w,
        [tenant_hook("team-a")],
        expected(
            "One pod crash-loops for an hour (back-off capped at 300 s)",
            [session("team-a/incidents", "pod-restart", "Deployment/worker")],
            followups=(1, 13),
            measured=11,
            why="A steady crash loop every 5 minutes stays one incident while the window "
            "slides; the agent hears of it again at most once per 5 minutes (the count "
            "crossing 10, then the next material change).",
        ),
    )


def bad_tag_snapshot(played: Storm) -> Storm:
    """The bad-tag storm as `kubectl get events,pods -A -o json` shows it at its end."""
    latest: dict[tuple[str, str, str], Json] = {}
    for request in played.world.requests:
        body = request["body"]
        meta = body["metadata"]
        key = (body["kind"], meta.get("namespace", ""), meta["name"])
        if request["headers"]["Ce-Type"].endswith(".delete"):
            latest.pop(key, None)
        elif body["kind"] in ("Event", "Pod"):
            latest[key] = body
    items = [latest[k] for k in sorted(latest) if k[0] == "Event"]
    items += [latest[k] for k in sorted(latest) if k[0] == "Pod"]
    return Storm(
        "bad-tag-snapshot",
        "The bad-tag storm as `kubectl get events,pods -A -o json` shows it at its end: each "
        "Event once with its final count, each Pod in its last state.",
        played.world,
        played.hooks,
        {**played.expected, "title": played.expected["title"] + " (kubectl snapshot)"},
        snapshot={
            "apiVersion": "v1",
            "items": items,
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        },
    )


def build() -> list[Storm]:
    storms = [
        registry_429(),
        oom_crashloop(),
        rollout_warmup(),
        crashloop_45s(),
        node_lost(),
        bad_tag(),
        quota_exhausted(),
        volume_multiattach(),
        liveness_hangs(),
        crashloop_hour(),
    ]
    storms.append(bad_tag_snapshot(storms[5]))
    return storms


# ---- the files -----------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as literal blocks."""


def _literal(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _literal)


def _yaml(doc: Any) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def request_line(request: Json) -> str:
    """One recorded request: the headers in the order they were sent, the body as its bytes."""
    headers = json.dumps(request["headers"], separators=(",", ":"))
    return f'{{"headers":{headers},"body":{go_json(request["body"]).decode()}}}\n'


def corpus() -> dict[str, str]:
    """Every file of sources/storms/, by its path there."""
    files: dict[str, str] = {}
    lines = [
        "# Storm corpus\n",
        "\n",
        "Recorded storms for `khook replay` (see its documentation), generated by\n",
        "`python -m tests.support.storms` (tests/support/storms.py explains how each is built\n",
        "and from which Kubernetes behaviour). Each directory holds the requests an\n",
        "ApiServerSource adapter in Resource mode posts (`events.jsonl`, one request per line,\n",
        "headers and body as sent; or `snapshot.json`, a `kubectl get events,pods -A -o json`\n",
        "List), the Hooks it is played against (`hooks.yaml`), the rules it needs\n",
        "(`rules.yaml`) and the sessions a person wants from it (`expected.yaml`).\n",
        "\n",
        "`before` is what khook opened before it had incidents (commit e6fa9e1), measured\n",
        "by `khook replay`; `reported` is what was reported from a live cluster.\n",
        "\n",
        "| storm | what happens | sessions wanted | before | reported |\n",
        "|---|---|---|---|---|\n",
    ]
    for storm in build():
        base = f"{storm.name}/"
        if storm.snapshot is not None:
            files[base + "snapshot.json"] = (
                json.dumps(storm.snapshot, indent=4, sort_keys=True) + "\n"
            )
        else:
            files[base + "events.jsonl"] = "".join(request_line(r) for r in storm.world.requests)
        files[base + "hooks.yaml"] = "---\n".join(_yaml(h) for h in storm.hooks)
        files[base + "expected.yaml"] = _yaml({"storm": storm.name, **storm.expected})
        if storm.rules is not None:
            files[base + "rules.yaml"] = _yaml(storm.rules)
        wanted, before = len(storm.expected["sessions"]), storm.expected["before"]
        lines.append(
            f"| `{storm.name}` | {storm.summary} | {wanted} | {before['measured']} "
            f"| {before.get('reported', '')} |\n"
        )
    files["README.md"] = "".join(lines)
    return files


def write(root: Path = STORMS) -> None:
    for relative, text in corpus().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write()
