"""The storm corpus (sources/storms/): exactly what the generator makes, shaped like the real
ApiServerSource adapter's requests, and behaving like the Kubernetes components that wrote
the objects (client-go's event recorder, kubelet, the node and taint-eviction controllers)."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from khook.cli import main
from khook.core import cloudevent
from khook.core.objects import parse_time
from khook.replay import (
    expand,
    go_json,
    load_expectation,
    open_storm,
    read_requests,
    sendable,
    storm_requests,
)
from tests.support import storms

ROOT = Path(__file__).resolve().parents[1]
CAPTURED = ROOT / "tests" / "fixtures" / "captured"
STORM_DIRS = expand([storms.STORMS])
RECORDED = [d for d in STORM_DIRS if (d / "events.jsonl").is_file()]
# The table, and the storms the task adds: how many sessions a person wants.
WANTED = {
    "registry-429": 1,
    "oom-crashloop": 1,
    "rollout-warmup": 0,
    "crashloop-45s": 1,
    "node-lost": 1,
    "bad-tag": 1,
    "quota-exhausted": 1,
    "volume-multiattach": 1,
    "liveness-hang": 1,
    "crashloop-hour": 1,
    "bad-tag-snapshot": 1,
}


def lines(storm: Path) -> Iterator[dict[str, Any]]:
    with (storm / "events.jsonl").open(encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line)


def when(text: str) -> datetime:
    parsed = parse_time(text)
    assert parsed is not None, text
    return parsed


@pytest.fixture(scope="module")
def corpus() -> dict[str, str]:
    return storms.corpus()


def test_the_committed_corpus_is_what_the_generator_makes(corpus: dict[str, str]) -> None:
    committed = {
        str(p.relative_to(storms.STORMS)): p.read_text(encoding="utf-8")
        for p in storms.STORMS.rglob("*")
        if p.is_file()
    }
    assert sorted(committed) == sorted(corpus), "run: python -m tests.support.storms"
    different = [name for name in corpus if committed[name] != corpus[name]]
    assert not different, f"stale, run python -m tests.support.storms: {different}"


def test_the_generator_is_deterministic(corpus: dict[str, str]) -> None:
    assert storms.corpus() == corpus


def test_the_corpus_has_every_storm_with_what_a_person_wants() -> None:
    assert sorted(d.name for d in STORM_DIRS) == sorted(WANTED)
    for storm in STORM_DIRS:
        expected = load_expectation(storm / "expected.yaml")
        assert len(expected.sessions) == WANTED[storm.name], storm.name
        assert expected.followup_every == timedelta(minutes=5)
        assert (storm / "hooks.yaml").is_file()
    readme = (storms.STORMS / "README.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in readme for name in WANTED)


@pytest.mark.parametrize("storm", STORM_DIRS, ids=lambda p: p.name)
def test_the_hooks_of_every_storm_are_valid(
    storm: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = ["--rules", str(storm / "rules.yaml")] if (storm / "rules.yaml").is_file() else []
    assert main(["validate", str(storm / "hooks.yaml"), *rules]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "ok   Hook" in out


def test_requests_carry_the_headers_the_real_adapter_sends() -> None:
    captured = json.loads((CAPTURED / "pod-update-oomkilled.json").read_text())["headers"]
    for storm in RECORDED:
        seen_ids: set[str] = set()
        for n, line in enumerate(lines(storm), 1):
            headers, body = line["headers"], line["body"]
            where = f"{storm.name}:{n}"
            # The same headers, in the same order, as the unmodified adapter's capture.
            assert list(headers) == list(captured), where
            assert headers["Content-Length"] == str(len(go_json(body))), where
            assert headers["User-Agent"] == "Go-http-client/1.1"
            assert headers["Ce-Specversion"] == "1.0" and headers["Ce-Source"].startswith(
                "https://"
            )
            assert re.fullmatch(
                r"dev\.knative\.apiserver\.resource\.(add|update|delete)", headers["Ce-Type"]
            )
            assert uuid.UUID(headers["Ce-Id"]).version == 4 and headers["Ce-Id"] not in seen_ids
            seen_ids.add(headers["Ce-Id"])
            meta = body["metadata"]
            assert (
                headers["Ce-Kind"] == body["kind"]
                and headers["Ce-Apiversion"] == body["apiVersion"]
            )
            assert headers["Ce-Name"] == meta["name"]
            assert headers["Ce-Namespace"] == meta.get("namespace", "")
            plural = {"Event": "events", "Pod": "pods", "Node": "nodes"}[body["kind"]]
            # The adapter's self link always has a namespace segment, empty for a Node.
            assert headers["Ce-Subject"] == (
                f"/apis/v1/namespaces/{meta.get('namespace', '')}/{plural}/{meta['name']}"
            ), where
            # Go's RFC3339Nano: up to nine digits, trailing zeros dropped.
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", headers["Ce-Time"])
            envelope = cloudevent.parse(sendable(headers), go_json(body))
            assert envelope.data == body


def test_a_line_holds_the_bytes_on_the_wire() -> None:
    """The body's bytes are Go's encoding: a replay posts exactly what the adapter posted."""
    captured = json.loads((CAPTURED / "event-add-backoff.json").read_text())
    assert len(go_json(captured["body"])) == int(captured["headers"]["Content-Length"])
    storm = storms.STORMS / "crashloop-45s"
    raw = (storm / "events.jsonl").read_text(encoding="utf-8").splitlines()
    for text, (headers, body) in zip(raw, storm_requests(storm), strict=True):
        assert text.endswith(',"body":' + body.decode() + "}")
        assert "Host" not in headers and "Content-Length" not in headers
        assert headers["Ce-Type"].startswith("dev.knative.apiserver.resource.")


@pytest.mark.parametrize("storm", RECORDED, ids=lambda p: p.name)
def test_time_and_resource_versions_only_go_forward(storm: Path) -> None:
    times = [when(line["headers"]["Ce-Time"]) for line in lines(storm)]
    assert times == sorted(times)
    versions = [int(line["body"]["metadata"]["resourceVersion"]) for line in lines(storm)]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)


@pytest.mark.parametrize("storm", RECORDED, ids=lambda p: p.name)
def test_events_are_aggregated_as_client_go_records_them(storm: Path) -> None:
    """One Event per (source, object, type, reason, message): created once (add), then
    patched with a growing count and a newer lastTimestamp (update), name and firstTimestamp
    unchanged. A spam-filtered write leaves a gap the next count jumps over."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for line in lines(storm):
        body, action = line["body"], line["headers"]["Ce-Type"].rsplit(".", 1)[1]
        if body["kind"] != "Event":
            continue
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        involved = body["involvedObject"]
        assert body["metadata"]["name"].startswith(involved["name"] + ".")
        if body["firstTimestamp"] is None:  # events.k8s.io (the scheduler): no count
            assert body["eventTime"] and body["action"] and "count" not in body
            assert action == "add" and key not in seen
            seen[key] = body
            continue
        assert (
            body["eventTime"] is None and body["reportingComponent"] == body["source"]["component"]
        )
        previous = seen.get(key)
        if previous is None:
            assert action == "add"
        else:
            assert action == "update"
            assert body["count"] > previous["count"]
            assert body["firstTimestamp"] == previous["firstTimestamp"]
            assert body["involvedObject"] == previous["involvedObject"]
            assert when(body["lastTimestamp"]) >= when(previous["lastTimestamp"])
        seen[key] = body


