"""Reading a stored incident record back: every field checked, since stored bytes may have been
damaged or edited (a file, a Lease annotation, a ConfigMap entry). Anything malformed raises
ValueError, and nothing else; numbers and times are kept inside ranges datetime arithmetic can
take."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from khook.core.objects import parse_time

# What a stored record may hold: outside these it is damage, not data (and datetime arithmetic
# on it could overflow).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_STORED_WINDOW = timedelta(days=3650)
MAX_STORED_COUNT = 2**63 - 1
_T = TypeVar("_T")
_REQUIRED: Any = object()


def field(raw: Mapping[str, Any], name: str, kind: type[_T], default: _T = _REQUIRED) -> _T:
    if name not in raw:
        if default is _REQUIRED:
            raise ValueError(f"record field {name} is missing")
        return default
    value = raw[name]
    # bool is an int to Python, never to a record.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"record field {name} is not a {kind.__name__}: {short(value)}")
    return value


def key_parts(text: str) -> tuple[str, str, str, str]:
    parts = text.split("|", 3)
    if len(parts) != 4 or "/" not in parts[0] or not parts[1] or not parts[3]:
        raise ValueError(f"record key is not hook|eventType|namespace|group: {short(text)}")
    return parts[0], parts[1], parts[2], parts[3]


def time(raw: Mapping[str, Any], name: str) -> datetime:
    text = field(raw, name, str)
    value = parse_time(text)
    if value is None or not _EARLIEST <= value < _LATEST:
        raise ValueError(f"record field {name} is not a time in range: {short(text)}")
    return value


def optional_time(raw: Mapping[str, Any], name: str) -> datetime | None:
    return None if raw.get(name) in (None, "") else time(raw, name)


def window(raw: Mapping[str, Any], name: str = "windowSeconds") -> timedelta:
    seconds = raw.get(name)
    if (
        not isinstance(seconds, int | float)
        or isinstance(seconds, bool)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_STORED_WINDOW.total_seconds()
    ):
        raise ValueError(f"record field {name} is not a window: {short(seconds)}")
    return timedelta(seconds=seconds)


def count(raw: Mapping[str, Any], name: str = "count", default: int | None = None) -> int:
    value = field(raw, name, int) if default is None else field(raw, name, int, default)
    if not 0 <= value <= MAX_STORED_COUNT:
        raise ValueError(f"record field {name} is out of range: {short(value)}")
    return value


def choice(raw: Mapping[str, Any], name: str, choices: frozenset[str], default: str) -> str:
    value = field(raw, name, str, default)
    if value not in choices:
        raise ValueError(f"record field {name} is not one of {sorted(choices)}: {short(value)}")
    return value


def strings(raw: Mapping[str, Any], name: str, limit: int) -> tuple[str, ...]:
    items = field(raw, name, list, [])
    if not all(isinstance(item, str) for item in items):
        raise ValueError(f"record field {name} is not a list of strings")
    return tuple(items[-limit:])  # what a record would remember anyway


def counted(raw: Mapping[str, Any], name: str, limit: int) -> tuple[tuple[str, int], ...]:
    """A list of ``[name, count]`` pairs."""
    items = field(raw, name, list, [])
    out = []
    for item in items[-limit:]:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], int)
            or isinstance(item[1], bool)
            or not 0 <= item[1] <= MAX_STORED_COUNT
        ):
            raise ValueError(f"record field {name} holds {short(item)}, not [name, count]")
        out.append((item[0], item[1]))
    return tuple(out)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
