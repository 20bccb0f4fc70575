"""Trace context from the request that brought an event to the agent call it causes.

khook records no spans of its own. So it passes the caller's context on unchanged, which the
W3C Trace Context spec allows a service that does not collect tracing data (section "Mutating
the traceparent field"): the agent's span then hangs under the span of the request into khook
(Knative's queue-proxy, the activator, the source), and the trace stays connected. Had khook
chosen a parent-id of its own, the agent's span would point at a span nobody reported.

Accepted, and forwarded only when well-formed (a malformed value is dropped, never passed on):

- ``traceparent`` (W3C): ``version-traceid-parentid-flags``, lowercase hex; version ``ff``,
  an all-zero trace-id or parent-id are invalid. Version ``00`` is exactly 55 characters and is
  passed on as it came. A higher version is parsed as the spec asks (its first four fields, a
  dash or the end after them) and passed on downgraded to ``00``, keeping only the sampled flag.
- ``tracestate`` (W3C): only with a valid ``traceparent`` (the spec forbids reading it
  otherwise); passed on unchanged when every member is a valid ``key=value`` and there are at
  most 32; else dropped.
- B3 (Zipkin, what Knative's tracing speaks): the ``b3`` single header
  (``traceid-spanid[-sampled[-parentspanid]]`` or a lone sampling state), and the
  ``X-B3-TraceId``/``X-B3-SpanId``/``X-B3-ParentSpanId``/``X-B3-Sampled``/``X-B3-Flags``
  headers, each checked against the B3 spec (ids are 16 or 32 lowercase hex, not all zero).

The context of the event being handled is held in a context variable: the HTTP entry binds it,
``Runtime.run`` and ``FanOut`` copy it into the threads that run the pipeline and the agent
calls, and the agent request carries it (``AgentRequest.trace``). Decision log lines carry its
``traceId`` (the W3C trace-id, else the B3 one).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field

from khook import logs

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
B3 = "b3"
B3_TRACE_ID = "x-b3-traceid"
B3_SPAN_ID = "x-b3-spanid"
B3_PARENT_SPAN_ID = "x-b3-parentspanid"
B3_SAMPLED = "x-b3-sampled"
B3_FLAGS = "x-b3-flags"

_HEX = re.compile(r"[0-9a-f]+")
_V00_LENGTH = 55
_STATE_MEMBERS = 32
# tracestate list members (W3C ABNF): a key of lowercase letters, digits and _-*/@ (up to 256
# characters, starting with a letter or digit; "tenant@system" multi-tenant keys included), a
# value of printable ASCII but "," and "=" that does not end in a space (up to 256).
_STATE_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_STATE_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_B3_SAMPLED = frozenset({"0", "1", "true", "false"})  # true/false: the spec's lenient reading
_B3_STATES = frozenset({"0", "1", "d"})


@dataclass(frozen=True)
class TraceContext:
    """What is passed on to the agent (``headers``, lowercase names) and what is logged."""

    headers: Mapping[str, str] = field(default_factory=dict)
    trace_id: str = ""  # the W3C trace-id, else the B3 one; "" without a trace
    span_id: str = ""  # the caller's span: W3C parent-id, else the B3 span id

    @property
    def log_fields(self) -> dict[str, str]:
        if not self.trace_id:
            return {}
        return {"traceId": self.trace_id, "spanId": self.span_id}


NO_TRACE = TraceContext()
_TRACE_HEADERS = frozenset(
    {TRACEPARENT, TRACESTATE, B3, B3_TRACE_ID, B3_SPAN_ID, B3_PARENT_SPAN_ID, B3_SAMPLED, B3_FLAGS}
)
_current: ContextVar[handling | None] = ContextVar("khook_trace", default=None)


def from_headers(headers: Mapping[str, str]) -> TraceContext:
    """The trace context of a request's headers (any case); what is not valid is left out."""
    if _TRACE_HEADERS.isdisjoint(map(str.lower, headers)):
        return NO_TRACE  # most requests: no trace to pass on
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    out: dict[str, str] = {}
    trace_id = span_id = ""
    parent = parse_traceparent(lower.get(TRACEPARENT, ""))
    if parent is not None:
        out[TRACEPARENT], trace_id, span_id = parent
        state = parse_tracestate(lower.get(TRACESTATE, ""))
        if state:
            out[TRACESTATE] = state
    b3_trace, b3_span = _b3(lower, out)
    return TraceContext(out, trace_id or b3_trace, span_id or b3_span)


