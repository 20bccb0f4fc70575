"""`khook replay`: recorded storms through the real pipeline on the recording's clock."""

from __future__ import annotations

import json
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from khook.cli import main
from khook.replay import (
    FOLLOWUP,
    SESSION,
    ReplayInputError,
    ReplayOptions,
    VirtualClock,
    check,
    expand,
    load_expectation,
    open_storm,
    play,
    read_requests,
)
from tests.support import storms
from tests.support.agent import A2AAgentServer

STORMS = storms.STORMS
SUMMARY = re.compile(r"sessions=\d+ followups=\d+ held=\d+")
HOOKS = STORMS / "crashloop-45s" / "hooks.yaml"
FIRST_LINE = (STORMS / "crashloop-45s" / "events.jsonl").read_text().splitlines(keepends=True)[0]


def storm_params() -> list[object]:
    return [pytest.param(path, id=path.name) for path in expand([STORMS])]


@pytest.mark.parametrize("storm", storm_params())
def test_every_storm_comes_to_what_a_person_wants(storm: Path) -> None:
    report = play(open_storm(storm))
    problems = check(report, load_expectation(storm / "expected.yaml"))
    assert not problems, "\n".join(problems)


def test_the_clock_stands_still_and_only_moves_forward() -> None:
    start = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    clock = VirtualClock(start)
    before = clock.monotonic()
    time.sleep(0.01)
    assert clock.now() == start and clock.monotonic() == before
    clock.sleep(90)
    assert clock.now() == start + timedelta(seconds=90)
    assert clock.monotonic() - before == pytest.approx(90)
    clock.move_to(start)  # never back
    assert clock.now() == start + timedelta(seconds=90)
    clock.move_to(start + timedelta(hours=1))
    assert clock.monotonic() - before == pytest.approx(3600)


def test_an_hour_of_storm_plays_in_seconds() -> None:
    began = time.monotonic()
    report = play(open_storm(STORMS / "crashloop-hour"))
    assert time.monotonic() - began < 60  # generous: it did not take the hour
    assert report.ended is not None and report.started is not None
    assert report.ended - report.started > timedelta(minutes=55)
    told = [line.at for line in report.lines if line.kind in (SESSION, FOLLOWUP)]
    # The sessions and follow-ups happen at the recording's times (not the wall clock's).
    requests = list(read_requests(open_storm(STORMS / "crashloop-hour").recording))
    sent = {r.time for r in requests}
    assert told and set(told) <= sent


def test_replay_prints_a_line_per_session_and_the_totals_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", str(STORMS / "bad-tag")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert SUMMARY.fullmatch(out[-1])
    sessions = [line for line in out if " session " in line]
    assert len(sessions) == int(out[-1].split()[0].split("=")[1])
    assert all("hook=team-a/incidents" in line and "cause=" in line for line in sessions)
    assert not any(line.startswith("{") for line in out)  # the dry run's requests: not shown


def test_show_requests_prints_the_a2a_requests_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--show-requests", str(STORMS / "volume-multiattach")]) == 0
    out = capsys.readouterr().out.splitlines()
    requests = [json.loads(line) for line in out if line.startswith("{")]
    assert requests and all(r["dryRun"] is True for r in requests)
    assert requests[0]["url"].endswith("/api/a2a/kagent/k8s-agent/")
    assert requests[0]["headers"]["X-User-Id"] == "khook:team-b"
    assert SUMMARY.fullmatch(out[-1])


def test_several_storms_each_then_the_totals(capsys: pytest.CaptureFixture[str]) -> None:
    chosen = [STORMS / "volume-multiattach", STORMS / "bad-tag"]
    assert main(["replay", *map(str, chosen)]) == 0
    out = capsys.readouterr().out.splitlines()
    per_storm = [line for line in out if re.fullmatch(r"[a-z0-9-]+: " + SUMMARY.pattern, line)]
    assert [line.split(":")[0] for line in per_storm] == ["volume-multiattach", "bad-tag"]
    totals = [
        sum(int(p.split("=")[1]) for p in (s.split(": ")[1].split()[i] for s in per_storm))
        for i in range(3)
    ]
    assert out[-1] == f"sessions={totals[0]} followups={totals[1]} held={totals[2]}"


