"""Decoding: one CloudEvent (already parsed by the shell) into typed facts about the cluster."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from khook.core.objects import JSON, MAPPING, ObjectRef, controller_owner, get_str, parse_time
from khook.core.quick import quick_init
from khook.core.reasons import Code

APISERVER_PREFIX = "dev.knative.apiserver."

# Kinds khook understands, by (apiVersion, kind) of the object in the event's data.
EVENT_KINDS = frozenset({("v1", "Event"), ("events.k8s.io/v1", "Event")})
STATE_KINDS = frozenset({("v1", "Pod"), ("v1", "Node")})

# Kubernetes records Events about cluster-scoped objects in the "default" namespace.
CLUSTER_EVENTS_NAMESPACE = "default"
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Node",
        "Namespace",
        "PersistentVolume",
        "StorageClass",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CSINode",
        "PriorityClass",
        "RuntimeClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "VolumeAttachment",
    }
)


class Action(StrEnum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    OBSERVED = "observed"  # not from an ApiServerSource: a curl user, a test, another source


@quick_init
@dataclass(frozen=True)
class Envelope:
    """A CloudEvent as the shell parsed it: its attributes (extensions included) and data."""

    attributes: Mapping[str, str]
    data: Any

    @property
    def type(self) -> str:
        return self.attributes.get("type", "")

    @property
    def id(self) -> str:
        return self.attributes.get("id", "")


@quick_init
@dataclass(frozen=True)
class ClusterEvent:
    """The facts khook acts on. ``involved`` is what the incident is about: the Event's
    involved object, or the Pod/Node itself; its namespace decides which Hooks may see it."""

    action: Action
    object: JSON
    subject: ObjectRef
    involved: ObjectRef
    owner: ObjectRef | None
    observed_at: datetime
    envelope_id: str = ""
    envelope_type: str = ""
    source: str = ""

    @property
    def namespace(self) -> str:
        return self.involved.namespace


@dataclass(frozen=True)
class Reference:
    """A Reference-mode event: only the object's name arrived; it must be fetched to judge."""

    ref: ObjectRef
    action: Action
    observed_at: datetime
    envelope: Envelope = field(repr=False)


@dataclass(frozen=True)
class NotOfInterest:
    code: Code
    reason: str


Decoded = ClusterEvent | Reference | NotOfInterest


def action_of(ce_type: str) -> tuple[Action, bool]:
    """The action and whether the event is Reference mode, from the CloudEvent type."""
    if not ce_type.startswith(APISERVER_PREFIX):
        return Action.OBSERVED, False
    mode, _, verb = ce_type[len(APISERVER_PREFIX) :].partition(".")
    return _ACTIONS.get(verb, Action.OBSERVED), mode == "ref"


_ACTIONS = {action.value: action for action in Action}  # a dict: Action(verb) raises, slowly


def decode(envelope: Envelope, received_at: datetime) -> Decoded:
    action, reference_mode = action_of(envelope.type)
    observed_at = parse_time(envelope.attributes.get("time")) or received_at
    data = envelope.data
    if reference_mode:
        if not isinstance(data, MAPPING) or not get_str(data, "kind"):
            return NotOfInterest(
                Code.NOT_KUBERNETES, "reference-mode event without a kind/name in its data"
            )
        ref = ObjectRef(
            kind=get_str(data, "kind"),
            name=get_str(data, "name"),
            namespace=get_str(data, "namespace"),
            api_version=get_str(data, "apiVersion"),
        )
        return Reference(ref=ref, action=action, observed_at=observed_at, envelope=envelope)
    if isinstance(data, bytes | bytearray):
        media = envelope.attributes.get("datacontenttype", "")
        sent = f"as {media!r}" if media else "with no content type"
        return NotOfInterest(
            Code.NOT_JSON,
            f"the event data was sent {sent}: khook reads it only as JSON "
            "(Content-Type: application/json, as an ApiServerSource sends it)",
        )
    return decode_object(
        data,
        action=action,
        observed_at=observed_at,
        envelope_id=envelope.id,
        envelope_type=envelope.type,
        source=envelope.attributes.get("source", ""),
    )