def parse_traceparent(value: str) -> tuple[str, str, str] | None:
    """``(header to pass on, trace-id, parent-id)``, or None when ``value`` is not valid."""
    if len(value) < _V00_LENGTH or value[2:3] != "-":
        return None
    version = value[:2]
    if not _is_hex(version, 2) or version == "ff":
        return None
    if version == "00" and len(value) != _V00_LENGTH:
        return None
    if len(value) > _V00_LENGTH and value[_V00_LENGTH] != "-":
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if value[35] != "-" or value[52] != "-":
        return None
    if not (_is_id(trace_id, 32) and _is_id(parent_id, 16) and _is_hex(flags, 2)):
        return None
    if version != "00":  # passed on in the one version khook knows, the sampled flag only
        value = f"00-{trace_id}-{parent_id}-{int(flags, 16) & 1:02x}"
    return value, trace_id, parent_id


def parse_tracestate(value: str) -> str:
    """``value`` when it is a valid tracestate list (empty members allowed), else ''."""
    members = [m.strip(" \t") for m in value.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > _STATE_MEMBERS:
        return ""
    keys: set[str] = set()
    for member in members:
        key, sep, state = member.partition("=")
        if not sep or not _STATE_KEY.fullmatch(key) or not _STATE_VALUE.fullmatch(state):
            return ""
        if key in keys:
            return ""  # one entry per key, says the spec
        keys.add(key)
    return ",".join(members)


def _b3(lower: Mapping[str, str], out: dict[str, str]) -> tuple[str, str]:
    """Put the valid B3 headers into ``out``; the B3 trace and span ids (or '')."""
    ids = ("", "")
    single = lower.get(B3, "")
    if single and _valid_b3_single(single):
        out[B3] = single
        parts = single.split("-")
        if len(parts) >= 2:
            ids = (parts[0], parts[1])
    trace_id, span_id = lower.get(B3_TRACE_ID, ""), lower.get(B3_SPAN_ID, "")
    has_ids = _is_b3_trace_id(trace_id) and _is_id(span_id, 16)
    if has_ids:
        out[B3_TRACE_ID], out[B3_SPAN_ID] = trace_id, span_id
        parent = lower.get(B3_PARENT_SPAN_ID, "")
        if _is_id(parent, 16):
            out[B3_PARENT_SPAN_ID] = parent
        ids = ids if ids[0] else (trace_id, span_id)
    sampled = lower.get(B3_SAMPLED, "").lower()
    if sampled in _B3_SAMPLED:
        out[B3_SAMPLED] = lower[B3_SAMPLED]
    if lower.get(B3_FLAGS) == "1":
        out[B3_FLAGS] = "1"
    return ids


def _valid_b3_single(value: str) -> bool:
    parts = value.split("-")
    if len(parts) == 1:
        return parts[0] in _B3_STATES  # a sampling decision alone
    if len(parts) > 4 or not (_is_b3_trace_id(parts[0]) and _is_id(parts[1], 16)):
        return False
    if len(parts) >= 3 and parts[2] not in _B3_STATES:
        return False
    return len(parts) < 4 or _is_id(parts[3], 16)


def _is_b3_trace_id(value: str) -> bool:
    return _is_id(value, 32) or _is_id(value, 16)


def _is_id(value: str, length: int) -> bool:
    return _is_hex(value, length) and value.strip("0") != ""


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and _HEX.fullmatch(value) is not None


# ---- the context of the event being handled ------------------------------------------------


def current() -> TraceContext:
    """The trace context of the event this thread is handling (NO_TRACE outside one)."""
    event = _current.get()
    return NO_TRACE if event is None else event.context


def outgoing() -> dict[str, str]:
    """The headers to add to a request made on behalf of the current event."""
    return dict(current().headers)


class handling:  # a context manager, named for how it reads: `with handling(...)`
    """While one CloudEvent is handled: its trace context is current, and every log line says
    which event (its id, source and subject) and which trace (``traceId``, ``spanId``).

    Nothing is worked out up front: the trace context is parsed when first asked for (an
    agent call, a log line), the log fields when a line is written. Most events are answered
    with neither, and a class with ``__enter__`` costs a fraction of a generator's context
    manager: this runs once per request, on the event loop."""

    __slots__ = ("_attributes", "_context", "_headers", "_log_token", "_token")

    def __init__(self, headers: Mapping[str, str], attributes: Mapping[str, str]) -> None:
        self._headers = headers
        self._attributes = attributes
        self._context: TraceContext | None = None

    @property
    def context(self) -> TraceContext:
        if self._context is None:  # two threads may both parse it: the same answer
            self._context = from_headers(self._headers)
        return self._context

    def log_fields(self) -> dict[str, str]:
        attributes = self._attributes
        fields = {"ceId": attributes.get("id", ""), "ceSource": attributes.get("source", "")}
        subject = attributes.get("subject")
        if subject:
            fields["ceSubject"] = subject
        fields.update(self.context.log_fields)
        return fields

    def __enter__(self) -> handling:
        self._token = _current.set(self)
        self._log_token = logs.bind_lazy(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logs.unbind_lazy(self._log_token)
        _current.reset(self._token)
