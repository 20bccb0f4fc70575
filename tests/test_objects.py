"""khook.core reads untyped JSON: the shortcuts taken for dicts (most of what arrives) must read
any other Mapping alike, and anything else as absent."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.events import Action, ClusterEvent, decode_object
from khook.core.health import is_healthy
from khook.core.objects import (
    ObjectRef,
    controller_owner,
    format_time,
    get_int,
    get_list,
    get_path,
    get_str,
)
from khook.core.signals import extract_signals
from tests.support.events import core_event, oom_status, pod

KEYS = st.sampled_from(
    ["metadata", "name", "namespace", "uid", "labels", "status", "kind", "apiVersion", "a"]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
PATHS = st.lists(KEYS, max_size=4)


def proxied(value: Any) -> Any:
    """``value`` with every dict in it a read-only Mapping that is not a dict."""
    if isinstance(value, dict):
        return MappingProxyType({k: proxied(v) for k, v in value.items()})
    if isinstance(value, list):
        return [proxied(v) for v in value]
    return value


def reference_path(obj: Any, path: list[str]) -> Any:
    for step in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(step)
    return obj


def reference_str(obj: Any, path: list[str]) -> str:
    value = reference_path(obj, path)
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


@settings(max_examples=300, deadline=None)
@given(JSON, PATHS)
def test_paths_read_dicts_and_other_mappings_alike(obj: Any, path: list[str]) -> None:
    found = reference_path(obj, path)
    for shown in (obj, proxied(obj)):
        assert get_str(shown, *path) == reference_str(obj, path)
        assert get_path(shown, *path) == found  # a proxy compares equal to its dict
        assert get_list(shown, *path) == (found if isinstance(found, list) else [])
        number = found if isinstance(found, int) and not isinstance(found, bool) else None
        assert get_int(shown, *path) == number


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_a_reference_given_the_kind_and_version_read_is_the_one_read_whole(obj: Any) -> None:
    # Decoding reads kind and apiVersion first, then hands them to ObjectRef.of.
    whole = ObjectRef.of(obj)
    assert ObjectRef.of(obj, get_str(obj, "kind"), get_str(obj, "apiVersion")) == whole
    assert ObjectRef.of(proxied(obj)) == whole


def decoded(obj: Any) -> ClusterEvent:
    event = decode_object(obj, action=Action.UPDATE, observed_at=datetime.now(UTC))
    assert isinstance(event, ClusterEvent), event
    return event


def oom_killed_pod() -> dict[str, Any]:
    return pod(
        "api-7d4b9c8f5-x2x9z",
        "default",
        owner="api-7d4b9c8f5",
        container_statuses=[oom_status(finished="2026-12-05T10:00:00Z")],
    )


@pytest.mark.parametrize(
    "obj",
    [oom_killed_pod(), pod("web-7d4b9c8f5-x2x9z"), core_event("BackOff", "Back-off restarting")],
    ids=["oom-killed pod", "pod", "event"],
)
def test_an_object_read_through_another_mapping_is_read_the_same(obj: dict[str, Any]) -> None:
    as_dict, as_proxy = decoded(obj), decoded(proxied(obj))
    assert as_proxy.subject == as_dict.subject
    assert as_dict.subject.name
    assert as_proxy.involved == as_dict.involved
    assert as_proxy.owner == as_dict.owner
    assert controller_owner(proxied(obj)) == controller_owner(obj)
    # The namespace decoding read, given, is the namespace controller_owner reads itself.
    assert controller_owner(obj, as_dict.subject.namespace) == controller_owner(obj)
    assert is_healthy(as_proxy) == is_healthy(as_dict)
    signals = [[(s.signal, s.reason) for s in extract_signals(e)] for e in (as_dict, as_proxy)]
    assert signals[0] == signals[1]


def test_an_oom_kill_read_through_another_mapping_shows_its_signal() -> None:
    # The parametrised test above compares; this one makes sure there was something to compare.
    assert extract_signals(decoded(proxied(oom_killed_pod())))
    assert controller_owner(proxied(oom_killed_pod())) is not None


def test_the_owner_of_a_cluster_scoped_object_is_cluster_scoped_whatever_it_claims() -> None:
    # Kubernetes lets a cluster-scoped object be owned only by a cluster-scoped one; a Node
    # that names a namespace (no real one does) does not give its owner one: decoding hands
    # controller_owner the namespace it settled on, "" for a Node.
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "worker-1",
            "namespace": "shop",
            "ownerReferences": [
                {"apiVersion": "x/v1", "kind": "Machine", "name": "m1", "controller": True}
            ],
        },
    }
    event = decoded(node)
    assert event.subject.namespace == ""
    assert event.owner is not None
    assert (event.owner.kind, event.owner.name, event.owner.namespace) == ("Machine", "m1", "")


def _strftime_form(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@settings(max_examples=3000)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),  # astimezone of the first day can fall before year 1
        max_value=datetime(9999, 12, 30),
        timezones=st.one_of(st.none(), st.just(UTC), st.timezones()),
    )
)
def test_format_time_writes_what_strftime_wrote(value: datetime) -> None:
    """format_time takes isoformat's path: the text is strftime's, whatever the time zone
    (none: local time), the microseconds (dropped) and the year (before 1000: strftime's)."""
    assert format_time(value) == _strftime_form(value)


def test_format_time_before_year_1000_is_strftimes() -> None:
    assert format_time(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == _strftime_form(
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)
    )
    assert format_time(datetime(2026, 12, 5, 21, 34, 0, 999999, tzinfo=UTC)) == (
        "2026-12-05T21:34:00Z"
    )
