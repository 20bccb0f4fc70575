"""Text from the cluster is data: cleaned of control characters and capped before use."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any

NAME_LIMIT = 253
MESSAGE_LIMIT = 2000
VALUE_LIMIT = 1024
_LIST_LIMIT = 100
_DEPTH_LIMIT = 12
_KEEP = {"\n", "\t"}
_DROPPED_METADATA = ("managedFields",)
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def clean(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Drop control and format characters (bidi overrides, zero-width), cap the length."""
    kept = "".join(ch for ch in text if ch in _KEEP or unicodedata.category(ch) not in ("Cc", "Cf"))
    if len(kept) > limit:
        return kept[: limit - 1] + "…"
    return kept


def clean_object(value: Any, depth: int = 0) -> Any:
    """A copy of a Kubernetes object that is safe to hand to a template."""
    if depth > _DEPTH_LIMIT:
        return None
    if isinstance(value, str):
        return clean(value, VALUE_LIMIT)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if depth == 1 and key in _DROPPED_METADATA:
                continue
            if key in _DROPPED_ANNOTATIONS:
                continue
            out[clean(str(key), NAME_LIMIT)] = clean_object(item, depth + 1)
        return out
    if isinstance(value, list):
        return [clean_object(item, depth + 1) for item in value[:_LIST_LIMIT]]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return clean(str(value), VALUE_LIMIT)