def decode_object(
    data: Any,
    *,
    action: Action,
    observed_at: datetime,
    envelope_id: str = "",
    envelope_type: str = "",
    source: str = "",
) -> ClusterEvent | NotOfInterest:
    """Judge a Kubernetes object by its own apiVersion/kind, never by the envelope's claims."""
    if not isinstance(data, MAPPING):
        return NotOfInterest(Code.NOT_JSON, _not_json(data))
    api_version, kind = get_str(data, "apiVersion"), get_str(data, "kind")
    if not api_version or not kind:
        return NotOfInterest(Code.NOT_KUBERNETES, _not_kubernetes(data))
    key = (api_version, kind)
    if key not in EVENT_KINDS and key not in STATE_KINDS:
        return NotOfInterest(Code.UNSUPPORTED_KIND, _unsupported(api_version, kind))
    if action is Action.DELETE:
        return NotOfInterest(Code.DELETED, f"{kind} was deleted: deletions never fire")
    subject = ObjectRef.of(data, kind, api_version)
    # Whoever sent it, an object's namespace is the one the object itself names: an Event or a
    # Pod without one is not an object the API server could have sent; a Node has none.
    if kind in CLUSTER_SCOPED_KINDS:
        subject = replace(subject, namespace="")
    elif not subject.namespace:
        return NotOfInterest(
            Code.NO_NAMESPACE, f"{kind} {subject.name!r} has no metadata.namespace: ignored"
        )
    if key in EVENT_KINDS:
        involved = _involved_object(data)
        if involved is None:
            return NotOfInterest(
                Code.NO_INVOLVED_OBJECT,
                "the Event names no object (involvedObject, or regarding for events.k8s.io/v1, "
                "with a kind and a name)",
            )
        if not _event_may_speak_for(subject, involved):
            return NotOfInterest(
                Code.OTHER_NAMESPACE,
                f"Event in namespace {subject.namespace!r} about {involved.display} "
                f"in namespace {involved.namespace!r}: ignored to keep tenants apart",
            )
        owner = None
    else:
        involved = subject
        owner = controller_owner(data, subject.namespace)
    return ClusterEvent(
        action=action,
        object=data,
        subject=subject,
        involved=involved,
        owner=owner,
        observed_at=observed_at,
        envelope_id=envelope_id,
        envelope_type=envelope_type,
        source=source,
    )


def _involved_object(event: JSON) -> ObjectRef | None:
    ref = event.get("involvedObject") if event.get("apiVersion") == "v1" else event.get("regarding")
    if not isinstance(ref, MAPPING):
        return None
    kind, name = get_str(ref, "kind"), get_str(ref, "name")
    if not kind or not name:
        return None
    if kind in CLUSTER_SCOPED_KINDS:
        namespace = ""
    else:
        namespace = get_str(ref, "namespace") or get_str(event, "metadata", "namespace")
    return ObjectRef(kind, name, namespace, get_str(ref, "apiVersion"), get_str(ref, "uid"))


def _event_may_speak_for(event: ObjectRef, involved: ObjectRef) -> bool:
    """An Event may only describe objects of its own namespace, or cluster-scoped objects when
    it lives where Kubernetes records those. A tenant who can write Events in its namespace
    must not be able to raise incidents about another namespace or about Nodes."""
    if involved.namespace:
        return involved.namespace == event.namespace
    return event.namespace == CLUSTER_EVENTS_NAMESPACE


_JSON_TYPES = {list: "an array", str: "a string", bool: "a boolean", int: "a number"}


def _not_json(data: Any) -> str:
    if data is None:
        return "the event has no data: khook needs the Kubernetes object as a JSON object"
    shape = _JSON_TYPES.get(type(data), "a number" if isinstance(data, float) else "not JSON")
    return f"the event data is {shape}, not a JSON object (a Kubernetes object)"


def _not_kubernetes(data: Mapping[str, Any]) -> str:
    missing = [k for k in ("apiVersion", "kind") if not get_str(data, k)]
    wrong = [k for k in missing if k in data]
    if wrong:
        return (
            f"the event data's {' and '.join(wrong)} must be a non-empty string: "
            "not a Kubernetes object"
        )
    return f"the event data has no {' and no '.join(missing)}: not a Kubernetes object"


def _unsupported(api_version: str, kind: str) -> str:
    known = sorted(EVENT_KINDS | STATE_KINDS)
    text = f"khook does not act on {kind} ({api_version}) objects; it reads " + ", ".join(
        f"{k} ({v})" for v, k in known
    )
    # A typo ("Evnt", "pod", "core/v1") deserves to be named as one.
    near = [
        f"{k} ({v})"
        for v, k in known
        if (v, k) != (api_version, kind)
        and (difflib.SequenceMatcher(None, k.lower(), kind.lower()).ratio() >= 0.75)
        and (v == api_version or k == kind or difflib.get_close_matches(api_version, [v], 1, 0.6))
    ]
    return f"{text}; did you mean {' or '.join(near[:2])}?" if near else text
