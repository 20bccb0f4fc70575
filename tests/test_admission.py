"""Hook admission on all three paths (file mode, cluster mode against the API double, and
`khook validate`): agent boundaries per tenant, the per-namespace quota, prompt checks, and the
index that keeps matching cheap with many Hooks."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from khook.admission import Admission, Ranking
from khook.cli.validate import validate
from khook.cluster import ClusterHookSource, HookStatusWriter
from khook.core.classify import classify
from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.hooks import Hook, HookInvalid
from khook.core.match import match
from khook.core.prompt import PromptTemplate
from khook.core.tenancy import AgentPolicy, in_quota
from khook.files import FileHookSource, HookSet, builtin_rules
from khook.stores import MemoryRecords
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import Kube, apiserver, wait_until
from tests.support.events import core_event, oom_status, pod

KNOWN = builtin_rules().event_types
CONTROL = "khook-system"


def hook(namespace: str, name: str, *configs: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kagent.dev/v1alpha2",
        "kind": "Hook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"eventConfigurations": list(configs)},
    }


def config(event_type: str = "oom-kill", prompt: str = "{{.ResourceName}}", **agent: Any) -> Any:
    return {"eventType": event_type, "agentRef": agent or {"name": "k8s-agent"}, "prompt": prompt}


@dataclass
class Checks:
    """A prompt check, as the sandbox's: refuses prompts that mention BOOM; counts its calls."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, event_type: str, template: PromptTemplate) -> str | None:
        self.calls.append((event_type, template.source))
        return "rendering failed: BOOM" if "BOOM" in template.source else None


@dataclass(frozen=True)
class Seen:
    """What one path made of one Hook."""

    in_force: bool
    reason: str = ""
    problems: tuple[str, ...] = ()


@dataclass
class Setup:
    policy: AgentPolicy
    limit: int
    check: Checks
    overrides: dict[str, Any]


def admission_for(setup: Setup) -> Admission:
    return Admission(
        known_types=KNOWN,
        control_namespace=CONTROL,
        policy=setup.policy,
        prompt_check=setup.check,
        max_hooks_per_namespace=setup.limit,
    )


def from_hook_set(hooks: HookSet) -> dict[str, Seen]:
    seen = {h.key: Seen(True) for h in hooks.hooks}
    for bad in hooks.invalid:
        seen[f"{bad.namespace}/{bad.name}"] = Seen(False, bad.reason, tuple(bad.problems))
    return seen


def via_files(docs: list[dict[str, Any]], setup: Setup, tmp_path: Path) -> dict[str, Seen]:
    (tmp_path / "hooks.yaml").write_text(yaml.safe_dump_all(docs))
    source = FileHookSource(
        [tmp_path],
        known_types=KNOWN,
        control_namespace=CONTROL,
        clock=FakeClock(),
        admission=admission_for(setup),
    )
    return from_hook_set(source.current())


def via_cluster(docs: list[dict[str, Any]], setup: Setup, tmp_path: Path) -> dict[str, Seen]:
    with apiserver() as server:
        kube = Kube(server)
        for doc in docs:
            kube.apply_hook(doc)
        source = cluster_source(server, setup)
        try:
            return from_hook_set(source.current())
        finally:
            source.close()


def via_validate(docs: list[dict[str, Any]], setup: Setup, tmp_path: Path) -> dict[str, Seen]:
    (tmp_path / "hooks.yaml").write_text(yaml.safe_dump_all(docs))
    lines: list[str] = []
    validate([tmp_path], setup.overrides, prompt_check=setup.check, out=lines.append)
    seen: dict[str, Seen] = {}
    current = ""
    for line in lines:
        if m := re.match(r"ok   Hook (\S+) ", line):
            seen[m.group(1)] = Seen(True)
        elif m := re.match(r"FAIL Hook (\S+) \(.*\): (\w+)$", line):
            current = m.group(1)
            seen[current] = Seen(False, m.group(2))
        elif line.startswith("     - "):
            old = seen[current]
            seen[current] = Seen(False, old.reason, (*old.problems, line[7:]))
    return seen


PATHS = {"files": via_files, "cluster": via_cluster, "validate": via_validate}


def cluster_source(server: APIServer, setup: Setup, **kw: Any) -> ClusterHookSource:
    source = ClusterHookSource(
        server.api_client(),
        known_types=KNOWN,
        control_namespace=CONTROL,
        clock=FakeClock(),
        admission=admission_for(setup),
        **kw,
    )
    source.start()
    wait_until(lambda: source.current(wait=False).synced, timeout=60, what="the Hook list")
    return source


