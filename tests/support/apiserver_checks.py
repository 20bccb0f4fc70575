"""Helpers for the API server double's own tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

READ = 5  # seconds a client waits for any answer or stream line
G, V = "kagent.dev", "v1alpha2"


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


def pod(name: str, **extra: Any) -> dict[str, Any]:
    spec = {"containers": [{"name": "app", "image": "nginx"}]}
    return {"metadata": {"name": name}, "spec": spec, **extra}


def hook(name: str, **extra: Any) -> dict[str, Any]:
    spec = {"eventConfigurations": [{"eventType": "pod-restart", "agentRef": {"name": "k8s"}}]}
    body = {"apiVersion": f"{G}/{V}", "kind": "Hook", "metadata": {"name": name}, "spec": spec}
    return {**body, **extra}


def refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The Status body of a call that must fail; its code is the HTTP status."""
    with pytest.raises(ApiException) as error:
        call(*args, **kwargs)
    body: dict[str, Any] = json.loads(error.value.body)
    assert (body["kind"], body["status"], body["code"]) == ("Status", "Failure", error.value.status)
    return body


def failure(code: int, reason: str, message: str, details: Any = None) -> dict[str, Any]:
    """A Status body as the real server shapes it (field order included)."""
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    status |= {"message": message, "reason": reason}
    return status | ({} if details is None else {"details": details}) | {"code": code}


def watching(list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The official watch helper (a generator); reads are bounded, and a server-side timeout
    stops the helper from retrying when a stream ends."""
    kwargs = {"timeout_seconds": 30, "_request_timeout": READ} | kwargs
    return watch.Watch().stream(list_call, *args, **kwargs)


def rv(obj: Any) -> int:
    meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata
    return int(meta["resourceVersion"] if isinstance(meta, dict) else meta.resource_version)


def seen(event: dict[str, Any]) -> tuple[str, str]:
    return event["type"], event["raw_object"]["metadata"].get("name", "")


def raw_events(response: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.read().decode().splitlines() if line]
