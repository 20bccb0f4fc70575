"""The store damage matrix: every kind of damage to the local store's files, to one record in
a good file, to its directory; to a Lease or a ConfigMap entry in the cluster stores. Each is
found, repaired (moved aside with a timestamp, dropped, recreated), logged and reported by
health(); nothing but a StoreError ever leaves a store, no request gets a 500, and lost state
costs at most a re-fire."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from khook.core.dedup import DedupKey, Observation, Verdict
from khook.kubeapi import identify
from khook.stores import (
    ConfigMapRecords,
    Deduplicator,
    LeaseRecords,
    StoreError,
    StoreHealth,
    TinyDBRecords,
)
from tests.conftest import FunctionFactory
from tests.support.agent import A2AAgentServer
from tests.support.apiserver import APIServer
from tests.support.clock import FakeClock
from tests.support.cluster import STATE_NAMESPACE, apiserver
from tests.support.events import oom_request, outcome

KEY = DedupKey("shop/h", "oom-kill", "shop", "Deployment/web")
WINDOW = timedelta(minutes=10)
AGE = timedelta(minutes=15)
STAMP = "20261123T092010Z"  # FakeClock's start, as a moved-aside file is named
OUTCOME = "X-Khook-Outcome"
FIRED = outcome(fired=1)
DUPLICATE = outcome(duplicate=1)


def obs(occurrence: str, clock: FakeClock) -> Observation:
    return Observation(occurrence, None, clock.now(), "Pod/web-1")


def claim(store: Any, clock: FakeClock, key: DedupKey = KEY, occurrence: str = "a") -> Verdict:
    dedup = Deduplicator(store, clock, AGE)
    return dedup.claim(key, obs(occurrence, clock), WINDOW).verdict


def neighbour(store: TinyDBRecords, key: DedupKey) -> DedupKey:
    """Another incident filed in the same shard as ``key``."""
    index = store.shard_of(key.id)
    for i in itertools.count():
        other = DedupKey(key.hook, key.event_type, key.namespace, f"Deployment/n{i}")
        if store.shard_of(other.id) == index:
            return other
    raise AssertionError("unreachable")


def only_problem(health: StoreHealth, *words: str) -> str:
    assert health.ready, health
    matching = [p for p in health.problems if all(w in p for w in words)]
    assert matching, health.problems
    assert matching[-1].startswith("2026-11-23T09:20:10Z "), "each problem carries its time"
    return matching[-1]


# ---- file damage: the whole shard is unusable --------------------------------------------


def make_directory(path: Path) -> None:
    path.mkdir()
    (path / "x").write_text("x")


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()


def make_symlink(path: Path) -> None:
    path.symlink_to("/etc/hostname")


def lock_of(shard: Path) -> Path:
    return shard.with_name(shard.name + ".lock")


def replaced_by(make: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(path: Path) -> None:
        path.unlink()
        make(path)

    return damage


FILE_DAMAGE: dict[str, Callable[[Path], object]] = {
    "records is a list": lambda p: p.write_text('{"records": []}'),
    "not JSON": lambda p: p.write_text("this is not { JSON"),
    "not an object": lambda p: p.write_text("[1, 2, 3]"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "binary junk": lambda p: p.write_bytes(bytes(range(256)) * 4),
    "deeply nested": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "a directory": replaced_by(make_directory),
    "a FIFO (would block a reader)": replaced_by(make_fifo),
    "a socket (unreadable)": replaced_by(make_socket),
    "a symlink": replaced_by(make_symlink),
    "over the size limit": lambda p: p.write_bytes(b" " * (16 * 1024 * 1024 + 1)),
}


@pytest.mark.parametrize("damage", FILE_DAMAGE, ids=list(FILE_DAMAGE))
def test_a_damaged_shard_is_moved_aside_and_started_afresh(
    damage: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    assert claim(store, clock) is Verdict.FIRE
    assert claim(store, clock, occurrence="b") is Verdict.DUPLICATE
    shard = store.shard_path(store.shard_of(KEY.id))
    FILE_DAMAGE[damage](shard)

    with caplog.at_level(logging.ERROR, logger="khook.dedup"):
        assert claim(store, clock, occurrence="c") is Verdict.FIRE, "lost state: one re-fire"
    assert claim(store, clock, occurrence="d") is Verdict.DUPLICATE, "and working again"
    moved = shard.with_name(f"{shard.name}.corrupt-{STAMP}")
    assert moved.exists() or moved.is_symlink(), sorted(p.name for p in shard.parent.iterdir())
    assert shard.is_file() and not shard.is_symlink()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "moved aside" in errors[0].getMessage()
    only_problem(store.health(), shard.name, "moved aside to", moved.name)


def test_a_shard_without_read_permission_is_moved_aside(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    shard = store.shard_path(store.shard_of(KEY.id))
    shard.chmod(0)
    try:
        shard.read_bytes()
    except PermissionError:
        pass
    else:  # root with CAP_DAC_OVERRIDE; `setpriv --inh-caps=-dac_override ...` runs it
        pytest.skip("this user reads a file whatever its mode")
    assert claim(store, clock, occurrence="b") is Verdict.FIRE
    only_problem(store.health(), shard.name, "cannot be read", "moved aside")


def test_a_damaged_shard_costs_only_its_own_records(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    elsewhere = next(
        DedupKey("shop/h", "oom-kill", "shop", f"Deployment/e{i}")
        for i in itertools.count()
        if store.shard_of(f"shop/h|oom-kill|shop|Deployment/e{i}") != store.shard_of(KEY.id)
    )
    claim(store, clock)
    claim(store, clock, elsewhere)
    store.shard_path(store.shard_of(KEY.id)).write_text("garbage")
    assert claim(store, clock, occurrence="b") is Verdict.FIRE
    assert claim(store, clock, elsewhere, occurrence="b") is Verdict.DUPLICATE


# ---- record damage: one bad record in a good file ----------------------------------------


def _edit(field: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        doc[field] = value
        return doc

    return edit


def _without(field: str) -> Callable[[dict[str, Any]], Any]:
    def edit(doc: dict[str, Any]) -> Any:
        del doc[field]
        return doc

    return edit


RECORD_DAMAGE: dict[str, Callable[[dict[str, Any]], Any]] = {
    "missing firedAt": _without("firedAt"),
    "missing key": _without("key"),
    "missing holder": _without("holder"),
    "count 1e999": _edit("count", "__1e999__"),
    "window 1e999": _edit("windowSeconds", "__1e999__"),
    "window NaN": _edit("windowSeconds", "__NaN__"),
    "window negative": _edit("windowSeconds", -5),
    "window of a century": _edit("windowSeconds", 100 * 365 * 86400),
    "count past 64 bits": _edit("count", 10**30),
    "count a string": _edit("count", "3"),
    "count true": _edit("count", True),
    "time not a time": _edit("firedAt", "yesterday"),
    "time overflowing": _edit("firedAt", "0001-01-01T00:00:00+01:00"),
    "time at the end of days": _edit("lastSeen", "9999-12-31T23:59:59+00:00"),
    "state unknown": _edit("state", "exploded"),
    "occurrences not strings": _edit("occurrences", [1, {"a": 2}]),
    "occurrences an object": _edit("occurrences", {"a": 1}),
    "key of another incident": _edit("key", "shop/h|oom-kill|shop|Deployment/other"),
    "key not a key": _edit("key", "nonsense"),
    "a list, not an object": lambda doc: [doc],
    "null": lambda doc: None,
}


def _write_records(path: Path, records: dict[str, Any]) -> None:
    text = json.dumps({"records": records})
    for token in ("1e999", "NaN"):
        text = text.replace(f'"__{token}__"', token)
    path.write_text(text)


@pytest.mark.parametrize("damage", RECORD_DAMAGE, ids=list(RECORD_DAMAGE))
def test_a_damaged_record_is_dropped_and_counts_as_absent(
    damage: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    other = neighbour(store, KEY)
    claim(store, clock)
    claim(store, clock, other)
    shard = store.shard_path(store.shard_of(KEY.id))
    records = json.loads(shard.read_text())["records"]
    records[KEY.id] = RECORD_DAMAGE[damage](records[KEY.id])
    _write_records(shard, records)

    with caplog.at_level(logging.ERROR, logger="khook.dedup"):
        assert claim(store, clock, occurrence="b") is Verdict.FIRE, "absent: fires again"
        assert claim(store, clock, other, occurrence="b") is Verdict.DUPLICATE, "neighbour kept"
    assert claim(store, clock, occurrence="c") is Verdict.DUPLICATE
    assert not list(shard.parent.glob("*.corrupt-*")), "the file itself was sound"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "dropped" in errors[0].getMessage()
    only_problem(store.health(), "dropped a damaged record", KEY.id)
    assert set(json.loads(shard.read_text())["records"]) == {KEY.id, other.id}


def test_deep_junk_beside_a_sound_record_cannot_stop_writes(
    tmp_path: Path, clock: FakeClock
) -> None:
    """orjson reads 600 levels but writes only 254: the shard is rewritten from its sound
    records, as to_json writes them."""
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    shard = store.shard_path(store.shard_of(KEY.id))
    records = json.loads(shard.read_text())["records"]
    records[KEY.id]["junk"] = json.loads("[" * 600 + "]" * 600)
    _write_records(shard, records)
    assert claim(store, clock, occurrence="b") is Verdict.DUPLICATE, "the record was sound"
    assert "junk" not in json.loads(shard.read_text())["records"][KEY.id]


def test_a_record_damaged_elsewhere_in_the_shard_is_dropped_by_pruning(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    other = neighbour(store, KEY)
    claim(store, clock)
    claim(store, clock, other)
    shard = store.shard_path(store.shard_of(KEY.id))
    records = json.loads(shard.read_text())["records"]
    records[other.id] = {"key": other.id}
    records["stray|key|x|y"] = records[KEY.id]  # filed under the wrong key and shard
    _write_records(shard, records)
    assert store.prune(AGE) == 0, "nothing was due; the damaged ones went as damage"
    assert set(json.loads(shard.read_text())["records"]) == {KEY.id}
    assert len([p for p in store.health().problems if "dropped" in p]) == 2


# ---- the directory and the lock files ----------------------------------------------------


def test_a_deleted_directory_is_recreated(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    shutil.rmtree(tmp_path / "dedup")
    assert claim(store, clock, occurrence="b") is Verdict.FIRE
    assert claim(store, clock, occurrence="c") is Verdict.DUPLICATE
    only_problem(store.health(), "was missing: created afresh")


def test_a_directory_replaced_by_a_file_is_moved_aside(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    shutil.rmtree(tmp_path / "dedup")
    (tmp_path / "dedup").write_text("junk")
    assert claim(store, clock, occurrence="b") is Verdict.FIRE
    assert (tmp_path / f"dedup.corrupt-{STAMP}").read_text() == "junk"
    assert (tmp_path / "dedup").is_dir()
    only_problem(store.health(), "dedup", "moved aside")


def test_a_lock_file_replaced_by_a_directory_keeps_the_state(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    shard = store.shard_path(store.shard_of(KEY.id))
    lock = lock_of(shard)
    replaced_by(make_directory)(lock)
    assert claim(store, clock, occurrence="b") is Verdict.DUPLICATE, "the records were sound"
    assert lock.is_file()
    only_problem(store.health(), lock.name, "moved aside")


def test_a_store_that_cannot_work_is_unready_until_it_can(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "state" / "dedup", clock)
    claim(store, clock)
    shutil.rmtree(tmp_path / "state")
    (tmp_path / "state").write_text("a file where a directory must be")
    with pytest.raises(StoreError):
        claim(store, clock, occurrence="b")
    health = store.health()
    assert not health.ready and "cannot" in health.problems[-1]
    (tmp_path / "state").unlink()
    assert store.health().ready, "not a permanent failure"
    assert claim(store, clock, occurrence="c") is Verdict.FIRE


def test_a_store_that_cannot_be_created_refuses_to_start(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot"):
        TinyDBRecords(tmp_path / "file" / "dedup", clock)


def test_moved_aside_files_are_bounded(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    for i in range(30):
        claim(store, clock, occurrence=f"o{i}")
        store.shard_path(store.shard_of(KEY.id)).write_text("garbage")
        clock.advance(1)
    claim(store, clock, occurrence="last")
    assert len(list((tmp_path / "dedup").glob("*.corrupt-*"))) == 20
    assert len(store.health().problems) == 10, "health lists the last ten"


def test_problems_older_than_an_hour_are_forgotten(tmp_path: Path, clock: FakeClock) -> None:
    store = TinyDBRecords(tmp_path / "dedup", clock)
    claim(store, clock)
    store.shard_path(store.shard_of(KEY.id)).write_text("garbage")
    claim(store, clock, occurrence="b")
    assert store.health().problems
    clock.advance(3601)
    assert store.health() == StoreHealth(ready=True, problems=())


# ---- the single-file store of before -----------------------------------------------------


def test_an_old_single_file_store_is_moved_into_the_directory(
    tmp_path: Path, clock: FakeClock
) -> None:
    old = tmp_path / "dedup.json"
    scratch = TinyDBRecords(tmp_path / "scratch", clock)
    claim(scratch, clock)
    record = scratch.get(KEY)
    assert record is not None
    old.write_text(json.dumps({"records": {"1": record.to_json(), "2": {"bad": 1}}}))
    store = TinyDBRecords(old, clock)
    assert old.is_dir()
    assert (tmp_path / f"dedup.json.migrated-{STAMP}").is_file()
    assert claim(store, clock, occurrence="b") is Verdict.DUPLICATE, "its records came along"


# ---- the cluster stores: damage is treated as absent -------------------------------------


@pytest.fixture
def server() -> Iterator[APIServer]:
    with apiserver() as s:
        yield s


LEASE_DAMAGE: dict[str, Callable[[dict[str, Any]], None]] = {
    "occurrences not JSON": lambda lease: _note(lease, "occurrences", "[not json"),
    "occurrences deeply nested": lambda lease: _note(lease, "occurrences", "[" * 5000),
    "occurrences not strings": lambda lease: _note(lease, "occurrences", "[1, 2]"),
    "first-seen missing": lambda lease: lease["metadata"]["annotations"].pop(
        "khook.dev/first-seen"
    ),
    "count 1e999": lambda lease: _note(lease, "count", "1e999"),
    "count huge": lambda lease: _note(lease, "count", "9" * 5000),
    "key not a key": lambda lease: _note(lease, "key", "nonsense"),
    "key of another incident": lambda lease: _note(lease, "key", "a/b|c|d|Deployment/e"),
    "last-seen overflowing": lambda lease: _note(lease, "last-seen", "0001-01-01T00:00:00+01:00"),
    "acquireTime at the end of days": lambda lease: lease["spec"].update(
        acquireTime="9999-12-31T23:59:59.000000Z"
    ),
    "lease duration of decades": lambda lease: lease["spec"].update(
        leaseDurationSeconds=2_000_000_000
    ),
}


def _note(lease: dict[str, Any], name: str, value: str) -> None:
    lease["metadata"]["annotations"][f"khook.dev/{name}"] = value


@pytest.mark.parametrize("damage", LEASE_DAMAGE, ids=list(LEASE_DAMAGE))
def test_a_damaged_lease_counts_as_free(damage: str, server: APIServer, clock: FakeClock) -> None:
    api = identify(server.api_client())
    store = LeaseRecords(api, STATE_NAMESPACE, "khook-0", clock)
    assert claim(store, clock) is Verdict.FIRE
    leases = kubernetes.client.CoordinationV1Api(api)
    lease: dict[str, Any] = api.sanitize_for_serialization(  # type: ignore[no-untyped-call]
        leases.read_namespaced_lease(LeaseRecords.name(KEY), STATE_NAMESPACE)
    )
    LEASE_DAMAGE[damage](lease)
    leases.replace_namespaced_lease(LeaseRecords.name(KEY), STATE_NAMESPACE, lease)  # type: ignore[arg-type]

    assert claim(store, clock, occurrence="b") is Verdict.FIRE, "damaged: taken over"
    assert claim(store, clock, occurrence="c") is Verdict.DUPLICATE
    assert store.records(KEY.hook)[0].key == KEY
    only_problem(store.health(), LeaseRecords.name(KEY), "damaged record")


CM_DAMAGE: dict[str, str] = {
    "not JSON": "{not json",
    "missing fields": '{"key": "shop/h|oom-kill|shop|Deployment/web"}',
    "count 1e999": "__count__1e999",
    "window NaN": "__windowSeconds__NaN",
    "deeply nested": "[" * 5000,
    "a list": "[1, 2]",
}


@pytest.mark.parametrize("damage", CM_DAMAGE, ids=list(CM_DAMAGE))
def test_a_damaged_configmap_entry_counts_as_absent(
    damage: str, server: APIServer, clock: FakeClock
) -> None:
    api = identify(server.api_client())
    store = ConfigMapRecords(api, STATE_NAMESPACE, clock, AGE)
    other = DedupKey(KEY.hook, KEY.event_type, KEY.namespace, "Deployment/db")
    claim(store, clock)
    claim(store, clock, other)
    core = kubernetes.client.CoreV1Api(api)
    name = ConfigMapRecords.name(KEY.hook)
    cm = core.read_namespaced_config_map(name, STATE_NAMESPACE)
    data: dict[str, str] = cm.data or {}
    bad = CM_DAMAGE[damage]
    if bad.startswith("__"):
        field, _, number = bad[2:].partition("__")
        text = json.dumps({**json.loads(data[KEY.digest]), field: "@@"})
        bad = text.replace('"@@"', number)
    data[KEY.digest] = bad
    cm.data = data
    core.replace_namespaced_config_map(name, STATE_NAMESPACE, cm)

    assert claim(store, clock, occurrence="b") is Verdict.FIRE, "absent: fires again"
    assert claim(store, clock, other, occurrence="b") is Verdict.DUPLICATE, "the other kept"
    assert {r.key for r in store.records(KEY.hook)} == {KEY, other}
    only_problem(store.health(), name, "damaged record")


# ---- through the real HTTP function ------------------------------------------------------


def _every_shard(directory: Path, damage: Callable[[Path], object]) -> None:
    shards = list(directory.glob("shard-*.json"))
    assert shards
    for shard in shards:
        damage(shard)


def _every_record(directory: Path, damage: Callable[[dict[str, Any]], Any]) -> None:
    for shard in directory.glob("shard-*.json"):
        records = json.loads(shard.read_text())["records"]
        _write_records(shard, {k: damage(v) for k, v in records.items()})


HTTP_DAMAGE: dict[str, tuple[Callable[[Path], object], str, str]] = {
    # name: (damage to the store directory, what the next delivery is, the problem reported)
    **{
        f"shard {name}": (
            lambda d, f=FILE_DAMAGE[name]: _every_shard(d, f),  # type: ignore[misc]
            FIRED,
            "moved aside",
        )
        for name in (
            "records is a list",
            "not JSON",
            "truncated",
            "a directory",
            "a socket (unreadable)",
        )
    },
    **{
        f"record {name}": (
            lambda d, f=RECORD_DAMAGE[name]: _every_record(d, f),  # type: ignore[misc]
            FIRED,
            "dropped a damaged record",
        )
        for name in ("missing firedAt", "count 1e999", "time overflowing", "null")
    },
    "directory deleted": (shutil.rmtree, FIRED, "was missing"),
    "lock files replaced by directories": (
        lambda d: _every_shard(d, lambda p: replaced_by(make_directory)(lock_of(p))),
        DUPLICATE,
        "moved aside",
    ),
}


@pytest.mark.parametrize("damage", HTTP_DAMAGE, ids=list(HTTP_DAMAGE))
def test_damage_through_http_is_never_a_500(
    damage: str, make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    directory = tmp_path / "dedup"
    fn = make_function(dedup=f"tinydb:{directory}")
    request = oom_request()
    assert fn.post(*request).headers[OUTCOME] == FIRED
    harm, expected, problem = HTTP_DAMAGE[damage]
    harm(directory)

    first = fn.post(*request)
    assert (first.status_code, first.headers[OUTCOME]) == (202, expected)
    again = fn.post(*request)
    assert (again.status_code, again.headers[OUTCOME]) == (202, DUPLICATE), "working again"
    assert len(agent.messages()) == (2 if expected == FIRED else 1), "at most one re-fire"
    assert fn.pipeline is not None
    health = fn.pipeline.dedup.health()
    assert health.ready and any(problem in p for p in health.problems), health
    ready = fn.get("/readyz")  # recovered: ready, and it says what it repaired
    assert ready.status_code == 200
    assert any(problem in p for p in ready.json()["store"]["problems"])


def test_an_unusable_store_answers_503_then_recovers(
    make_function: FunctionFactory, agent: A2AAgentServer, tmp_path: Path
) -> None:
    fn = make_function(dedup=f"tinydb:{tmp_path}/state/dedup")
    request = oom_request()
    assert fn.post(*request).headers[OUTCOME] == FIRED
    shutil.rmtree(tmp_path / "state")
    (tmp_path / "state").write_text("a file where a directory must be")
    refused = fn.post(*request)
    assert refused.status_code == 503, "retry later, not 500"
    assert fn.pipeline is not None and not fn.pipeline.dedup.health().ready
    unready = fn.get("/readyz")
    assert unready.status_code == 503 and "dedup store" in unready.json()["error"]
    (tmp_path / "state").unlink()
    assert fn.pipeline.dedup.health().ready
    assert fn.get("/readyz").status_code == 200
    assert fn.post(*request).headers[OUTCOME] == FIRED
    assert len(agent.messages()) == 2
