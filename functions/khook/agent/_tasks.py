"""A2A task states, and how an agent says that a task has ended and takes no more messages.

A task in a terminal state (completed, failed, canceled, rejected) cannot be continued: a
message naming it is refused with a JSON-RPC error. What servers answer (read from their code
and, for the a2a-sdk 1.x, from the real server in the tests):

- a2a-sdk 1.x (A2A 1.0 ``SendMessage`` and its 0.3 compat ``message/send``), as the A2A 1.0
  specification says: ``-32004`` UnsupportedOperationError,
  ``"Task <id> is in terminal state: TASK_STATE_COMPLETED"``;
- a2a-sdk 0.3.x (Kagent v0.7-v0.10 agents, passed through unchanged by Kagent's controller):
  ``-32602`` InvalidParamsError, ``"Task <id> is in terminal state: completed"``;
- a2a-go 2.x: ``-32602``, ``"task in a terminal state \\"TASK_STATE_COMPLETED\\": invalid
  params"``; a2a-go 0.3.x: ``-32602``, ``"invalid params"`` with the reason in ``data.error``.

So an ended task is recognised by both: one of those two codes, and the words "terminal
state" in the message or in ``data.error``. Any other error (a context that does not match
the task, an unknown task, an unsupported operation) is not this refusal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# The normalised states: A2A 0.3's names, which A2A 1.0's TASK_STATE_* names map onto.
TASK_STATES = (
    "submitted",
    "working",
    "input-required",
    "completed",
    "canceled",
    "failed",
    "rejected",
    "auth-required",
    "unknown",
)
TERMINAL_STATES = frozenset({"completed", "canceled", "failed", "rejected"})
FAILED_STATES = frozenset({"canceled", "failed", "rejected"})

UNSUPPORTED_OPERATION = -32004  # A2A 1.0 and a2a-sdk 1.x
INVALID_PARAMS = -32602  # a2a-sdk 0.3.x, a2a-go
_ENDED_CODES = frozenset({UNSUPPORTED_OPERATION, INVALID_PARAMS})
_ENDED_WORDS = re.compile(r"\bterminal state\b", re.IGNORECASE)
_TEXT_CHARS = 1024  # of an agent's error text, only this much is searched


def task_state(value: Any) -> str:
    """An agent's task state in either version, normalised to one of :data:`TASK_STATES`
    ("unknown" for anything else, A2A 1.0's TASK_STATE_UNSPECIFIED included)."""
    if not isinstance(value, str):
        return "unknown"
    state = value[:64].strip().removeprefix("TASK_STATE_").lower().replace("_", "-")
    return state if state in TASK_STATES else "unknown"


def is_terminal(state: str) -> bool:
    """Whether a task in ``state`` has ended (completed, failed, canceled, rejected): it takes
    no more messages, so a follow-up goes with the context id only (a new task in the same
    conversation). Accepts either version's names."""
    return task_state(state) in TERMINAL_STATES


def refuses_ended_task(code: int | None, message: Any, data: Any) -> bool:
    """Whether a JSON-RPC error is an agent refusing a message because the task it names has
    ended (see the module's docstring for what each server answers)."""
    if code not in _ENDED_CODES:
        return False
    texts = [message]
    if isinstance(data, Mapping):  # a2a-go 0.3.x: {"error": "task in a terminal state ..."}
        texts.append(data.get("error"))
    return any(isinstance(t, str) and _ENDED_WORDS.search(t[:_TEXT_CHARS]) for t in texts)
