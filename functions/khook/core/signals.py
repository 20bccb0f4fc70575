"""Signals: the evidence in one object that something may be wrong.

An Event is one signal. A Pod or Node yields one signal per suspicious piece of state (a
container's waiting or terminated reason, a condition that is not True, the pod's status
reason). Every signal carries an *occurrence*: the identity of the incident it reports, so
that a Pod which keeps showing an old ``lastState`` on later updates is never taken for a new
incident, and its *time*, so that a stale one can be recognised.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from khook.core.events import ClusterEvent
from khook.core.objects import MAPPING, get_int, get_list, get_path, get_str, parse_time
from khook.core.quick import quick_init

# A Pod or Node yields at most this many signals of each sort, so that the cost of one object
# is bounded whatever it holds (a real Pod has a handful of containers and conditions).
CONTAINER_LIMIT = 64
CONDITION_LIMIT = 32


class Source(StrEnum):
    EVENT = "event"
    POD = "pod"
    NODE = "node"


class SignalKind(StrEnum):
    EVENT = "event"
    CONTAINER_WAITING = "containerWaiting"
    CONTAINER_TERMINATED = "containerTerminated"
    CONTAINER_LAST_TERMINATED = "containerLastTerminated"
    CONDITION = "condition"
    POD_STATUS = "podStatus"


@quick_init
@dataclass(frozen=True)
class Signal:
    source: Source
    signal: SignalKind
    reason: str
    message: str
    occurrence: str
    occurred_at: datetime | None
    kind: str = ""  # the kind the signal is about (an Event's involved kind)
    type: str = ""  # an Event's Normal/Warning
    condition: str = ""
    status: str = ""
    container: str = ""
    count: int = 1
    first_seen: datetime | None = None
    # How many times the object has failed this way, as the cluster counts it (an Event's
    # count, a container's restartCount); None where it does not say (a condition, whose
    # first_seen says since when instead).
    failures: int | None = None


def extract_signals(event: ClusterEvent) -> list[Signal]:
    kind = event.subject.kind
    if kind == "Event":
        return [_event_signal(event)]
    if kind == "Pod":
        return list(_pod_signals(event))
    if kind == "Node":
        return list(_node_signals(event))
    return []


def _event_signal(event: ClusterEvent) -> Signal:
    obj = event.object
    core_v1 = obj.get("apiVersion") == "v1"
    count = (
        get_int(obj, "series", "count")
        or get_int(obj, "count" if core_v1 else "deprecatedCount")
        or 1
    )
    created = parse_time(get_path(obj, "metadata", "creationTimestamp"))
    event_time = parse_time(obj.get("eventTime"))
    first = (
        parse_time(obj.get("firstTimestamp" if core_v1 else "deprecatedFirstTimestamp"))
        or event_time
        or created
    )
    last = (
        parse_time(get_path(obj, "series", "lastObservedTime"))
        or parse_time(obj.get("lastTimestamp" if core_v1 else "deprecatedLastTimestamp"))
        or event_time
        or created
    )
    identity = event.subject.uid or f"{event.subject.namespace}/{event.subject.name}"
    return Signal(
        source=Source.EVENT,
        signal=SignalKind.EVENT,
        reason=get_str(obj, "reason"),
        message=get_str(obj, "message" if core_v1 else "note"),
        occurrence=f"event/{identity}/{count}",
        occurred_at=last,
        kind=event.involved.kind,
        type=get_str(obj, "type"),
        count=count,
        first_seen=first,
        failures=count,
    )


def _pod_signals(event: ClusterEvent) -> Iterator[Signal]:
    pod = event.object
    pod_id = event.subject.uid or f"{event.subject.namespace}/{event.subject.name}"
    status = pod.get("status")
    statuses = [
        cs
        for field in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")
        for cs in get_list(status, field)
        if isinstance(cs, MAPPING)
    ]
    for cs in statuses[:CONTAINER_LIMIT]:
        yield from _container_signals(pod_id, cs)
    yield from _condition_signals(Source.POD, "Pod", pod_id, status)
    reason = get_str(status, "reason")
    if reason:
        yield Signal(
            source=Source.POD,
            signal=SignalKind.POD_STATUS,
            reason=reason,
            message=get_str(status, "message") or f"Pod is {get_str(status, 'phase')}: {reason}",
            occurrence=f"{pod_id}/status/{reason}",
            occurred_at=None,
            kind="Pod",
        )


def _container_signals(pod_id: str, cs: Mapping[str, Any]) -> Iterator[Signal]:
    name = get_str(cs, "name")
    restarts = get_int(cs, "restartCount") or 0
    last_finished = get_str(cs, "lastState", "terminated", "finishedAt")
    waiting = get_path(cs, "state", "waiting")
    if isinstance(waiting, MAPPING) and get_str(waiting, "reason"):
        reason = get_str(waiting, "reason")
        yield Signal(
            source=Source.POD,
            signal=SignalKind.CONTAINER_WAITING,
            reason=reason,
            message=get_str(waiting, "message")
            or f"Container {name} is waiting: {reason} (restarts: {restarts})",
            # One waiting spell per restart: ErrImagePull and ImagePullBackOff alternate
            # within one spell, CrashLoopBackOff begins a new spell at every crash.
            occurrence=f"{pod_id}/{name}/waiting/{restarts}",
            occurred_at=parse_time(last_finished) if reason == "CrashLoopBackOff" else None,
            kind="Pod",
            container=name,
            failures=restarts if reason == "CrashLoopBackOff" else None,
        )
    for kind, path in (
        (SignalKind.CONTAINER_TERMINATED, ("state", "terminated")),
        (SignalKind.CONTAINER_LAST_TERMINATED, ("lastState", "terminated")),
    ):
        term = get_path(cs, *path)
        if not isinstance(term, MAPPING) or not get_str(term, "reason"):
            continue
        finished = get_str(term, "finishedAt")
        # The same termination is first `state.terminated`, then `lastState.terminated`:
        # both name it by its finish time, so they are one occurrence.
        moment = finished or f"restart-{restarts}"
        yield Signal(
            source=Source.POD,
            signal=kind,
            reason=get_str(term, "reason"),
            message=_termination_message(name, term, restarts),
            occurrence=f"{pod_id}/{name}/terminated/{moment}",
            occurred_at=parse_time(finished),
            kind="Pod",
            container=name,
            failures=max(1, restarts),
        )


def _termination_message(container: str, term: Mapping[str, Any], restarts: int) -> str:
    reason = get_str(term, "reason")
    code = get_int(term, "exitCode")
    what = "was OOM-killed" if reason == "OOMKilled" else f"terminated ({reason})"
    parts = [f"Container {container} {what}"]
    details = []
    if code is not None:
        details.append(f"exit code {code}")
    details.append(f"restart count {restarts}")
    finished = get_str(term, "finishedAt")
    if finished:
        details.append(f"finished at {finished}")
    parts.append(f"({', '.join(details)})")
    text = " ".join(parts)
    extra = get_str(term, "message")
    return f"{text}: {extra}" if extra else text


def _condition_signals(source: Source, kind: str, obj_id: str, status: Any) -> Iterator[Signal]:
    for cond in get_list(status, "conditions")[:CONDITION_LIMIT]:
        if not isinstance(cond, MAPPING):
            continue
        ctype, cstatus = get_str(cond, "type"), get_str(cond, "status")
        healthy = cstatus == "True"
        # Pressure conditions are the other way round: True is the problem.
        if ctype.endswith("Pressure") or ctype == "NetworkUnavailable":
            healthy = cstatus == "False"
        if healthy or not ctype:
            continue
        changed = get_str(cond, "lastTransitionTime")
        reason = get_str(cond, "reason") or f"{ctype}{cstatus}"
        yield Signal(
            source=source,
            signal=SignalKind.CONDITION,
            reason=reason,
            message=get_str(cond, "message") or f"{kind} condition {ctype} is {cstatus}",
            occurrence=f"{obj_id}/condition/{ctype}/{changed}",
            occurred_at=parse_time(changed),
            kind=kind,
            condition=ctype,
            status=cstatus,
            first_seen=parse_time(changed),
        )


def _node_signals(event: ClusterEvent) -> Iterator[Signal]:
    node_id = event.subject.uid or event.subject.name
    yield from _condition_signals(Source.NODE, "Node", node_id, event.object.get("status"))
