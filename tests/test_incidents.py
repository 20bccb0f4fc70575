"""Incidents, not signals: holds, follow-ups, escalation, healing (pure decisions), correlation
(families, registries, nodes, table causes), the storm breaker and the status (through the
served function), and the bounds on what khook remembers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from khook.core.classify import classify
from khook.core.correlate import Explained, Facts, Incident, correlate
from khook.core.dedup import DedupKey, Hold, Policy, Record, Sighting, Verdict, decide, resolve
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.hooks import parse_hook
from khook.core.memory import ObjectMemory
from khook.core.owners import OwnerMemory
from khook.core.registry import PullFailure
from khook.files import builtin_correlation, builtin_rules
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.clock import FakeClock
from tests.support.cluster import (
    Kube,
    apiserver,
    cluster_function,
    cluster_settings,
    config,
    hook_doc,
)
from tests.support.events import apiserver_event, binary, core_event, oom_status, outcome, pod

T0 = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)
KEY = DedupKey("shop/h", "oom-kill", "shop", "Deployment/web")
WINDOW = timedelta(minutes=10)
HOLD = Policy(window=WINDOW, hold=Hold(3, timedelta(minutes=2)), ranks=("oom-kill", "pod-restart"))
TABLE = builtin_correlation()
RULES = builtin_rules()


def sight(
    occurrence: str,
    at: datetime = T0,
    *,
    resource: str = "Pod/web-1",
    count: int | None = 1,
    event_type: str = "pod-restart",
    workload: str = "Deployment/web",
) -> Sighting:
    return Sighting(
        occurrence, None, at, resource, event_type=event_type, count=count, workload=workload
    )


def run(previous: Record | None, s: Sighting, policy: Policy = HOLD, now: datetime = T0) -> Any:
    return decide(
        previous, KEY, s, now=now, policy=policy, max_signal_age=timedelta(minutes=15), token="t"
    )


def opened(record: Record, context: str = "ctx-1") -> Record:
    return replace(record, confirmed=True, context_id=context, task_id="task-1")


# ---- holds -------------------------------------------------------------------------------


def test_a_blip_is_held_and_opens_when_the_object_keeps_failing() -> None:
    first = run(None, sight("a", count=1))
    assert first.verdict is Verdict.HELD and first.record is not None
    assert not first.record.opened
    second = run(first.record, sight("b", count=2))
    assert second.verdict is Verdict.HELD
    third = run(second.record, sight("c", count=3))
    assert third.verdict is Verdict.FIRE and third.record is not None and third.record.opened


def test_objects_failing_at_once_cross_the_threshold_together() -> None:
    record = None
    verdicts = []
    for i in range(3):
        d = run(record, sight(f"o{i}", resource=f"Pod/web-{i}", count=1))
        record = d.record
        verdicts.append(d.verdict)
    assert verdicts == [Verdict.HELD, Verdict.HELD, Verdict.FIRE]


def test_a_hold_opens_once_it_has_lasted_for() -> None:
    held = run(None, sight("a")).record
    later = T0 + timedelta(minutes=2)
    assert run(held, sight("b", later), now=later).verdict is Verdict.FIRE


def test_without_any_count_the_hold_fails_open() -> None:
    assert run(None, sight("a", count=None)).verdict is Verdict.FIRE


def test_a_hold_that_heals_never_opens_and_the_next_failure_starts_afresh() -> None:
    held = run(None, sight("a", count=2)).record
    healed = resolve(held, "Pod/web-1", T0 + timedelta(seconds=30))
    assert healed is not None and healed.verdict is Verdict.HEALED
    assert healed.record is not None and not healed.record.opened
    later = T0 + timedelta(seconds=40)
    again = run(healed.record, sight("b", later, count=1), now=later)
    assert again.verdict is Verdict.HELD and again.record is not None
    assert again.record.first_seen == later, "a new hold, from its own start"


def test_min_count_one_fires_at_once_as_the_go_khook_does() -> None:
    assert run(None, sight("a"), Policy(window=WINDOW)).verdict is Verdict.FIRE


# ---- an open incident is a conversation ---------------------------------------------------


def test_the_window_slides_while_it_is_sighted() -> None:
    record = opened(run(None, sight("a", count=5)).record)
    at = T0
    for i in range(10):  # a sighting every 9 minutes for 90 minutes: one incident
        at += timedelta(minutes=9)
        d = run(record, sight(f"s{i}", at, count=5 + i), now=at)
        assert d.verdict in (Verdict.DUPLICATE, Verdict.FOLLOWUP)
        record = opened(d.record)
    quiet = at + WINDOW
    assert run(record, sight("z", quiet, count=1), now=quiet).verdict is not Verdict.DUPLICATE


def test_an_escalating_cause_is_a_follow_up_under_the_same_session() -> None:
    record = opened(run(None, sight("a", count=3)).record)
    later = T0 + timedelta(minutes=6)
    d = run(record, sight("oom", later, event_type="oom-kill"), now=later)
    assert d.verdict is Verdict.FOLLOWUP
    assert "the cause is now oom-kill" in d.reason
    assert d.record is not None and d.record.cause == "oom-kill" and d.record.opened


def test_follow_ups_are_rate_limited() -> None:
    record = opened(run(None, sight("a", count=3)).record)
    at = T0 + timedelta(minutes=1)
    first = run(record, sight("w1", at, workload="Deployment/api"), now=at)
    assert first.verdict is Verdict.FOLLOWUP
    told = replace(first.record, followup_holder="", reported="pod-restart|2|0")
    soon = at + timedelta(minutes=1)
    assert run(told, sight("w2", soon, workload="Deployment/db"), now=soon).verdict is (
        Verdict.DUPLICATE
    ), "the change waits for the limit"
    later = at + timedelta(minutes=5)
    assert run(told, sight("w3", later, workload="Deployment/db"), now=later).verdict is (
        Verdict.FOLLOWUP
    )


def test_follow_ups_none_tells_nothing() -> None:
    record = opened(run(None, sight("a", count=3)).record)
    quiet = Policy(window=WINDOW, followups=False, ranks=HOLD.ranks)
    later = T0 + timedelta(minutes=6)
    d = run(record, sight("oom", later, event_type="oom-kill"), quiet, now=later)
    assert d.verdict is Verdict.DUPLICATE


def test_the_last_object_recovering_resolves_an_open_incident() -> None:
    record = opened(run(None, sight("a", count=3)).record)
    done = resolve(record, "Pod/web-1", T0 + timedelta(minutes=1))
    assert done is not None and done.verdict is Verdict.RESOLVED


# ---- correlation ----------------------------------------------------------------------------


def hook(*types: str, namespace: str = "team-a", **options: Any) -> Any:
    doc = hook_doc(namespace, "h", *(config(t, **options) for t in types))
    return parse_hook(doc, known_types=RULES.event_types, control_namespace="khook-system")


def event_of(obj: dict[str, Any]) -> ClusterEvent:
    decoded = decode_object(obj, action=Action.UPDATE, observed_at=T0)
    assert isinstance(decoded, ClusterEvent)
    return decoded


def placed(event: ClusterEvent, h: Any, facts: Facts | None = None) -> list[Incident | Explained]:
    out = []
    for detection in classify(event, RULES):
        cfg = h.configuration(detection.event_type)
        if cfg is None:
            continue
        out.append(
            correlate(
                event,
                h,
                cfg,
                detection,
                table=TABLE,
                facts=facts or Facts(workload=event.owner),
                control_namespace="khook-system",
            )
        )
    return out


def test_an_incident_carries_the_claim_timeout_it_is_given() -> None:
    oom = event_of(pod(namespace="team-a", container_statuses=[oom_status()]))
    detection = classify(oom, RULES)[0]
    h = hook("oom-kill")
    cfg = h.configuration("oom-kill")
    assert cfg is not None

    def policy(**given: Any) -> Any:
        item = correlate(
            oom, h, cfg, detection, table=TABLE, facts=Facts(), control_namespace="x", **given
        )
        assert isinstance(item, Incident)
        return item.policy

    assert policy().claim_timeout is None  # the store's own default then
    assert policy(claim_timeout=timedelta(seconds=37)).claim_timeout == timedelta(seconds=37)


def test_an_oom_kill_explains_the_restarts_around_it() -> None:
    crash = pod(namespace="team-a", container_statuses=[oom_status(restarts=2)])
    crash["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}
    }
    both = hook("oom-kill", "pod-restart")
    keys = {p.key for p in placed(event_of(crash), both)}
    assert keys == {DedupKey("team-a/h", "oom-kill", "team-a", "Deployment/web")}
    alone = hook("pod-restart")
    (only,) = placed(event_of(crash), alone)
    assert only.key.event_type == "pod-restart", "a Hook that lists only the consequence"


def test_transient_pulls_from_one_registry_are_one_incident_across_workloads() -> None:
    pull = PullFailure("quay.io/a/b:1", "quay.io", "rate-limited", True, "429 Too Many Requests")
    keys = set()
    for app in ("api", "web", "db"):
        ev = core_event(
            "Failed",
            'Failed to pull image "quay.io/a/b:1": 429 Too Many Requests',
            namespace="team-a",
            name=f"{app}-7d4b9c8f5-abcde",
        )
        (item,) = placed(event_of(ev), hook("image-pull-failed"), Facts(pull=pull))
        assert isinstance(item, Incident)
        keys.add(item.key)
    assert keys == {DedupKey("team-a/h", "image-pull-failed", "", "Registry/quay.io/rate-limited")}


def test_a_tenant_hook_opens_nothing_for_a_pod_of_a_node_that_is_down() -> None:
    ev = core_event("NodeNotReady", "Node is not ready", namespace="team-a", name="web-1")
    facts = Facts(node="worker-3", node_not_ready=True)
    (tenant,) = placed(event_of(ev), hook("node-not-ready", "evicted"), facts)
    assert isinstance(tenant, Explained) and "Node/worker-3" in tenant.reason
    control = hook("node-not-ready", namespace="khook-system")
    (item,) = placed(event_of(ev), control, facts)
    assert isinstance(item, Incident) and item.key.group == "Node/worker-3"


def test_a_quota_names_one_incident_for_every_workload_it_stops() -> None:
    keys = set()
    for rs in ("web-7d4b9c8f5", "api-6f5b8c9d4"):
        ev = core_event(
            "FailedCreate",
            f'Error creating: pods "{rs}-x" is forbidden: exceeded quota: compute, requested: ..',
            kind="ReplicaSet",
            name=rs,
            namespace="team-a",
        )
        (item,) = placed(event_of(ev), hook("quota-exceeded"))
        assert isinstance(item, Incident)
        keys.add(item.key.group)
    assert keys == {"ResourceQuota/compute"}


# ---- memory bounds ---------------------------------------------------------------------------


def test_what_khook_remembers_of_pods_is_bounded() -> None:
    memory = ObjectMemory(TABLE, OwnerMemory(max_pods=100))
    for i in range(1_000):
        memory.observe(event_of(pod(name=f"web-7d4b9c8f5-{i:05d}", namespace="team-a")), [])
    assert memory.owners.pods_remembered() == 100


# ---- the storm breaker and the status, through the served function -----------------------


def write_hook(tmp_path: Path, **options: Any) -> str:
    doc = hook_doc("default", "storm", config("oom-kill", **options))
    path = tmp_path / "hooks.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_hook_opens_at_most_its_budget_of_sessions_a_minute(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    fn = make_function(hooks=(write_hook(tmp_path),), dedup="memory", max_sessions_per_minute=3)
    answers = []
    for i in range(6):  # six workloads OOM-killed in the same minute
        crashed = pod(
            name=f"app{i}-7d4b9c8f5-x2x9z",
            owner=f"app{i}-7d4b9c8f5",
            container_statuses=[oom_status()],
        )
        answers.append(fn.post(*binary(apiserver_event(crashed))).headers["X-Khook-Outcome"])
    assert answers[:3] == [outcome(fired=1)] * 3
    assert answers[3] == outcome(fired=1), "the first beyond the budget opens the overflow session"
    sessions = [m for m in agent.messages() if not m.continued]
    assert len(sessions) == 4
    assert "more than 3 incidents in a minute" in sessions[-1].text


PULL_503 = (
    'Failed to pull image "{image}": rpc error: code = Unknown desc = failed to pull and unpack '
    'image "{image}": failed to resolve reference "{image}": unexpected status from HEAD '
    "request to https://registry.example.com/v2/shop/{app}/manifests/1.4.2: 503 Service "
    "Unavailable"
)


class Pulls:
    """Pull failures of pods of workloads ``<app>-7d4b9c8f5`` in default, sent to ``fn`` with
    the CloudEvent time ``minutes`` after 09:20 (what khook judges a wait by)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def send(self, obj: dict[str, Any], minutes: float) -> str:
        at = datetime(2026, 11, 23, 9, 20, tzinfo=UTC) + timedelta(minutes=minutes)
        event = apiserver_event(obj, time=at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return str(self.fn.post(*binary(event)).headers["X-Khook-Outcome"])

    def event(self, reason: str, message: str, app: str, minutes: float = 0, **kw: Any) -> str:
        at = datetime(2026, 11, 23, 9, 20, tzinfo=UTC) + timedelta(minutes=minutes)
        pod_name = kw.pop("pod", f"{app}-7d4b9c8f5-x2x9z")
        ev = core_event(
            reason, message, name=pod_name, last=at.strftime("%Y-%m-%dT%H:%M:%SZ"), **kw
        )
        return self.send(ev, minutes)

    def failed_503(self, app: str, minutes: float = 0) -> str:
        image = f"registry.example.com/shop/{app}:1.4.2"
        return self.event("Failed", PULL_503.format(image=image, app=app), app, minutes)

    def waiting(self, app: str, reason: str, message: str, minutes: float = 0) -> str:
        status = {"name": "app", "restartCount": 0, "state": {"waiting": {"reason": reason}}}
        status["state"]["waiting"]["message"] = message
        failing = pod(
            f"{app}-7d4b9c8f5-x2x9z", owner=f"{app}-7d4b9c8f5", container_statuses=[status]
        )
        failing["status"]["phase"] = "Pending"
        return self.send(failing, minutes)


def pulls_hook(tmp_path: Path, **options: Any) -> str:
    path = tmp_path / "hooks.yaml"
    doc = hook_doc("default", "pulls", config("image-pull-failed", **options))
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_a_pod_whose_first_pull_signal_states_no_cause_waits_for_it_in_an_outage(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    """A registry outage is one session, even for a pod whose first signals name no cause
    (khook came up, or the source re-listed its Events in no order, mid-storm): they are held
    until its next pull attempt names the cause, which puts it in the outage; a replacement
    pod of the same workload waits for its own."""
    pulls = Pulls(make_function(hooks=(pulls_hook(tmp_path),), dedup="memory"))
    assert [pulls.failed_503(app) for app in ("api", "web", "db")] == [
        outcome(held=1),
        outcome(held=1),
        outcome(fired=1),
    ], "three workloads failing on one registry: the outage opens"
    backoff = 'Back-off pulling image "registry.example.com/shop/cart:1.4.2"'
    # Backing off for the 12th time: failing for a while, but nothing said why yet.
    assert pulls.event("BackOff", backoff, "cart", type_="Normal", count=12) == outcome(held=1)
    assert pulls.event("Failed", "Error: ImagePullBackOff", "cart", 1) == outcome(held=1)
    # Its cause named, it joins the outage, whose session is told a workload joined.
    assert pulls.failed_503("cart", 1.5) == outcome(followup=1)
    assert pulls.event("BackOff", backoff, "cart", 2, type_="Normal", count=13) == outcome(
        duplicate=1
    ), "its later cause-less signals inherit the cause"
    replacement = pulls.event(
        "Failed", "Error: ErrImagePull", "cart", 4, pod="cart-7d4b9c8f5-bbbbb"
    )
    assert replacement == outcome(held=1), "a new pod waits for its own cause"
    assert len([m for m in agent.messages() if not m.continued]) == 1


def test_a_terminal_cause_after_causeless_pod_statuses_opens_at_once(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    """Kubernetes before 1.32: a waiting container's ImagePullBackOff message names no cause;
    the ErrImagePull state that follows does. Nothing was stored while it waited, so the
    terminal cause (a tag that does not exist) opens the workload's incident at once."""
    pulls = Pulls(make_function(hooks=(pulls_hook(tmp_path),), dedup="memory"))
    backoff = 'Back-off pulling image "registry.example.com/shop/cart:9.9"'
    assert pulls.waiting("cart", "ImagePullBackOff", backoff) == outcome(held=1)
    assert pulls.waiting("cart", "ImagePullBackOff", backoff, 0.5) == outcome(held=1)
    missing = (
        'rpc error: code = NotFound desc = failed to pull and unpack image "registry.example.com'
        '/shop/cart:9.9": failed to resolve reference "registry.example.com/shop/cart:9.9": '
        "registry.example.com/shop/cart:9.9: not found"
    )
    assert pulls.waiting("cart", "ErrImagePull", missing, 1) == outcome(fired=1)
    assert len(agent.messages()) == 1


def test_a_pull_whose_cause_is_never_named_opens_once_the_wait_is_over(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    """The wait is the hold's ``for`` (2m for image-pull-failed), from khook's first such
    signal of the pod; then it is the conservative ``unknown``: per workload, at once."""
    pulls = Pulls(make_function(hooks=(pulls_hook(tmp_path),), dedup="memory"))
    assert pulls.event("Failed", "Error: ErrImagePull", "cart", 0) == outcome(held=1)
    assert pulls.event("Failed", "Error: ImagePullBackOff", "cart", 1.9) == outcome(held=1)
    assert pulls.event("Failed", "Error: ImagePullBackOff", "cart", 2, count=2) == outcome(fired=1)
    (message,) = agent.messages()
    assert "unknown" in message.text


def test_a_pull_waits_for_its_cause_five_minutes_at_most_and_not_at_all_without_a_hold(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    long = Pulls(make_function(hooks=(pulls_hook(tmp_path, **{"for": "10m"}),), dedup="memory"))
    assert long.event("Failed", "Error: ErrImagePull", "cart", 0) == outcome(held=1)
    assert long.event("Failed", "Error: ErrImagePull", "cart", 4.9) == outcome(held=1)
    assert long.event("Failed", "Error: ErrImagePull", "cart", 5, count=2) == outcome(fired=1)
    at_once = tmp_path / "at-once"
    at_once.mkdir()
    none = Pulls(make_function(hooks=(pulls_hook(at_once, minCount=1),), dedup="memory"))
    assert none.event("Failed", "Error: ErrImagePull", "web", 0) == outcome(fired=1)


def test_a_pod_waits_again_only_in_a_new_spell_and_from_its_earliest_signal(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    pulls = Pulls(make_function(hooks=(pulls_hook(tmp_path),), dedup="memory"))
    # One signal stamped a day ahead, then the pod's real ones: the wait is from the earliest.
    assert pulls.event("Failed", "Error: ErrImagePull", "cart", 24 * 60) == outcome(held=1)
    assert pulls.event("Failed", "Error: ErrImagePull", "cart", 0) == outcome(held=1)
    assert pulls.event("Failed", "Error: ErrImagePull", "cart", 2.5, count=2) == outcome(fired=1)
    pulls = Pulls(make_function(hooks=(pulls_hook(tmp_path),), dedup="memory"))
    assert pulls.event("Failed", "Error: ErrImagePull", "web", 0) == outcome(held=1)
    # Healed, then failing again 10 hours later: a new spell, which waits again.
    assert pulls.event("Failed", "Error: ErrImagePull", "web", 600, count=5) == outcome(held=1)
    assert pulls.event("Failed", "Error: ErrImagePull", "web", 602, count=6) == outcome(fired=1)


def test_the_status_shows_held_and_open_incidents_with_their_cause(
    agent: A2AAgentServer,
) -> None:
    clock = FakeClock()
    with apiserver() as server:
        kube = Kube(server)
        kube.apply_hook(hook_doc("default", "pods", config("pod-restart"), config("oom-kill")))
        with cluster_function(server, clock, cluster_settings(agent.url)) as fn:
            backoff = core_event("BackOff", "Back-off restarting failed container", name="db-0")
            assert fn.post(*binary(apiserver_event(backoff))).headers["X-Khook-Outcome"] == outcome(
                held=1
            )
            assert fn.post(
                *binary(apiserver_event(pod(container_statuses=[oom_status()])))
            ).headers["X-Khook-Outcome"] == outcome(fired=1)
            assert fn.pipeline is not None
            fn.pipeline.flush()
            active = kube.hook("default", "pods")["status"]["activeEvents"]
    states = {(e["group"], e["status"]) for e in active}
    assert ("Deployment/web", "firing") in states
    assert ("Pod/db-0", "held") in states
    firing = next(e for e in active if e["status"] == "firing")
    assert firing["eventType"] == "oom-kill" and firing["affected"] and firing["affectedTotal"] == 1
