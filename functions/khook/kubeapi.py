"""The Kubernetes API, as khook uses it: a connected client and errors of khook's own.

Callers catch :class:`KubeError` and its kinds (kopf's way), never the client's
``ApiException``; a connection failure is a ``KubeError`` with status 0.

The official client is imported on first use, never at import: it takes longer to import than
the rest of khook, and local mode (Hooks from files, a local dedup store, no OIDC) never talks to
the cluster. The API groups khook calls are made here (:func:`core_v1`, ...), so the modules
that use them import no ``kubernetes`` of their own.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from khook import __version__

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds for one ordinary API call; watches set their own.
TIMEOUT = (5.0, 20.0)


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else f"{reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status in (0, 408, 429) or self.status >= 500


class NotFound(KubeError):
    pass


class AlreadyExists(KubeError):
    pass


class Conflict(KubeError):
    """The resourceVersion we read is no longer current: someone else wrote first."""


class Gone(KubeError):
    pass


def translate(exc: ApiException) -> KubeError:
    status = int(exc.status or 0)
    reason, message = str(exc.reason or ""), ""
    try:
        body = json.loads(exc.body) if exc.body else {}
    except (TypeError, ValueError):
        body = {}
    if isinstance(body, Mapping):
        reason = str(body.get("reason") or reason)
        message = str(body.get("message") or "")
    if status == 404:
        return NotFound(status, reason, message)
    if status == 409:
        return (AlreadyExists if reason == "AlreadyExists" else Conflict)(status, reason, message)
    if status == 410:
        return Gone(status, reason, message)
    return KubeError(status, reason, message)


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    # Loaded by now: a call through the client is what this wraps.
    import urllib3  # noqa: PLC0415
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    try:
        yield
    except ApiException as exc:
        raise translate(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(0, "Unreachable", str(exc)) from exc


def connect(*, in_cluster: bool, kubeconfig: str = "", component: str = "khook") -> ApiClient:
    """The in-cluster service account when running in a pod, else KUBECONFIG/~/.kube/config."""
    from kubernetes import client, config  # noqa: PLC0415 - on first use (see the docstring)

    configuration = client.Configuration()
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig or None, client_configuration=configuration
            )
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise KubeError(0, "NoCredentials", f"cannot load Kubernetes credentials: {exc}") from exc
    return identify(client.ApiClient(configuration), component)


def identify(api: ApiClient, component: str = "khook") -> ApiClient:
    """Say who is calling, so audit logs (and tests) can tell khook's requests apart."""
    api.user_agent = f"{component}/{__version__}"
    return api


def kubeconfig_namespace(kubeconfig: str = "") -> str:
    """The namespace of the kubeconfig's current context, or ''."""
    from kubernetes import config  # noqa: PLC0415 - on first use (see the docstring)

    try:
        _, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=kubeconfig or None
        )
    except (config.ConfigException, OSError, TypeError, ValueError):
        return ""
    return str((current or {}).get("context", {}).get("namespace") or "")


def core_v1(api: ApiClient) -> Any:
    """``kubernetes.client.CoreV1Api`` over ``api``: Events, Pods, Nodes, ConfigMaps."""
    from kubernetes import client  # noqa: PLC0415 - on first use (see the docstring)

    return client.CoreV1Api(api)


def coordination_v1(api: ApiClient) -> Any:
    """``kubernetes.client.CoordinationV1Api`` over ``api``: Leases."""
    from kubernetes import client  # noqa: PLC0415 - on first use (see the docstring)

    return client.CoordinationV1Api(api)


def custom_objects(api: ApiClient) -> Any:
    """``kubernetes.client.CustomObjectsApi`` over ``api``: Hooks."""
    from kubernetes import client  # noqa: PLC0415 - on first use (see the docstring)

    return client.CustomObjectsApi(api)


def body(obj: Mapping[str, Any]) -> Any:
    """A request body as plain JSON: the client sends a dict as it is, where its typed models
    would add nothing but a conversion."""
    return dict(obj)


def read_json(response: Any) -> dict[str, Any]:
    """The JSON of a ``_preload_content=False`` response, exactly as the API server sent it."""
    try:
        data = json.loads(response.data)
    except (TypeError, ValueError) as exc:
        raise KubeError(0, "BadResponse", f"the API server sent no JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise KubeError(0, "BadResponse", "the API server sent JSON that is not an object")
    return data


def preconditions(resource_version: str) -> Any:
    """DeleteOptions that delete only the version that was read."""
    return {"preconditions": {"resourceVersion": resource_version}}


def micro_time(value: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
