"""What keeps a scale-to-zero khook awake, measured: ``python -m tests.support.idle``.

It prints the two tables of the README's "Is it really idle?" (``tests/test_deploy_paths.py``
checks that the README holds exactly what this prints). Each row is a way to route cluster
changes to khook: a sample source manifest as it is in this repository (read from the files,
so a change there changes the figures), or one narrowing of it. For each row:

- **which requests reach khook** is decided the way Knative decides it (knative/eventing,
  ``pkg/adapter/apiserver`` and ``pkg/reconciler/apiserversource``): the ApiServerSource sends
  the kinds in ``spec.resources`` (with their label ``selector``); namespaced kinds only from
  the namespaces its ``namespaceSelector`` selects (no selector: only its own namespace),
  cluster-scoped kinds (Nodes) always; then its experimental ``spec.filters``; on the Broker
  path each Trigger whose ``filters`` pass delivers once. Namespaces carry only the label
  Kubernetes gives every namespace, ``kubernetes.io/metadata.name``.
- **ignored** counts the requests khook's own classifier (``khook.core``: the built-in rules,
  plus the storm's ``rules.yaml``) finds no signal in: khook answers them
  ``X-Khook-Event-Type: none`` and does nothing else. Duplicates of a known incident are not
  counted as ignored, though khook does little with them either.

The inputs:

- **a quiet hour**, simulated with the storm simulator (``tests/support/storms.py``): nothing
  happens in the cluster but what Kubernetes writes when nothing happens, each Node's status
  every 5 minutes (kubelet's ``nodeStatusReportFrequency``; at its next 10 s status check),
  and khook's own pod, started and stopped by Knative's scale-to-zero (defaults of
  ``config-autoscaler``: a replica goes once no request came for the 60 s ``stable-window``
  and then for the 30 s ``scale-to-zero-grace-period``; a request while there is none starts
  one). khook's pod is modelled with one container (a real one has two, khook and
  queue-proxy, so twice the container Events) and its Deployment's and ReplicaSet's Events.
  No CronJob, rollout or controller writes anything, and no event of the hour is an incident.
- **the recorded storms** (``sources/storms/*/events.jsonl``): requests shaped exactly like an
  ApiServerSource's, built by the same simulator from how Kubernetes components behave (not
  captured from a cluster), with their real timing; "per hour" is their total over their
  total duration.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from khook.core import cloudevent
from khook.core.classify import classify, event_types
from khook.core.events import ClusterEvent, decode
from khook.core.rules import RuleTable
from khook.files import builtin_rules, load_rules
from tests.support import storms
from tests.support.storms import (
    App,
    Node,
    Process,
    World,
    controller_event,
    create_pod,
    deployment_event,
    managed,
    owner_ref,
    pull_and_start,
    terminate,
    ts,
)

ROOT = Path(__file__).resolve().parents[2]
Json = dict[str, Any]

HOUR = 3600.0
NODE_REPORT = 300.0  # kubelet's nodeStatusReportFrequency (5m) when nothing changed
NODE_CHECK = 10.0  # kubelet's nodeStatusUpdateFrequency: how often it checks
STABLE_WINDOW = 60.0  # config-autoscaler stable-window
GRACE = 30.0  # config-autoscaler scale-to-zero-grace-period
KHOOK_NAMESPACE = "khook-system"
QUIET_NODES = (1, 5)  # a kind cluster; a small production one
DELETE = "dev.knative.apiserver.resource.delete"


# ---- the filters Knative applies -------------------------------------------------------------


def attributes(headers: dict[str, str]) -> dict[str, str]:
    """A binary-mode request's CloudEvent attributes (``Ce-Kind`` -> ``kind``)."""
    return {k[3:].lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}


def passes(entry: Json, attrs: dict[str, str]) -> bool:
    """One entry of a Subscriptions API ``filters`` list (Trigger, ApiServerSource)."""
    ((dialect, body),) = entry.items()
    if dialect in ("exact", "prefix", "suffix"):
        ((name, value),) = body.items()
        if name not in attrs:
            return False
        have = attrs[name]
        if dialect == "exact":
            return have == value
        return have.startswith(value) if dialect == "prefix" else have.endswith(value)
    if dialect == "all":
        return all(passes(e, attrs) for e in body)
    if dialect == "any":
        return any(passes(e, attrs) for e in body)
    if dialect == "not":
        return not passes(body, attrs)
    raise NotImplementedError(f"filter dialect {dialect!r} is not modelled")