def setup(grants: str = "", limit: int = 50) -> Setup:
    return Setup(
        AgentPolicy.build(CONTROL, ("kagent",), grants),
        limit,
        Checks(),
        {"agent_grants": grants, "max_hooks_per_namespace": limit, "control_namespace": CONTROL},
    )


@pytest.fixture(params=sorted(PATHS))
def admit(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., dict[str, Seen]]:
    path = PATHS[request.param]
    return lambda docs, s: path(docs, s, tmp_path)


# ---- the same verdicts on every path -----------------------------------------------------


def test_agent_boundaries(admit: Callable[..., dict[str, Seen]]) -> None:
    docs = [
        hook("team-a", "own", config(name="a")),
        hook("team-a", "kagent", config(name="k8s-agent", namespace="kagent")),
        hook("team-a", "granted", config(name="ml", namespace="ml-agents")),
        hook("team-a", "theirs", config(name="x", namespace="other-team")),
        hook(
            "team-a",
            "legacy",
            {"eventType": "oom-kill", "agentId": "other-team/x", "prompt": "p"},
        ),
        hook("team-b", "not-granted", config(name="ml", namespace="ml-agents")),
        hook(CONTROL, "platform", config(name="x", namespace="other-team")),
    ]
    seen = admit(docs, setup("team-a=ml-agents"))
    assert {k for k, v in seen.items() if v.in_force} == {
        "team-a/own",
        "team-a/kagent",
        "team-a/granted",
        f"{CONTROL}/platform",
    }
    theirs = seen["team-a/theirs"]
    assert theirs.reason == "AgentNotAllowed"
    assert theirs.problems == (
        "spec.eventConfigurations[0].agentRef.namespace: a Hook in namespace 'team-a' may not "
        "call agents in namespace 'other-team'; it may call agents in 'kagent', 'ml-agents', "
        "'team-a' (the platform team grants more with KHOOK_AGENT_GRANTS)",
    )
    assert seen["team-a/legacy"].reason == "AgentNotAllowed"
    assert seen["team-a/legacy"].problems[0].startswith("spec.eventConfigurations[0].agentId:")
    assert seen["team-b/not-granted"].reason == "AgentNotAllowed"


def test_the_quota_keeps_the_oldest(admit: Callable[..., dict[str, Seen]]) -> None:
    docs = [hook("team-q", f"h-{i}", config()) for i in range(5)]
    docs += [hook("team-q", "bad", config(event_type="nope"))]  # takes no place
    docs += [hook("team-r", "alone", config())]  # another namespace has its own quota
    seen = admit(docs, setup(limit=3))
    assert {k for k, v in seen.items() if v.in_force} == {
        "team-q/h-0",
        "team-q/h-1",
        "team-q/h-2",
        "team-r/alone",
    }
    for key in ("team-q/h-3", "team-q/h-4"):
        assert seen[key].reason == "TooManyHooks"
        assert (
            "only the 3 oldest (by creationTimestamp, then name) are in force"
            in (seen[key].problems[0])
        )
    assert seen["team-q/bad"].reason == "InvalidConfiguration"


def test_prompt_checks(admit: Callable[..., dict[str, Seen]]) -> None:
    s = setup(limit=3)
    docs = [
        hook("team-p", "a", config(), config("pod-restart", "BOOM {{.Reason}}")),
        hook("team-p", "b", config()),  # the same prompt as a's first: checked once
        hook("team-p", "c", config("oom-kill", "{{.Oops}}")),  # holds a place, does not compile
        hook("team-p", "d", config("oom-kill", "BOOM")),  # over the quota: never checked
    ]
    seen = admit(docs, s)
    assert seen["team-p/a"] == Seen(
        False,
        "PromptRenderFailed",
        ("spec.eventConfigurations[1].prompt: rendering failed: BOOM",),
    )
    assert seen["team-p/b"].in_force
    assert seen["team-p/c"].reason == "InvalidConfiguration"
    assert seen["team-p/c"].problems[0].startswith("spec.eventConfigurations[0].prompt: ")
    assert "{{.Oops}}" in seen["team-p/c"].problems[0]
    assert seen["team-p/d"].reason == "TooManyHooks"
    assert sorted(s.check.calls) == [
        ("oom-kill", "{{.ResourceName}}"),
        ("pod-restart", "BOOM {{.Reason}}"),
    ]


