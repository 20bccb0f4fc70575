from __future__ import annotations

import json
import logging
import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from khook import metrics
from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.core.objects import parse_time
from khook.kubeapi import (
    TIMEOUT,
    AlreadyExists,
    KubeError,
    NotFound,
    api_errors,
    body,
    coordination_v1,
    micro_time,
    preconditions,
    read_json,
)
from khook.logs import log
from khook.stores._base import Change, StoreError, _Keep
from khook.stores._health import Problems, StoreHealth
from khook.stores._kube import (
    LABEL_EVENT_TYPE,
    hook_labels,
    hook_selector,
    label_value,
    managed_selector,
    with_retries,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_A = "khook.dev/"
logger = logging.getLogger("khook.dedup")


class LeaseRecords:
    """One ``coordination.k8s.io/v1`` Lease per incident, in the state namespace.

    Claim = create (409 AlreadyExists: another replica holds it). A Lease whose
    ``renewTime + leaseDurationSeconds`` has passed is taken over by an update carrying the
    resourceVersion that was read (409 Conflict: another replica won). ``holderIdentity`` is
    the pod that fired; annotations carry the record.
    """

    def __init__(self, api: ApiClient, namespace: str, identity: str, clock: Clock) -> None:
        self._api = api
        self._leases = coordination_v1(api)
        self.namespace = namespace
        self._identity = identity
        self._clock = clock
        self._problems = Problems(clock)

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
                try:
                    with api_errors():
                        self._leases.create_namespaced_lease(
                            self.namespace,
                            body(self._body(key, guess, None)),
                            _request_timeout=TIMEOUT,
                        )
                    return
                except AlreadyExists:
                    # Another replica holds the incident: read it now. Not a lockstep collision
                    # (its create is done), so no back-off as with_retries would wait.
                    metrics.store_conflict("lease")
            lease = self._read(name)
            current = self._record(lease) if lease else None
            if current is not None and current.key != key:
                assert lease is not None
                self._damaged(lease, "it names another incident")
                current = None  # this one's is free
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

        with_retries("lease", f"lease {self.namespace}/{name}", attempt)

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
                # The incident's session opened at acquireTime; every sighting renews it: the
                # Lease runs out leaseDurationSeconds (the cooldown) after the last one.
                "acquireTime": micro_time(record.fired_at),
                "renewTime": micro_time(record.last_seen),
                "leaseTransitions": transitions,
            },
        }

    def _record(self, lease: dict[str, Any]) -> Record | None:
        """The record a Lease carries; None for one that is not ours or is damaged (bad JSON,
        missing fields, absurd numbers or times), which counts as free."""
        notes = (lease.get("metadata") or {}).get("annotations") or {}
        spec = lease.get("spec") or {}
        if _A + "key" not in notes:
            return None  # not one of ours
        try:
            fired = _time(spec.get("acquireTime")) or _time(spec.get("renewTime"))
            if fired is None:
                raise ValueError("it has no acquireTime")
            return record_from(notes, fired, spec.get("leaseDurationSeconds"))
        except ValueError as exc:
            self._damaged(lease, str(exc))
            return None

    def _damaged(self, lease: dict[str, Any], reason: str) -> None:
        metadata = lease.get("metadata") or {}
        name = str(metadata.get("name", "?"))
        version = str(metadata.get("resourceVersion", ""))
        if self._problems.add(
            f"Lease {self.namespace}/{name} holds a damaged record ({reason}): treated as free",
            once=f"{name}@{version}",
        ):
            log(
                logger,
                logging.ERROR,
                "dedup record damaged: treated as free",
                lease=f"{self.namespace}/{name}",
                reason=reason,
            )

    def records(self, hook: str) -> list[Record]:
        leases = self._list(hook_selector(hook))
        found = (self._record(lease) for lease in leases)
        return [r for r in found if r is not None and r.key.hook == hook]

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

    def health(self) -> StoreHealth:
        return self._problems.health()

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
        _A + "incident": json.dumps(record.incident_json(), separators=(",", ":")),
    }


def record_from(notes: dict[str, Any], fired_at: datetime, window_seconds: Any) -> Record:
    """The record in a Lease's annotations; ValueError (only) for anything damaged."""

    def listed(name: str) -> Any:
        text = notes.get(_A + name, "[]")
        return orjson.loads(text) if isinstance(text, str) else text  # depth-limited

    count = notes.get(_A + "count")
    if not isinstance(count, str) or not count.isdigit() or len(count) > 19:
        raise ValueError(f"count is not a number: {str(count)[:40]!r}")
    return Record.from_json(
        {
            "key": notes.get(_A + "key"),
            "firstSeen": notes.get(_A + "first-seen"),
            "lastSeen": notes.get(_A + "last-seen"),
            "firedAt": fired_at.isoformat(),
            "windowSeconds": window_seconds,
            "count": int(count),
            "holder": notes.get(_A + "claim"),
            "state": notes.get(_A + "state", "firing"),
            "confirmed": notes.get(_A + "confirmed") == "true",
            "occurrences": listed("occurrences"),
            "resources": listed("resources"),
            "taskId": notes.get(_A + "task-id", ""),
            "contextId": notes.get(_A + "context-id", ""),
            "incident": listed("incident") if _A + "incident" in notes else {},
        }
    )


def _time(value: Any) -> datetime | None:
    try:
        return parse_time(value)
    except OverflowError as exc:  # an offset that pushes it past year 1 or 9999
        raise ValueError(f"time out of range: {str(value)[:40]!r}") from exc
