"""Durations in the form Kubernetes users write them: Go's ``10m``, ``1h30m``, ``90s``, read
and shown."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse ``1h30m``/``10m``/``45s``/``500ms`` (and ``1d``); a bare number means seconds."""
    raw = text.strip() if isinstance(text, str) else ""
    if not raw:
        raise DurationError("duration is empty")
    if re.fullmatch(r"\d+(?:\.\d+)?", raw):
        return timedelta(seconds=float(raw))
    pos, total = 0, 0.0
    for match in _PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(raw):
        raise DurationError(f"invalid duration {text!r}: use forms like 30s, 10m, 1h30m")
    return timedelta(seconds=total)


def show_duration(delta: timedelta) -> str:
    """``2d3h``, ``5h``, ``2h30m``, ``15m``, ``45s``: the two largest units, as people say it."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = [f"{n}{unit}" for n, unit in parts[:2] if n]
    return "".join(shown) or "0s"