def test_validate_reports_a_bad_policy_setting(tmp_path: Path) -> None:
    (tmp_path / "h.yaml").write_text(yaml.safe_dump(hook("team-a", "h", config())))
    lines: list[str] = []
    code = validate([tmp_path], {"agent_grants": "team-a"}, out=lines.append)
    assert code == 1
    assert lines[0].startswith("FAIL settings: KHOOK_AGENT_NAMESPACES / KHOOK_AGENT_GRANTS: ")
    assert "ok   Hook team-a/h" in "\n".join(lines)  # the Hooks are still checked


# ---- cluster mode: the quota follows the watch, the status says why -------------------------


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


def ready(kube: Kube, namespace: str, name: str) -> tuple[str, str]:
    cond = kube.ready(namespace, name)
    assert cond is not None
    return cond["status"], cond["reason"]


def test_status_says_why_and_the_quota_follows_the_watch(server: APIServer) -> None:
    kube, clock = Kube(server), FakeClock()
    for i in range(4):
        kube.apply_hook(hook("team-a", f"h-{i}", config()))
    kube.apply_hook(hook("team-a", "theirs", config(name="x", namespace="other-team")))
    status = HookStatusWriter(server.api_client(), MemoryRecords(clock), clock, interval=0)
    source = cluster_source(server, setup(limit=3), on_change=status.hooks_changed)
    try:
        status.flush()
        assert ready(kube, "team-a", "h-0") == ("True", "HookConfigured")
        assert ready(kube, "team-a", "h-3") == ("False", "TooManyHooks")
        assert ready(kube, "team-a", "theirs") == ("False", "AgentNotAllowed")
        message = kube.ready("team-a", "theirs")["message"]  # type: ignore[index]
        assert "agentRef.namespace" in message and "'kagent', 'team-a'" in message

        # A newer Hook changes nothing for the others: no status is rewritten but its own.
        server.clear_requests()
        kube.apply_hook(hook("team-a", "h-4", config()))
        wait_until(lambda: "team-a/h-4" in keys(source, invalid=True), what="h-4")
        status.flush()
        patched = [r.name for r in server.calls(verb="patch", resource="hooks")]
        assert patched == ["h-4"]
        assert ready(kube, "team-a", "h-4") == ("False", "TooManyHooks")

        # Deleting one in force makes room for the oldest waiting (h-3, not h-4).
        kube.delete_hook("team-a", "h-1")
        wait_until(lambda: "team-a/h-3" in keys(source), what="h-3 in force")
        assert keys(source) == {"team-a/h-0", "team-a/h-2", "team-a/h-3"}
        status.flush()
        assert ready(kube, "team-a", "h-3") == ("True", "HookConfigured")
        assert ready(kube, "team-a", "h-4") == ("False", "TooManyHooks")
    finally:
        source.close()
        status.close()


def keys(source: ClusterHookSource, invalid: bool = False) -> set[str]:
    hooks = source.current(wait=False)
    if invalid:
        return {f"{b.namespace}/{b.name}" for b in hooks.invalid}
    return {h.key for h in hooks.hooks}


def test_ten_thousand_hooks_in_one_namespace(server: APIServer) -> None:
    # Stored directly in the double (10,000 creates over HTTP take minutes); khook lists them
    # over HTTP like any other. The double's own store keeps the API server's semantics.
    hooks_type = next(r for r in server.resources if r.plural == "hooks")
    for i in range(10_000):
        server._store.create(hooks_type, "crowded", hook("crowded", f"h-{i:05d}", config()))
    s = setup()
    started = time.monotonic()
    source = cluster_source(server, s)
    try:
        listed = source.current()
        assert time.monotonic() - started < 60  # it took minutes of agent calls per event before
        assert len(listed.hooks) == 50
        assert {h.name for h in listed.hooks} == {f"h-{i:05d}" for i in range(50)}
        assert len(listed.invalid) == 9_950
        assert {b.reason for b in listed.invalid} == {"TooManyHooks"}
        assert s.check.calls == [("oom-kill", "{{.ResourceName}}")]  # checked once, by text
        assert len(listed.visible_to("crowded", CONTROL)) == 50
        assert source.current() is listed  # not rebuilt per request
    finally:
        source.close()


# ---- the index: only the Hooks that can see a namespace are looked at ------------------------