def test_a_corpus_directory_stands_for_its_storms() -> None:
    found = expand([STORMS])
    assert STORMS / "registry-429" in found and STORMS / "README.md" not in found
    assert expand([STORMS / "node-lost"]) == [STORMS / "node-lost"]


def test_the_same_storm_gives_the_same_lines() -> None:
    first = [str(line) for line in play(open_storm(STORMS / "registry-429")).lines]
    second = [str(line) for line in play(open_storm(STORMS / "registry-429")).lines]
    assert first and first == second


def test_a_tinydb_store_remembers_across_replays(tmp_path: Path) -> None:
    storm = open_storm(STORMS / "volume-multiattach")
    options = ReplayOptions(dedup=f"tinydb:{tmp_path / 'dedup'}")
    assert play(storm, options).sessions == 1
    assert play(storm, options).sessions == 0  # the incident is on record already


def test_check_exits_1_on_a_difference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    storm = tmp_path / "volume-multiattach"
    shutil.copytree(STORMS / "volume-multiattach", storm)
    assert main(["replay", "--check", str(storm)]) == 0
    (storm / "expected.yaml").write_text(
        "sessions:\n  - {hook: team-b/incidents, cause: oom-kill, group: 'Deployment/*'}\n"
    )
    assert main(["replay", "--check", str(storm)]) == 1
    err = capsys.readouterr().err
    assert "missing session: hook=team-b/incidents cause=oom-kill" in err
    assert "unexpected session:" in err


