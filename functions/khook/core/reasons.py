"""Why khook answered what it answered: a stable, machine-readable code and a line of text.

Every answer carries one (``X-Khook-Reason: <code>; <text>``); metrics count ignored events by
code, and ``khook send`` and ``khook render`` print the same. Codes are a closed set: a client
or an alert may match on them, so a code is never renamed, only added.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from khook.core.quick import quick_init
from khook.core.text import fence

TEXT_LIMIT = 400  # characters of text in a header: enough for a sentence and a few names


class Code(StrEnum):
    # 202: the event was judged; the incidents it touched (the first of these any came to).
    FIRED = "fired"  # an agent session opened
    FOLLOWUP = "followup"  # an open session was told of a change, or of the resolution
    FAILED = "failed"  # a Hook's own configuration failed it for good (prompt, agent refusal)
    HELD = "held"  # counted in an incident below its threshold
    DUPLICATE = "duplicate"  # counted in an open incident: nothing new to tell
    STALE = "stale"  # a signal already older than KHOOK_MAX_SIGNAL_AGE when observed
    # 202: nothing to act on.
    NO_RULE = "no-rule"  # a Kubernetes object khook reads, but no classification rule matched
    NO_HOOK = "no-hook"  # classified, but no Hook in force wants it (and why)
    NOT_JSON = "not-json"  # the data is not a JSON object (its content type, or its shape)
    NOT_KUBERNETES = "not-kubernetes"  # a JSON object without apiVersion and kind
    UNSUPPORTED_KIND = "unsupported-kind"  # not an Event, a Pod or a Node
    DELETED = "deleted"  # deletions never fire
    NO_NAMESPACE = "no-namespace"  # an Event or a Pod without metadata.namespace
    NO_INVOLVED_OBJECT = "no-involved-object"  # an Event that names no object
    OTHER_NAMESPACE = "other-namespace"  # an Event speaking for another namespace or a Node
    NEEDS_OBJECT = "needs-object"  # a Reference-mode event and no cluster to read it from
    GONE = "gone"  # a Reference-mode event for an object that no longer exists
    # 4xx: the request itself.
    INVALID_CLOUDEVENT = "invalid-cloudevent"  # 400
    UNAUTHENTICATED = "unauthenticated"  # 401
    FORBIDDEN = "forbidden"  # 403
    METHOD_NOT_ALLOWED = "method-not-allowed"  # 405
    BODY_TIMEOUT = "body-timeout"  # 408
    TOO_LARGE = "too-large"  # 413
    # 503: a retry can fix it.
    AGENT_UNAVAILABLE = "agent-unavailable"  # the agent failed in a way a retry may fix
    IN_FLIGHT = "in-flight"  # another delivery is calling the agent for this incident
    NOT_READY = "not-ready"  # starting, Hooks not listed yet, no render process free
    STORE_UNAVAILABLE = "store-unavailable"  # the dedup store cannot be reached
    OBJECT_UNREADABLE = "object-unreadable"  # a Reference-mode object cannot be read now
    AUTH_UNAVAILABLE = "auth-unavailable"  # the cluster's signing keys cannot be read
    CONFIG_ERROR = "config-error"  # khook's own configuration is broken
    INTERNAL_ERROR = "internal-error"  # a bug: khook says so and asks for a retry
    # 200: the probes.
    OK = "ok"


# Codes for events khook read and chose not to act on: counted and logged (sampled) by code.
IGNORED = frozenset(
    {
        Code.NO_RULE,
        Code.NO_HOOK,
        Code.NOT_JSON,
        Code.NOT_KUBERNETES,
        Code.UNSUPPORTED_KIND,
        Code.DELETED,
        Code.NO_NAMESPACE,
        Code.NO_INVOLVED_OBJECT,
        Code.OTHER_NAMESPACE,
        Code.NEEDS_OBJECT,
        Code.GONE,
    }
)

# Why an agent call failed: ``timeout`` and ``connection`` (the network), ``http`` (a status
# that is not 2xx), ``jsonrpc`` (a JSON-RPC error), ``answer`` (an answer khook cannot read or
# will not take), ``task-failed`` (the agent failed, rejected or canceled the task),
# ``circuit-open`` (khook paused calls to a failing agent), ``refused`` (khook would not send
# it: an invalid agent, token or id).
AGENT_ERROR_KINDS = (
    "timeout",
    "connection",
    "http",
    "jsonrpc",
    "answer",
    "task-failed",
    "circuit-open",
    "refused",
)

# Why one Hook configuration failed (a bounded label): the dedup store, the prompt (the Hook's
# fault), no render process free in time, or the agent call (its error kind).
FAILURE_CLASSES = ("store", "render", "sandbox", *AGENT_ERROR_KINDS)


@quick_init
@dataclass(frozen=True)
class Reason:
    code: Code
    text: str

    def header(self) -> str:
        """``<code>; <text>``: one printable ASCII line (a header cannot carry more)."""
        text = fence(self.text, TEXT_LIMIT)
        if not text.isascii():  # most reasons are: no copies to make
            text = text.replace("…", "...").encode("ascii", "replace").decode("ascii")
        return f"{self.code.value}; {text}" if text else self.code.value

    def __str__(self) -> str:
        return f"{self.code.value}: {self.text}"
