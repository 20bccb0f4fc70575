"""What a storm should come to (``expected.yaml``), and checking a replay against it.

sessions:                 # exactly these sessions open, nothing else
  - hook: team-a/incidents
    cause: image-pull-failed          # the incident's cause (its highest event type)
    group: "Registry/registry.example.com/*"   # glob on the incident's group
followups: {min: 1, max: 3}          # follow-ups sent into open sessions
followupEvery: 5m                    # at least this apart per incident (the last excepted)
held: {min: 0, max: 0}               # incidents held that never opened a session
before: {measured: 32, reported: 32}  # sessions before incidents (documentation only)
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from khook.core.durations import DurationError, parse_duration
from khook.replay._corpus import ReplayInputError
from khook.replay._report import MESSAGES, SESSION, ReplayLine, ReplayReport

UNBOUNDED = 1_000_000


@dataclass(frozen=True)
class ExpectedSession:
    hook: str
    cause: str = ""  # "" = any
    group: str = "*"

    def matches(self, line: ReplayLine) -> bool:
        return (
            line.hook == self.hook
            and (not self.cause or line.cause == self.cause)
            and fnmatch.fnmatchcase(line.group, self.group)
        )

    def __str__(self) -> str:
        return f"hook={self.hook} cause={self.cause or '*'} group={self.group}"


@dataclass(frozen=True)
class Bounds:
    low: int = 0
    high: int = UNBOUNDED

    def holds(self, value: int) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        if self.low == self.high:
            return f"exactly {self.low}"
        return f"{self.low}..{self.high if self.high < UNBOUNDED else ''}"


@dataclass(frozen=True)
class Expectation:
    sessions: tuple[ExpectedSession, ...]
    followups: Bounds = Bounds()
    followup_every: timedelta | None = None
    held: Bounds = Bounds()
    before: Mapping[str, Any] | None = None
    title: str = ""


def load_expectation(path: Path) -> Expectation:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayInputError(f"{path}: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("sessions", []), list):
        raise ReplayInputError(f"{path}: expected a mapping with a sessions list")
    try:
        sessions = tuple(
            ExpectedSession(str(s["hook"]), str(s.get("cause", "")), str(s.get("group", "*")))
            for s in doc.get("sessions") or []
        )
        every = doc.get("followupEvery")
        return Expectation(
            sessions=sessions,
            followups=_bounds(doc.get("followups")),
            followup_every=parse_duration(str(every)) if every else None,
            held=_bounds(doc.get("held")),
            before=doc.get("before") if isinstance(doc.get("before"), Mapping) else None,
            title=str(doc.get("title", "")),
        )
    except (KeyError, TypeError, ValueError, DurationError) as exc:
        raise ReplayInputError(f"{path}: {exc!r}") from exc


def _bounds(raw: Any) -> Bounds:
    if raw is None:
        return Bounds()
    if isinstance(raw, int):
        return Bounds(raw, raw)
    return Bounds(int(raw.get("min", 0)), int(raw.get("max", UNBOUNDED)))


def check(report: ReplayReport, expected: Expectation) -> list[str]:
    """Every way the replay differs from the expectation; empty when it matches."""
    problems: list[str] = []
    sessions = [line for line in report.lines if line.kind == SESSION]
    unmatched = list(sessions)
    for want in expected.sessions:
        found = next((line for line in unmatched if want.matches(line)), None)
        if found is None:
            problems.append(f"missing session: {want}")
        else:
            unmatched.remove(found)
    problems += [f"unexpected session: {line}" for line in unmatched]
    if not expected.followups.holds(report.followups):
        problems.append(f"followups={report.followups}, expected {expected.followups}")
    if not expected.held.holds(report.held):
        problems.append(f"held={report.held}, expected {expected.held}")
    if expected.followup_every is not None:
        problems += _too_close(report, expected.followup_every)
    return problems


def _too_close(report: ReplayReport, every: timedelta) -> list[str]:
    """Follow-ups of one incident closer than ``every`` to the one before (the last may be
    the resolution, which always goes)."""
    problems = []
    by_incident: dict[str, list[ReplayLine]] = {}
    for line in report.lines:
        if line.kind in MESSAGES:
            by_incident.setdefault(f"{line.hook}|{line.key.id}", []).append(line)
    for followups in by_incident.values():
        for before, line in itertools.pairwise(followups[:-1]):
            if line.at - before.at < every:
                problems.append(f"follow-up {line.at - before.at} after the one before: {line}")
    return problems
