from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import orjson

from khook.clock import Clock
from khook.core.dedup import DedupKey, Record
from khook.kubeapi import (
    TIMEOUT,
    KubeError,
    NotFound,
    api_errors,
    body,
    core_v1,
    preconditions,
    read_json,
)
from khook.logs import log
from khook.stores._base import Change, StoreError, _Keep
from khook.stores._health import Problems, StoreHealth
from khook.stores._kube import hook_labels, managed_selector, with_retries

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

# A ConfigMap holds at most 1 MiB in all; stay well clear of it.
MAX_DATA_BYTES = 900 * 1024
logger = logging.getLogger("khook.dedup")


class ConfigMapRecords:
    """One ConfigMap per Hook, in the state namespace, holding the Hook's records as data
    entries (key digest -> record JSON). Every change is a read-modify-write with the
    resourceVersion that was read (409 Conflict: re-read and retry). Records that shield
    nothing are pruned on every write, and the oldest resolved ones make room when the
    ConfigMap would outgrow what one can hold."""

    def __init__(self, api: ApiClient, namespace: str, clock: Clock, retention: timedelta) -> None:
        self._api = api
        self._core = core_v1(api)
        self.namespace = namespace
        self._clock = clock
        self.retention = retention
        self._problems = Problems(clock)

    @staticmethod
    def name(hook: str) -> str:
        return "khook-dedup-" + hashlib.sha256(hook.encode()).hexdigest()[:16]

    def update(self, key: DedupKey, change: Change, *, expect_absent: bool = False) -> None:
        name = self.name(key.hook)

        def attempt() -> None:
            cm = self._read(name)
            data = dict((cm or {}).get("data") or {})
            current = self._load(name, key.digest, data.get(key.digest))
            if current is not None and current.key != key:
                current = None  # damaged: it names another incident; this one's is free
            result = change(current)
            if isinstance(result, _Keep):
                return
            if result is None:
                data.pop(key.digest, None)
            else:
                data[key.digest] = json.dumps(result.to_json(), separators=(",", ":"))
            data = self._fit(name, data, keep=key.digest)
            with api_errors():
                if cm is None:
                    self._core.create_namespaced_config_map(
                        self.namespace,
                        body(self._body(name, key.hook, data, None)),
                        _request_timeout=TIMEOUT,
                    )
                else:
                    self._core.replace_namespaced_config_map(
                        name,
                        self.namespace,
                        body(self._body(name, key.hook, data, cm)),
                        _request_timeout=TIMEOUT,
                    )

        with_retries("configmap", f"configmap {self.namespace}/{name}", attempt)

    def _fit(self, name: str, data: dict[str, str], keep: str) -> dict[str, str]:
        now = self._clock.now()
        loaded = {k: r for k, v in data.items() if (r := self._load(name, k, v)) is not None}
        fitted = {
            k: data[k]
            for k, r in loaded.items()
            if k == keep or not r.prunable(now, self.retention)
        }
        size = sum(len(k) + len(v) for k, v in fitted.items())
        # Oldest first, never a live one: a live record is an incident being handled.
        spare = sorted(
            (k for k in fitted if k != keep and not loaded[k].live(now)),
            key=lambda k: loaded[k].last_seen,
        )
        while size > MAX_DATA_BYTES and spare:
            k = spare.pop(0)
            size -= len(k) + len(fitted.pop(k))
        if size > MAX_DATA_BYTES:
            raise StoreError(
                f"configmap for this Hook would exceed {MAX_DATA_BYTES} bytes with only live "
                "records; use the lease store for Hooks with this many concurrent incidents"
            )
        return fitted

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            with api_errors():
                response = self._core.read_namespaced_config_map(
                    name, self.namespace, _preload_content=False, _request_timeout=TIMEOUT
                )
        except NotFound:
            return None
        return read_json(response)

    def _body(
        self, name: str, hook: str, data: dict[str, str], cm: dict[str, Any] | None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.namespace,
            "labels": hook_labels(hook),
            "annotations": {"khook.dev/hook": hook},
        }
        if cm is not None:
            metadata["resourceVersion"] = cm["metadata"]["resourceVersion"]
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    def records(self, hook: str) -> list[Record]:
        try:
            cm = self._read(self.name(hook))
        except KubeError as exc:
            raise StoreError(f"reading configmap for {hook}: {exc}") from exc
        name = self.name(hook)
        data = (cm or {}).get("data") or {}
        loaded = [self._load(name, k, v) for k, v in data.items()]
        return [r for r in loaded if r is not None and r.key.hook == hook]

    def prune(self, retention: timedelta) -> int:
        try:
            with api_errors():
                found = read_json(
                    self._core.list_namespaced_config_map(
                        self.namespace,
                        label_selector=managed_selector(),
                        _preload_content=False,
                        _request_timeout=TIMEOUT,
                    )
                )
        except KubeError as exc:
            raise StoreError(f"listing configmaps in {self.namespace}: {exc}") from exc
        now = self._clock.now()
        gone = 0
        for cm in found.get("items") or []:
            data = cm.get("data") or {}
            keep = {
                k: v
                for k, v in data.items()
                if (r := self._load(cm["metadata"]["name"], k, v)) is not None
                and not r.prunable(now, retention)
            }
            if data and len(keep) == len(data):
                continue
            try:
                with api_errors():
                    if keep:
                        cm["data"] = keep
                        self._core.replace_namespaced_config_map(
                            cm["metadata"]["name"],
                            self.namespace,
                            body(cm),
                            _request_timeout=TIMEOUT,
                        )
                    else:
                        self._core.delete_namespaced_config_map(
                            cm["metadata"]["name"],
                            self.namespace,
                            body=preconditions(cm["metadata"]["resourceVersion"]),
                            _request_timeout=TIMEOUT,
                        )
                gone += len(data) - len(keep)
            except KubeError:
                continue  # written meanwhile: the next round will see it
        return gone

    def _load(self, name: str, digest: str, raw: Any) -> Record | None:
        """One entry's record; None for an absent or damaged one (bad JSON, missing fields,
        absurd numbers), which counts as absent and is dropped on the next write."""
        if not raw:
            return None
        try:
            if not isinstance(raw, str):
                raise ValueError("not a string")
            record = Record.from_json(orjson.loads(raw))  # orjson: depth-limited, no inf/nan
            if record.key.digest != digest:
                raise ValueError("it is filed under another key")
        except ValueError as exc:
            if self._problems.add(
                f"ConfigMap {self.namespace}/{name} entry {digest[:40]} holds a damaged "
                f"record ({exc}): treated as absent",
                once=f"{name}/{digest}/{hashlib.sha256(str(raw).encode()).hexdigest()}",
            ):
                log(
                    logger,
                    logging.ERROR,
                    "dedup record damaged: treated as absent",
                    configmap=f"{self.namespace}/{name}",
                    entry=digest[:40],
                    reason=str(exc),
                )
            return None
        return record

    def health(self) -> StoreHealth:
        return self._problems.health()

    def close(self) -> None:
        pass
