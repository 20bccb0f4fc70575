"""Decoding CloudEvents into cluster facts: modes, kinds, owners, and tenant boundaries."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from khook.core.events import (
    Action,
    ClusterEvent,
    Envelope,
    NotOfInterest,
    Reference,
    action_of,
    decode,
)
from khook.core.objects import ObjectRef, controller_owner, parse_time
from khook.core.reasons import Code
from tests.support.events import core_event, pod, sample, sample_object

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def envelope_of(name: str) -> Envelope:
    doc = sample(name)
    attrs = {k[3:].lower(): v for k, v in doc["headers"].items() if k.lower().startswith("ce-")}
    return Envelope(attrs, doc["body"])


@pytest.mark.parametrize(
    ("ce_type", "action", "reference"),
    [
        ("dev.knative.apiserver.resource.add", Action.ADD, False),
        ("dev.knative.apiserver.resource.update", Action.UPDATE, False),
        ("dev.knative.apiserver.resource.delete", Action.DELETE, False),
        ("dev.knative.apiserver.ref.update", Action.UPDATE, True),
        ("com.example.anything", Action.OBSERVED, False),
    ],
)
def test_action_from_type(ce_type: str, action: Action, reference: bool) -> None:
    assert action_of(ce_type) == (action, reference)


def test_pod_update_has_owner_through_replicaset() -> None:
    event = decode(envelope_of("oom-kill-pod-status"), NOW)
    assert isinstance(event, ClusterEvent)
    assert event.involved == ObjectRef(
        "Pod", "web-7d4b9c8f5-x2x9z", "default", "v1", "5c0b6a6e-1f55-4a43-9d0b-6c2f4f0f7a11"
    )
    assert event.owner is not None and event.owner.display == "Deployment/web"
    assert event.observed_at == parse_time("2026-11-23T09:20:06.123456789Z")


def test_replicaset_without_matching_hash_stays_a_replicaset() -> None:
    obj = pod(owner="standalone-rs")
    owner = controller_owner(obj)
    assert owner is not None and owner.display == "ReplicaSet/standalone-rs"


def test_event_involves_its_object_and_has_no_owner() -> None:
    event = decode(envelope_of("pod-restart-backoff-event"), NOW)
    assert isinstance(event, ClusterEvent)
    assert event.subject.kind == "Event"
    assert event.involved.display == "Pod/web-7d4b9c8f5-x2x9z"
    assert event.namespace == "default"
    assert event.owner is None


def test_node_event_is_cluster_scoped() -> None:
    event = decode(envelope_of("node-not-ready-event"), NOW)
    assert isinstance(event, ClusterEvent)
    assert event.namespace == ""


def test_delete_never_fires() -> None:
    assert isinstance(decode(envelope_of("ignored-delete-event"), NOW), NotOfInterest)


def test_reference_mode_needs_the_object() -> None:
    envelope = Envelope(
        {"type": "dev.knative.apiserver.ref.add"},
        {"kind": "Pod", "namespace": "default", "name": "oom-demo", "apiVersion": "v1"},
    )
    decoded = decode(envelope, NOW)
    assert isinstance(decoded, Reference)
    assert decoded.ref.display == "Pod/oom-demo"


@pytest.mark.parametrize(
    ("data", "code", "fragment"),
    [
        ("just text", Code.NOT_JSON, "the event data is a string, not a JSON object"),
        ([{"kind": "Event"}], Code.NOT_JSON, "the event data is an array, not a JSON object"),
        (None, Code.NOT_JSON, "the event has no data"),
        ({"hello": "world"}, Code.NOT_KUBERNETES, "has no apiVersion and no kind"),
        ({"apiVersion": "v1", "kind": ["Event"]}, Code.NOT_KUBERNETES, "kind must be a non-empty"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}},
            Code.UNSUPPORTED_KIND,
            "does not act on Deployment (apps/v1)",
        ),
        (
            {"apiVersion": "v1", "kind": "Evnt", "metadata": {"namespace": "a"}},
            Code.UNSUPPORTED_KIND,
            "did you mean Event (v1)?",
        ),
        (
            {"apiVersion": "v1", "kind": "Event", "metadata": {"namespace": "a"}},
            Code.NO_INVOLVED_OBJECT,
            "names no object",
        ),
    ],
)
def test_data_khook_does_not_understand(data: object, code: Code, fragment: str) -> None:
    decoded = decode(Envelope({"type": "x"}, data), NOW)
    assert isinstance(decoded, NotOfInterest)
    assert decoded.code is code and fragment in decoded.reason


@pytest.mark.parametrize(
    ("media", "says"), [("", "with no content type"), ("text/plain", "as 'text/plain'")]
)
def test_data_that_is_not_json_says_how_it_was_sent(media: str, says: str) -> None:
    attributes = {"type": "x", **({"datacontenttype": media} if media else {})}
    decoded = decode(Envelope(attributes, b'{"kind": "Event"}'), NOW)
    assert isinstance(decoded, NotOfInterest) and decoded.code is Code.NOT_JSON
    assert says in decoded.reason and "application/json" in decoded.reason


def test_a_tenant_event_cannot_speak_for_another_namespace() -> None:
    forged = core_event("BackOff", "Back-off restarting failed container", namespace="team-a")
    forged["involvedObject"]["namespace"] = "team-b"
    decoded = decode(Envelope({"type": "x"}, forged), NOW)
    assert isinstance(decoded, NotOfInterest)
    assert "tenants apart" in decoded.reason and decoded.code is Code.OTHER_NAMESPACE


def test_a_tenant_event_cannot_speak_for_a_node() -> None:
    forged = core_event("NodeNotReady", "Node x is not ready", type_="Normal", kind="Node")
    forged["metadata"]["namespace"] = "team-a"
    assert isinstance(decode(Envelope({"type": "x"}, forged), NOW), NotOfInterest)


@pytest.mark.parametrize("namespace", [None, ""])
def test_an_event_without_a_namespace_speaks_for_nobody(namespace: str | None) -> None:
    # Before: an Event with no metadata.namespace was accepted for any namespace's objects,
    # and one about a Node for the control namespace's Hooks.
    for involved_ns, kind in (("team-b", "Pod"), ("", "Node")):
        forged = core_event("BackOff", "Back-off restarting failed container", kind=kind)
        forged["involvedObject"]["namespace"] = involved_ns
        if namespace is None:
            del forged["metadata"]["namespace"]
        else:
            forged["metadata"]["namespace"] = namespace
        decoded = decode(Envelope({"type": "x"}, forged), NOW)
        assert isinstance(decoded, NotOfInterest)
        assert "no metadata.namespace" in decoded.reason


def test_a_pod_without_a_namespace_is_not_taken_for_a_cluster_scoped_object() -> None:
    forged = pod()
    del forged["metadata"]["namespace"]
    decoded = decode(Envelope({"type": "x"}, forged), NOW)
    assert isinstance(decoded, NotOfInterest)


def test_a_node_has_no_namespace_whatever_it_claims() -> None:
    forged = sample_object("node-not-ready-node-status")
    forged["metadata"]["namespace"] = "team-a"
    decoded = decode(Envelope({"type": "x"}, forged), NOW)
    assert isinstance(decoded, ClusterEvent)
    assert decoded.namespace == ""


def test_times_with_nanoseconds() -> None:
    parsed = parse_time("2026-11-23T09:19:39.432850202Z")
    assert parsed == datetime(2026, 11, 23, 9, 19, 39, 432850, tzinfo=UTC)
    assert parse_time("not a time") is None
    assert parse_time("0001-01-01T00:00:00+01:00") is None  # was an OverflowError
    assert parse_time("9999-12-31T23:59:59-01:00") is None
    assert parse_time(None) is None
