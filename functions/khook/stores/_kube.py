"""What the two Kubernetes-backed stores share: labels, names, and the retry loop."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

from khook import metrics
from khook.kubeapi import AlreadyExists, Conflict, KubeError, NotFound
from khook.stores._base import StoreError

MANAGED_BY = {"app.kubernetes.io/managed-by": "khook"}
LABEL_HOOK_NAMESPACE = "khook.dev/hook-namespace"
LABEL_HOOK_NAME = "khook.dev/hook-name"
LABEL_EVENT_TYPE = "khook.dev/event-type"
ATTEMPTS = 10

T = TypeVar("T")


def label_value(text: str) -> str:
    """A label value (<= 63 chars of [A-Za-z0-9._-]); long names keep a hash suffix."""
    clean = re.sub(r"[^A-Za-z0-9._-]", "-", text).strip("-._")
    if len(clean) <= 63:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{clean[:52].rstrip('-._')}-{digest}"


def hook_labels(hook: str) -> dict[str, str]:
    namespace, _, name = hook.partition("/")
    return {
        **MANAGED_BY,
        LABEL_HOOK_NAMESPACE: label_value(namespace),
        LABEL_HOOK_NAME: label_value(name),
    }


def hook_selector(hook: str) -> str:
    return ",".join(f"{k}={v}" for k, v in hook_labels(hook).items())


def managed_selector() -> str:
    return ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())


def with_retries(store: str, what: str, attempt: Callable[[], T]) -> T:
    """Optimistic concurrency: on 409 (another replica wrote first) or a vanished object, read
    again and retry; any other API failure is a StoreError the caller may retry later.
    ``store`` (lease, configmap) labels the 409s counted."""
    last: KubeError | None = None
    for tries in range(ATTEMPTS):
        try:
            return attempt()
        except (Conflict, AlreadyExists, NotFound) as exc:
            if not isinstance(exc, NotFound):
                metrics.store_conflict(store)
            last = exc
        except KubeError as exc:
            raise StoreError(f"{what}: {exc}") from exc
        # Replicas that collided would collide again in lockstep: spread them out.
        time.sleep(random.uniform(0, min(0.2, 0.005 * 2**tries)))  # noqa: S311 - jitter
    raise StoreError(f"{what}: still conflicting after {ATTEMPTS} attempts: {last}")
