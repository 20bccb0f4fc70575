"""``khook replay``: recorded storms played through the real pipeline on a virtual clock.

- :func:`open_storm`, :func:`read_requests`, :func:`storm_requests`: reading a storm directory
  or a recording (JSON lines of adapter requests, or a ``kubectl ... -o json`` snapshot);
- :func:`play`: one storm through ``khook.runtime.build_pipeline`` with a
  :class:`VirtualClock` moved to each request's ``ce-time``; a :class:`ReplayReport` back;
- :func:`load_expectation`, :func:`check`: what a storm should come to, and the difference.
"""

from khook.replay._clock import VirtualClock
from khook.replay._corpus import (
    ReplayInputError,
    Request,
    Storm,
    expand,
    is_storm,
    open_storm,
    read_requests,
    storm_requests,
)
from khook.replay._expected import Bounds, Expectation, ExpectedSession, check, load_expectation
from khook.replay._report import FOLLOWUP, HOLD, SESSION, ReplayLine, ReplayReport
from khook.replay._run import ReplayOptions, play
from khook.replay._wire import adapter_headers, go_json, go_time, sendable, subject

__all__ = [
    "FOLLOWUP",
    "HOLD",
    "SESSION",
    "Bounds",
    "Expectation",
    "ExpectedSession",
    "ReplayInputError",
    "ReplayLine",
    "ReplayOptions",
    "ReplayReport",
    "Request",
    "Storm",
    "VirtualClock",
    "adapter_headers",
    "check",
    "expand",
    "go_json",
    "go_time",
    "is_storm",
    "load_expectation",
    "open_storm",
    "play",
    "read_requests",
    "sendable",
    "storm_requests",
    "subject",
]