def test_a_bare_recording_plays_against_the_hooks_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "stream.jsonl"
    shutil.copy(STORMS / "crashloop-45s" / "events.jsonl", recording)
    assert main(["replay", str(recording)]) == 2
    assert "no Hooks to play against (give --hooks)" in capsys.readouterr().err
    assert main(["replay", str(recording), "--hooks", str(HOOKS)]) == 0
    assert SUMMARY.fullmatch(capsys.readouterr().out.splitlines()[-1])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (FIRST_LINE + "not json\n", "stream.jsonl:2: not JSON"),
        ('{"kind": "Pod"}\n{"x": 1}\n', "neither a recorded request"),
        ("", "no requests"),
        ('{"headers": {"ce-id": "1"}, "body": {}}\n', "has no ce-time"),
    ],
    ids=["not-json", "not-a-request", "empty", "no-time"],
)
def test_unusable_recordings_exit_2(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "stream.jsonl"
    recording.write_text(content)
    assert main(["replay", str(recording), "--hooks", str(HOOKS)]) == 2
    assert message in capsys.readouterr().err


def test_unusable_storms_and_options_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    empty = tmp_path / "empty-storm"
    empty.mkdir()
    assert main(["replay", str(empty)]) == 2
    assert "holds events.jsonl or snapshot.json" in capsys.readouterr().err
    assert main(["replay", "--dedup", "lease", str(STORMS / "node-lost")]) == 2
    assert "memory or tinydb" in capsys.readouterr().err
    not_hooks = tmp_path / "hooks.yaml"
    not_hooks.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert main(["replay", "--hooks", str(not_hooks), str(STORMS / "node-lost")]) == 2
    assert "no Hooks in force" in capsys.readouterr().err


def test_a_request_khook_refuses_is_counted_not_fatal(tmp_path: Path) -> None:
    recording = tmp_path / "stream.jsonl"
    good = (STORMS / "volume-multiattach" / "events.jsonl").read_text().splitlines()
    bad = json.loads(good[0])
    bad["headers"]["Ce-Specversion"] = "9.9"  # not a CloudEvents version: a 400 in service
    recording.write_text("\n".join([json.dumps(bad), *good]) + "\n")
    problems: list[str] = []
    report = play(
        open_storm(recording),
        ReplayOptions(hooks=(str(STORMS / "volume-multiattach" / "hooks.yaml"),)),
        on_problem=problems.append,
    )
    assert report.rejected == 1 and report.events == len(good) + 1
    assert any("refused (400)" in p for p in problems)
    assert report.sessions == 1


def test_a_structured_cloudevent_line_plays_too(tmp_path: Path) -> None:
    first = json.loads((STORMS / "node-lost" / "events.jsonl").read_text().splitlines()[0])
    h = {k.lower(): v for k, v in first["headers"].items()}
    structured = {
        "specversion": "1.0",
        "id": h["ce-id"],
        "source": h["ce-source"],
        "type": h["ce-type"],
        "subject": h["ce-subject"],
        "time": h["ce-time"],
        "datacontenttype": "application/json",
        "data": first["body"],
    }
    recording = tmp_path / "structured.jsonl"
    recording.write_text(json.dumps(structured) + "\n")
    (request,) = read_requests(recording)
    assert (
        request.time is not None
        and request.headers["Content-Type"] == "application/cloudevents+json"
    )
    report = play(
        open_storm(recording), ReplayOptions(hooks=(str(STORMS / "node-lost" / "hooks.yaml"),))
    )
    assert report.events == 1 and report.rejected == 0 and report.sessions == 1


def test_snapshots_play_in_time_order_the_way_the_adapter_sends(tmp_path: Path) -> None:
    def event(name: str, count: int, last: str) -> dict[str, object]:
        return {
            "metadata": {"name": name, "namespace": "team-a", "uid": name, "resourceVersion": "1"},
            "involvedObject": {
                "kind": "Pod",
                "name": "web-6b766f7d44-x2x9z",
                "namespace": "team-a",
            },
            "reason": "BackOff",
            "message": "m",
            "type": "Warning",
            "count": count,
            "firstTimestamp": "2026-03-02T10:00:00Z",
            "lastTimestamp": last,
        }

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-6b766f7d44-x2x9z",
            "namespace": "team-a",
            "creationTimestamp": "2026-03-02T09:00:00Z",
        },
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": "2026-03-02T10:00:05Z"}
            ],
            "containerStatuses": [
                {"name": "app", "state": {"running": {"startedAt": "2026-03-02T10:00:07Z"}}}
            ],
        },
    }
    snapshot = {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            {
                "apiVersion": "v1",
                "kind": "EventList",
                "items": [
                    event("late", 4, "2026-03-02T10:00:09Z"),
                    event("once", 1, "2026-03-02T10:00:07Z"),
                ],
            },
            pod,
        ],
    }
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot, indent=2))
    requests = list(read_requests(path))
    kinds = [
        (r.headers["Ce-Kind"], r.headers["Ce-Name"], r.headers["Ce-Type"].rsplit(".", 1)[1])
        for r in requests
    ]
    # The pod at its newest status time (10:00:07) before the Event of the same second.
    assert kinds == [
        ("Pod", "web-6b766f7d44-x2x9z", "update"),
        ("Event", "once", "add"),
        ("Event", "late", "update"),
    ]
    assert requests[1].headers["Ce-Apiversion"] == "v1"  # filled in from the EventList
    assert (
        requests[0].headers["Ce-Subject"] == "/apis/v1/namespaces/team-a/pods/web-6b766f7d44-x2x9z"
    )


def test_a_snapshot_without_times_is_unusable(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(
        json.dumps({"kind": "List", "items": [{"apiVersion": "v1", "kind": "Pod", "metadata": {}}]})
    )
    with pytest.raises(ReplayInputError, match="no item names a time"):
        list(read_requests(path))


def test_agent_url_calls_a_real_agent_one_conversation_per_session(
    agent: A2AAgentServer,
) -> None:
    report = play(open_storm(STORMS / "registry-429"), ReplayOptions(agent_url=agent.url))
    messages = agent.messages()
    assert report.sessions >= 1 and len(messages) == report.sessions + report.followups
    # Follow-ups go into the conversation their session opened.
    assert len({m.context_id for m in messages}) == report.sessions
    assert all(m.agent == "kagent/k8s-agent" for m in messages)