def selects(selector: Json | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector; ``None`` selects everything."""
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


CLUSTER_SCOPED = {"Node", "Namespace"}


@dataclass(frozen=True)
class Route:
    """An ApiServerSource and, on the Broker path, the Triggers between it and khook."""

    name: str
    source: Json
    triggers: tuple[Json, ...] = ()

    def deliveries(self, request: Json) -> int:
        """How many times ``request`` reaches khook (0, or 1 per Trigger that passes it)."""
        headers, body = request["headers"], request["body"]
        attrs = attributes(headers)
        spec = self.source["spec"]
        kind, api_version = attrs.get("kind", ""), attrs.get("apiversion", "")
        labels = (body.get("metadata") or {}).get("labels") or {}
        watched = [
            r
            for r in spec["resources"]
            if r["kind"] == kind
            and r["apiVersion"] == api_version
            and selects(r.get("selector"), labels)
        ]
        if not watched:
            return 0
        if kind not in CLUSTER_SCOPED:
            namespace = attrs.get("namespace", "")
            if "namespaceSelector" in spec:
                ns_labels = {"kubernetes.io/metadata.name": namespace}
                if not selects(spec["namespaceSelector"], ns_labels):
                    return 0
            elif namespace != self.source["metadata"]["namespace"]:
                return 0
        if not all(passes(e, attrs) for e in spec.get("filters") or []):
            return 0
        if not self.triggers:
            return 1
        return sum(all(passes(e, attrs) for e in t["spec"]["filters"]) for t in self.triggers)


def _manifest(relative: str) -> list[Json]:
    return [d for d in yaml.safe_load_all((ROOT / relative).read_text()) if d]


def routes() -> list[Route]:
    (direct,) = _manifest("sources/direct/apiserversource.yaml")
    (broker,) = _manifest("sources/broker/apiserversource.yaml")
    triggers = tuple(_manifest("knative/broker/triggers.yaml"))

    def narrowed(change: Callable[[Json], None]) -> Json:
        source = copy.deepcopy(direct)
        change(source["spec"])
        return source

    def own_namespace_watched(spec: Json) -> None:
        for expression in spec["namespaceSelector"]["matchExpressions"]:
            if expression["operator"] == "NotIn":
                expression["values"].remove(KHOOK_NAMESPACE)

    def no_deletes(spec: Json) -> None:
        spec["filters"] = [{"not": {"exact": {"type": DELETE}}}]

    def without(*kinds: str) -> Callable[[Json], None]:
        def change(spec: Json) -> None:
            spec["resources"] = [r for r in spec["resources"] if r["kind"] not in kinds]

        return change

    return [
        Route("`sources/direct/`", direct),
        Route("`sources/broker/` and its Triggers", broker, triggers),
        Route("`sources/direct/` watching khook-system too", narrowed(own_namespace_watched)),
        Route("`sources/direct/` + `spec.filters`: no deletes", narrowed(no_deletes)),
        Route("`sources/direct/` without `Node`", narrowed(without("Node"))),
        Route("`sources/direct/`, `Event` only", narrowed(without("Node", "Pod"))),
    ]


# ---- what khook makes of a request -----------------------------------------------------------


def signal_types(request: Json, rules: RuleTable) -> tuple[str, ...]:
    """The event types khook's classifier finds in ``request``; () when it would ignore it."""
    body = json.dumps(request["body"]).encode()
    envelope = cloudevent.parse(request["headers"], body)
    decoded = decode(envelope, storms.START)  # the time only matters to a request without one
    if not isinstance(decoded, ClusterEvent):
        return ()
    return tuple(event_types(classify(decoded, rules)))


# ---- a quiet hour ----------------------------------------------------------------------------


@dataclass
class Khook:
    """khook's Knative revision: a pod while requests come, none after 90 s without one."""

    world: QuietWorld
    app: App
    running: bool = False  # a pod is starting or serving (not one that is stopping)
    last: float = 0.0
    up_since: float = 0.0
    awake: float = 0.0
    starts: int = 0

    def request(self) -> None:
        self.last = self.world.clock()
        if not self.running:
            self.running = True
            self.starts += 1
            self.up_since = self.last
            self.world.spawn(self._up())

    def _up(self) -> Process:
        w = self.world
        deployment_event(w, self.app, f"Scaled up replica set {self.app.owner_name} from 0 to 1")
        yield w.jitter(0.05, 2)
        pod = create_pod(w, self.app, len(self.app.pods), "worker-1")
        w.spawn(pull_and_start(pod, present=True))
        while (idle := STABLE_WINDOW + GRACE - (w.clock() - self.last)) > 0:
            yield idle
        self.running = False  # from here a request starts a new pod
        self.awake += w.clock() - self.up_since
        deployment_event(w, self.app, f"Scaled down replica set {self.app.owner_name} from 1 to 0")
        controller_event(
            w,
            "replicaset-controller",
            owner_ref(w, self.app),
            "Normal",
            "SuccessfulDelete",
            f"Deleted pod: {pod.name}",
        )
        w.spawn(terminate(pod, grace=120.0))

    def awake_until(self, end: float) -> float:
        return self.awake + (end - self.up_since if self.running else 0.0)


def node_reports(world: World, node: Node, phase: float, rng: random.Random) -> Process:
    """kubelet posts the Node's status when it changed, or every 5 minutes: new heartbeat
    times in every condition, nothing else."""
    yield phase
    while True:
        for condition in node.obj["status"]["conditions"]:
            condition["lastHeartbeatTime"] = ts(world.now)
        managed(node.obj, "kubelet", world.now, {"f:status": {}}, subresource="status")
        world.write(node.obj)
        yield NODE_REPORT + rng.uniform(0, NODE_CHECK)


class QuietWorld(World):
    def __init__(self, route: Route, nodes: int) -> None:
        super().__init__(f"quiet-{nodes}")
        self.route = route
        self.delivered: list[Json] = []
        owner = storms.app(
            self, "Deployment", "khook-00001-deployment", KHOOK_NAMESPACE, "kind.local/khook:0.1.0"
        )
        owner.replicas = 1
        self.khook = Khook(self, owner)
        for index in range(1, nodes + 1):
            # The same phases whatever the route, so that rows differ only by the route.
            rng = random.Random(f"khook-idle/worker-{index}")
            node = Node(self, f"worker-{index}")
            self.spawn(node_reports(self, node, rng.uniform(0, NODE_REPORT), rng))

    def clock(self) -> float:
        return (self.now - self.start).total_seconds()

    def post(self, action: str, obj: Json) -> None:
        super().post(action, obj)
        request = self.requests[-1]
        for _ in range(self.route.deliveries(request)):
            self.delivered.append(request)
            self.khook.request()


@dataclass
class Quiet:
    requests: int
    ignored: int
    awake_minutes: float
    starts: int


def quiet_hour(route: Route, nodes: int, rules: RuleTable) -> Quiet:
    world = QuietWorld(route, nodes)
    world.run(HOUR)
    ignored = sum(1 for r in world.delivered if not signal_types(r, rules))
    awake = world.khook.awake_until(HOUR) / 60
    return Quiet(len(world.delivered), ignored, awake, world.khook.starts)


# ---- the storms ------------------------------------------------------------------------------


@dataclass
class Recorded:
    name: str
    requests: list[Json]
    types: list[tuple[str, ...]]
    seconds: float


def recorded_storms() -> Iterator[Recorded]:
    for recording in sorted((ROOT / "sources" / "storms").glob("*/events.jsonl")):
        storm = recording.parent
        rules_file = storm / "rules.yaml"
        rules = load_rules([rules_file]) if rules_file.is_file() else builtin_rules()
        requests = [json.loads(line) for line in recording.read_text().splitlines() if line]
        times = [datetime.fromisoformat(r["headers"]["Ce-Time"]) for r in requests]
        seconds = (max(times) - min(times)).total_seconds()
        types = [signal_types(r, rules) for r in requests]
        yield Recorded(storm.name, requests, types, seconds)


@dataclass
class Stormy:
    requests: int = 0
    ignored: int = 0
    missed: int = 0  # requests with a signal that do not reach khook
    lost: list[str] = field(default_factory=list)  # storm: type no longer seen at all


def through(route: Route, recorded: list[Recorded]) -> Stormy:
    result = Stormy()
    for storm in recorded:
        seen: set[str] = set()
        every: set[str] = set()
        for request, types in zip(storm.requests, storm.types, strict=True):
            every.update(types)
            times = route.deliveries(request)
            if not times:
                result.missed += bool(types)
                continue
            seen.update(types)
            result.requests += times
            result.ignored += times * (not types)
        result.lost += [f"{storm.name}: {t}" for t in sorted(every - seen)]
    return result


# ---- the tables ------------------------------------------------------------------------------


def _share(part: int, whole: int) -> str:
    return f"{part} ({round(100 * part / whole)} %)" if whole else "0"


def tables() -> str:
    rules = builtin_rules()
    recorded = list(recorded_storms())
    hours = sum(s.seconds for s in recorded) / HOUR
    quiet_head = " | ".join(
        f"{n} node{'s' if n > 1 else ''}: requests/h | ignored | awake min/h (cold starts)"
        for n in QUIET_NODES
    )
    lines = [
        f"A quiet hour (simulated; {', '.join(str(n) for n in QUIET_NODES)} nodes):",
        "",
        f"| route to khook | {quiet_head} |",
        "|---|" + "---:|" * (3 * len(QUIET_NODES)),
    ]
    for route in routes():
        cells = []
        for nodes in QUIET_NODES:
            q = quiet_hour(route, nodes, rules)
            cells += [str(q.requests), _share(q.ignored, q.requests)]
            cells.append(f"{q.awake_minutes:.0f} ({q.starts})")
        lines.append(f"| {route.name} | {' | '.join(cells)} |")
    total = sum(len(s.requests) for s in recorded)
    lines += [
        "",
        f"The {len(recorded)} recorded storms ({total} requests over {hours * 60:.0f} minutes):",
        "",
        "| route to khook | requests | per hour while they last | ignored "
        "| requests with a signal left out | event types no longer seen |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for route in routes():
        s = through(route, recorded)
        lost = ", ".join(s.lost) or "none"
        lines.append(
            f"| {route.name} | {s.requests} | {s.requests / hours:.0f} "
            f"| {_share(s.ignored, s.requests)} | {s.missed} | {lost} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(tables(), end="")
