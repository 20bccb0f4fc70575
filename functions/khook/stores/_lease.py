from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any

from kubernetes import client

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record, State
from khook.core.objects import parse_time
from khook.kubeapi import (
    TIMEOUT,
    KubeError,
    NotFound,
    api_errors,
    body,
    micro_time,
    preconditions,
    read_json,
)
from khook.stores._base import Change, StoreError, _Keep
from khook.stores._kube import (
    LABEL_EVENT_TYPE,
    hook_labels,
    hook_selector,
    label_value,
    managed_selector,
    with_retries,
)

_A = "khook.dev/"


class LeaseRecords:
    """One ``coordination.k8s.io/v1`` Lease per incident, in the state namespace.

    Claim = create (409 AlreadyExists: another replica holds it). A Lease whose
    ``renewTime + leaseDurationSeconds`` has passed is taken over by an update carrying the
    resourceVersion that was read (409 Conflict: another replica won). ``holderIdentity`` is
    the pod that fired; annotations carry the record.
    """

    def __init__(self, api: client.ApiClient, namespace: str, identity: str, clock: Clock) -> None:
        self._api = api
        self._leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self._identity = identity
        self._clock = clock

    @staticmethod
    def name(key: DedupKey) -> str:
        return f"khook-{key.digest}"

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        name = self.name(key)
        first = [expect_absent]

        def attempt() -> None:
            if first[0]:
                first[0] = False
                guess = change(None)
                if isinstance(guess, _Keep) or guess is None:
                    return
                with api_errors():
                    self._leases.create_namespaced_lease(
                        self.namespace, body(self._body(key, guess, None)), _request_timeout=TIMEOUT
                    )
                return
            lease = self._read(name)
            current = self._record(lease) if lease else None
            result = change(current)
            if isinstance(result, _Keep):
                return
            with api_errors():
                if result is None:
                    if lease is not None:
                        self._leases.delete_namespaced_lease(
                            name,
                            self.namespace,
                            body=preconditions(lease["metadata"]["resourceVersion"]),
                            _request_timeout=TIMEOUT,
                        )
                elif lease is None:
                    self._leases.create_namespaced_lease(
                        self.namespace,
                        body(self._body(key, result, None)),
                        _request_timeout=TIMEOUT,
                    )
                else:
                    self._leases.replace_namespaced_lease(
                        name,
                        self.namespace,
                        body(self._body(key, result, lease)),
                        _request_timeout=TIMEOUT,
                    )

        with_retries(f"lease {self.namespace}/{name}", attempt)

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            with api_errors():
                response = self._leases.read_namespaced_lease(
                    name, self.namespace, _preload_content=False, _request_timeout=TIMEOUT
                )
        except NotFound:
            return None
        return read_json(response)

    def _body(self, key: DedupKey, record: Record, lease: dict[str, Any] | None) -> dict[str, Any]:
        transitions = 0
        metadata: dict[str, Any] = {
            "name": self.name(key),
            "namespace": self.namespace,
            "labels": {**hook_labels(key.hook), LABEL_EVENT_TYPE: label_value(key.event_type)},
            "annotations": record_annotations(record),
        }
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
            spec = lease.get("spec") or {}
            transitions = int(spec.get("leaseTransitions") or 0)
            if (lease.get("metadata", {}).get("annotations") or {}).get(
                _A + "claim"
            ) != record.holder:
                transitions += 1
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self._identity,
                "leaseDurationSeconds": max(1, math.ceil(record.window.total_seconds())),
                "acquireTime": micro_time(record.fired_at),
                "renewTime": micro_time(record.fired_at),
                "leaseTransitions": transitions,
            },
        }

    @staticmethod
    def _record(lease: dict[str, Any]) -> Record | None:
        notes = (lease.get("metadata") or {}).get("annotations") or {}
        spec = lease.get("spec") or {}
        fired = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        if _A + "key" not in notes or fired is None:
            return None  # not one of ours, or damaged: treat as free
        try:
            return record_from(notes, fired, int(spec.get("leaseDurationSeconds") or 0))
        except (KeyError, ValueError, TypeError):
            return None

    def records(self, hook: str) -> list[Record]:
        leases = self._list(hook_selector(hook))
        return [r for r in (self._record(lease) for lease in leases) if r is not None]

    def _list(self, selector: str) -> list[dict[str, Any]]:
        try:
            with api_errors():
                found = read_json(
                    self._leases.list_namespaced_lease(
                        self.namespace,
                        label_selector=selector,
                        _preload_content=False,
                        _request_timeout=TIMEOUT,
                    )
                )
        except KubeError as exc:
            raise StoreError(f"listing leases in {self.namespace}: {exc}") from exc
        return [item for item in found.get("items") or [] if isinstance(item, dict)]

    def prune(self, retention: timedelta) -> int:
        now = self._clock.now()
        gone = 0
        for lease in self._list(managed_selector()):
            record = self._record(lease)
            if record is not None and not record.prunable(now, retention):
                continue
            try:
                with api_errors():
                    self._leases.delete_namespaced_lease(
                        lease["metadata"]["name"],
                        self.namespace,
                        body=preconditions(lease["metadata"]["resourceVersion"]),
                        _request_timeout=TIMEOUT,
                    )
                gone += 1
            except KubeError:
                continue  # changed or gone meanwhile: leave it to the next round
        return gone

    def close(self) -> None:
        pass


def record_annotations(record: Record) -> dict[str, str]:
    return {
        _A + "key": record.key.id,
        _A + "first-seen": record.first_seen.isoformat(),
        _A + "last-seen": record.last_seen.isoformat(),
        _A + "count": str(record.count),
        _A + "state": record.state.value,
        _A + "task-id": record.task_id,
        _A + "context-id": record.context_id,
        _A + "confirmed": "true" if record.confirmed else "false",
        _A + "claim": record.holder,
        _A + "occurrences": json.dumps(list(record.occurrences)),
        _A + "resources": json.dumps(list(record.resources)),
    }


def record_from(notes: dict[str, str], fired_at: Any, window_seconds: int) -> Record:
    def when(name: str) -> Any:
        value = parse_time(notes[_A + name])
        if value is None:
            raise ValueError(name)
        return value

    return Record(
        key=DedupKey.from_id(notes[_A + "key"]),
        first_seen=when("first-seen"),
        last_seen=when("last-seen"),
        fired_at=fired_at,
        window=timedelta(seconds=window_seconds),
        count=int(notes[_A + "count"]),
        holder=notes[_A + "claim"],
        state=State(notes.get(_A + "state", "firing")),
        confirmed=notes.get(_A + "confirmed") == "true",
        occurrences=tuple(json.loads(notes.get(_A + "occurrences", "[]"))),
        resources=tuple(json.loads(notes.get(_A + "resources", "[]"))),
        task_id=notes.get(_A + "task-id", ""),
        context_id=notes.get(_A + "context-id", ""),
    )