@pytest.mark.parametrize("storm", RECORDED, ids=lambda p: p.name)
def test_kubelet_writes_per_pod_at_most_25_events_then_one_per_5_minutes(storm: Path) -> None:
    writes: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for line in lines(storm):
        body = line["body"]
        if body["kind"] == "Event" and body["source"].get("component") == "kubelet":
            writes[(body["source"]["host"], body["involvedObject"]["uid"])].append(
                when(line["headers"]["Ce-Time"])
            )
    for times in writes.values():
        for i, at in enumerate(times):
            earlier = [t for t in times[:i] if at - t < timedelta(minutes=5)]
            assert len(earlier) < 25 + (at - times[0]) / timedelta(minutes=5)


def pods(storm: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines(storm):
        if line["body"]["kind"] == "Pod":
            found[line["body"]["metadata"]["uid"]].append(line["body"])
    return found


def kubelet_events(storm: Path, reason: str) -> list[dict[str, Any]]:
    return [
        line["body"]
        for line in lines(storm)
        if line["body"]["kind"] == "Event" and line["body"]["reason"] == reason
    ]


def test_registry_429_every_pull_fails_with_the_cause_on_one_event_of_four() -> None:
    storm = storms.STORMS / "registry-429"
    versions = pods(storm)
    assert len(versions) == 24
    for history in versions.values():
        waiting = [
            p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            for p in history
            if p["status"].get("containerStatuses")
        ]
        assert "ErrImagePull" in waiting and "ImagePullBackOff" in waiting
        assert history[-1]["status"]["phase"] == "Running"  # the registry recovered
    failed = kubelet_events(storm, "Failed")
    causes = [e for e in failed if e["message"].startswith("Failed to pull image")]
    assert causes and all("429 Too Many Requests" in e["message"] for e in causes)
    assert {e["message"] for e in failed} - {e["message"] for e in causes} == {
        "Error: ErrImagePull",
        "Error: ImagePullBackOff",
    }
    backoff = kubelet_events(storm, "BackOff")
    assert backoff and all(
        e["type"] == "Normal" and e["message"].startswith("Back-off pulling image") for e in backoff
    )


def test_crash_loop_backs_off_to_five_minutes() -> None:
    storm = storms.STORMS / "crashloop-hour"
    (everything,) = pods(storm).values()
    history = [p for p in everything if p["status"].get("containerStatuses")]
    starts = sorted(
        {
            p["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
            for p in history
            if "running" in p["status"]["containerStatuses"][0]["state"]
        }
    )
    gaps = [(when(b) - when(a)).total_seconds() for a, b in itertools.pairwise(starts)]
    assert gaps[0] < 5  # the first restart is immediate
    assert 300 <= gaps[-1] <= 320  # capped at 300 s, restarted by the next pod sync
    assert max(gaps) <= 320 and len(starts) >= 12
    messages = {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"].split(" restarting")[0]
        for p in history
        if p["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
        == "CrashLoopBackOff"
    }
    assert {"back-off 20s", "back-off 40s", "back-off 5m0s"} <= messages
    restarts = [p["status"]["containerStatuses"][0]["restartCount"] for p in history]
    assert restarts == sorted(restarts)
    backoff = kubelet_events(storm, "BackOff")
    assert all(
        re.fullmatch(
            r"Back-off restarting failed container app in pod [a-z0-9-]+_team-a\([0-9a-f-]{36}\)",
            e["message"],
        )
        for e in backoff
    )
    # The spam filter: after the burst, about one kubelet write about the pod per 5 minutes.
    late = [
        e
        for e in (line["body"] for line in lines(storm))
        if e["kind"] == "Event"
        and e["source"].get("component") == "kubelet"
        and when(e["lastTimestamp"]) > when(starts[0]) + timedelta(minutes=20)
    ]
    assert 4 <= len(late) <= 9


def test_node_lost_marks_18_pods_then_evicts_after_the_toleration() -> None:
    storm = storms.STORMS / "node-lost"
    node_updates = [line["body"] for line in lines(storm) if line["body"]["kind"] == "Node"]
    ready = next(c for c in node_updates[0]["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    assert ready["message"] == "Kubelet stopped posting node status."
    taint = next(t for t in node_updates[-1]["spec"]["taints"] if t["effect"] == "NoExecute")
    not_ready = [
        e for e in kubelet_events(storm, "NodeNotReady") if e["involvedObject"]["kind"] == "Pod"
    ]
    assert len(not_ready) == 18
    assert all(e["type"] == "Warning" and e["message"] == "Node is not ready" for e in not_ready)
    evictions = kubelet_events(storm, "TaintManagerEviction")
    assert len(evictions) == 16  # the two DaemonSet pods tolerate the taint for ever
    assert all("uid" not in e["involvedObject"] for e in evictions)
    assert min(when(e["lastTimestamp"]) for e in evictions) - when(taint["timeAdded"]) >= timedelta(
        seconds=300
    )
    for history in pods(storm).values():
        marked = [
            p
            for p in history
            if any(
                c["type"] == "Ready" and c["status"] == "False" and "reason" not in c
                for c in p["status"].get("conditions", [])
            )
        ]
        if history[0]["spec"].get("nodeName") == "worker-3":
            assert marked, "MarkPodsNotReady flips Ready without a reason"


def test_rollout_warms_one_new_pod_at_a_time() -> None:
    storm = storms.STORMS / "rollout-warmup"
    unhealthy = Counter(e["involvedObject"]["name"] for e in kubelet_events(storm, "Unhealthy"))
    assert sorted(unhealthy.values()) == [1, 1, 2]
    assert all(
        m.startswith("Readiness probe failed: ")
        for m in (e["message"] for e in kubelet_events(storm, "Unhealthy"))
    )
    warming: set[str] = set()
    for line in lines(storm):
        body = line["body"]
        if body["kind"] != "Pod" or "2.8.0" not in body["spec"]["containers"][0]["image"]:
            continue
        statuses = body["status"].get("containerStatuses", [])
        if statuses and statuses[0]["ready"]:
            warming.discard(body["metadata"]["name"])
        else:
            warming.add(body["metadata"]["name"])
        assert len(warming) <= 1


def test_quota_rejections_name_the_quota_and_back_off() -> None:
    storm = storms.STORMS / "quota-exhausted"
    failed = kubelet_events(storm, "FailedCreate")
    assert {e["involvedObject"]["kind"] for e in failed} == {"ReplicaSet"}
    assert len({e["involvedObject"]["name"] for e in failed}) == 3
    assert all(
        re.fullmatch(
            r'Error creating: pods "[a-z]+-[4-9bcdf]+-" is forbidden: exceeded quota: compute, '
            r"requested: requests\.cpu=500m, used: requests\.cpu=3800m, limited: requests\.cpu=4",
            e["message"],
        )
        for e in failed
    )
    assert max(e["count"] for e in failed) >= 15


def test_the_volume_storm_reports_multi_attach_once_then_failed_mount() -> None:
    storm = storms.STORMS / "volume-multiattach"
    attach = kubelet_events(storm, "FailedAttachVolume")
    assert len(attach) == 1 and attach[0]["source"] == {"component": "attachdetach-controller"}
    assert "Multi-Attach error for volume" in attach[0]["message"]
    mounts = kubelet_events(storm, "FailedMount")
    assert [e["count"] for e in mounts] == [1, 2, 3]
    assert all(e["message"].startswith("Unable to attach or mount volumes: ") for e in mounts)


def test_the_snapshot_is_the_bad_tag_storm_at_its_end() -> None:
    doc = json.loads((storms.STORMS / "bad-tag-snapshot" / "snapshot.json").read_text())
    assert doc["kind"] == "List" and {i["kind"] for i in doc["items"]} == {"Event", "Pod"}
    requests = list(read_requests(open_storm(storms.STORMS / "bad-tag-snapshot").recording))
    assert len(requests) == len(doc["items"])
    times = [r.time for r in requests]
    assert times == sorted(times)  # type: ignore[type-var]
    stuck = [
        i
        for i in doc["items"]
        if i["kind"] == "Pod" and i["spec"]["containers"][0]["image"].endswith(":v2.503")
    ]
    assert len(stuck) == 1