NOW_OBJECTS = {
    "shop": pod(namespace="shop", container_statuses=[oom_status()]),
    "other": pod(namespace="other", container_statuses=[oom_status()]),
    CONTROL: pod(namespace=CONTROL, container_statuses=[oom_status()]),
    "": core_event("NodeNotReady", "Node n1 is not ready", type_="Normal", kind="Node"),
}


def test_the_namespace_index_matches_like_all_the_hooks() -> None:
    admission = Admission(known_types=KNOWN, control_namespace=CONTROL)
    docs = [
        hook("shop", "a", config()),
        hook("other", "b", config()),
        hook(CONTROL, "all", config(), config("node-not-ready")),
        hook("shop", "c", config()),
    ]
    docs[2]["spec"]["selector"] = {"namespaces": ["*"], "exclude": {"namespaces": ["other"]}}
    verdicts = admission.admit([admission.read(d) for d in docs])
    hook_set = HookSet(tuple(v for v in verdicts if not isinstance(v, Exception)))
    assert len(hook_set.hooks) == 4
    table = builtin_rules()
    for namespace, obj in NOW_OBJECTS.items():
        event = decode_object(obj, action=Action.UPDATE, observed_at=pod_time())
        assert isinstance(event, ClusterEvent)
        detections = classify(event, table)
        everything = match(event, detections, hook_set.hooks, CONTROL)
        indexed = match(event, detections, hook_set.visible_to(namespace, CONTROL), CONTROL)
        assert [m.hook.key for m in indexed] == [m.hook.key for m in everything]
        assert everything
    assert [h.key for h in hook_set.visible_to("shop", CONTROL)] == [
        "shop/a",
        f"{CONTROL}/all",
        "shop/c",
    ]


def pod_time() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 11, 23, 9, 20, tzinfo=UTC)


def test_distinct_prompts_are_checked_concurrently(tmp_path: Path) -> None:
    both = threading.Barrier(2, timeout=10)

    def check(event_type: str, template: PromptTemplate) -> str | None:
        both.wait()  # passes only when two checks run at the same time
        return None

    docs = [hook("team-a", "a", config(prompt="one {{.Reason}}")), hook("team-a", "b", config())]
    (tmp_path / "hooks.yaml").write_text(yaml.safe_dump_all(docs))
    source = FileHookSource(
        [tmp_path],
        known_types=KNOWN,
        control_namespace=CONTROL,
        clock=FakeClock(),
        admission=Admission(
            known_types=KNOWN, control_namespace=CONTROL, prompt_check=check, check_workers=2
        ),
    )
    assert {h.key for h in source.current().hooks} == {"team-a/a", "team-a/b"}


def test_a_failing_checker_is_not_remembered() -> None:
    calls: list[str] = []

    def flaky(event_type: str, template: PromptTemplate) -> str | None:
        calls.append(template.source)
        if len(calls) == 1:
            raise BrokenPipeError("sandbox worker died")
        return None

    admission = Admission(known_types=KNOWN, control_namespace=CONTROL, prompt_check=flaky)
    reading = admission.read(hook("team-a", "a", config()))
    first = admission.verdict(reading, placed=True)
    assert isinstance(first, HookInvalid) and first.reason == "PromptRenderFailed"
    assert first.problems == [
        "spec.eventConfigurations[0].prompt: the prompt could not be checked: "
        "BrokenPipeError: sandbox worker died"
    ]
    assert isinstance(admission.verdict(reading, placed=True), Hook)  # asked again
    assert isinstance(admission.verdict(reading, placed=True), Hook)  # now remembered
    assert calls == ["{{.ResourceName}}", "{{.ResourceName}}"]


def test_the_ranking_agrees_with_a_full_recount() -> None:
    rng = random.Random(7)
    ranking, state = Ranking(3), {}  # state: key -> (namespace, order)
    placed_before: set[str] = set()
    for _ in range(2_000):
        namespace = rng.choice(["a", "b"])
        key = f"{namespace}/h{rng.randrange(8)}"
        order = None if rng.random() < 0.3 else (f"2026-01-0{rng.randrange(1, 4)}", key)
        changed = ranking.update(key, namespace, order)
        if order is None:
            state.pop(key, None)
        else:
            state[key] = (namespace, order)
        expected: set[str] = set()
        for ns in ("a", "b"):
            expected |= in_quota({k: o for k, (n, o) in state.items() if n == ns}, 3)
        assert {k for k in state if ranking.placed(k)} == expected
        assert changed - {key} == (placed_before ^ expected) - {key}
        placed_before = expected
