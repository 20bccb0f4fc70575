"""What the pipeline has found out about one event between its steps: what ``screen`` could
not answer without I/O (Screened), and the incidents of the Hooks it concerns (Plan, one Unit
per incident of a Hook), decided on the event loop or still to be decided on a thread."""

from __future__ import annotations

from dataclasses import dataclass, field

from khook.core.classify import Detection
from khook.core.correlate import Explained, Incident
from khook.core.dedup import DedupKey
from khook.core.events import ClusterEvent, Reference
from khook.core.hooks import Hook
from khook.core.outcome import FiringResult, Outcome
from khook.core.quick import quick_init
from khook.files import HookSet


@quick_init
@dataclass(frozen=True)
class Screened:
    """An event :meth:`Pipeline.screen` could not answer without I/O, and what it found;
    after :meth:`Pipeline.finish_now`, what it decided and what is left (``plan``)."""

    event: ClusterEvent | Reference
    detections: tuple[Detection, ...] = ()
    plan: Plan | None = None


@dataclass
class Unit:
    """The detections of one event that belong to one incident of one Hook: those still to be
    decided (``items``), and the results of those already decided (``done``)."""

    hook: Hook
    key: DedupKey
    items: list[Incident | Explained] = field(default_factory=list)
    done: list[FiringResult] = field(default_factory=list)


@dataclass
class Plan:
    """What one event concerns: its incidents (units), each Hook's, and what healed."""

    event: ClusterEvent
    types: tuple[str, ...]
    units: list[Unit]
    healed: tuple[FiringResult, ...] = ()
    # The Hooks it was made with on the event loop (as last checked); None: on a thread.
    hooks: HookSet | None = None

    def outcome(self, handled: list[list[FiringResult]]) -> Outcome:
        """The outcome, given the results of the units that had sightings left, in order."""
        rest = iter(handled)
        results = list(self.healed)
        for unit in self.units:
            results += unit.done
            if unit.items:
                results += next(rest)
        return Outcome(event_types=self.types, results=tuple(results), event=self.event)
