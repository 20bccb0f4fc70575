"""The HTTP entry: a functions-framework target, served as ASGI.

    functions-framework --target handle --source functions/main.py --port 8080

It only checks the sender, reads the request (within its limits), parses the CloudEvent, hands
it to the pipeline (answered on the event loop when that needs no I/O, else on a worker
thread: ``_process``), and maps the outcome to a status: 202 with an empty body
for every accepted event (never the ``@cloud_event`` decorator's 200 ``OK``, which a Knative
Broker counts as a failed delivery), 400 for what is not a valid CloudEvent, 401/403 for a
sender that is not allowed (``KHOOK_AUTH``), 408 for a body that does not arrive in time, 413
for a body over the limit, 503 when a retry can fix it (never 500: an ApiServerSource drops a
500 at once).

ASGI, not WSGI, because a slow or stalled client must cost a socket, never a thread: the event
loop reads every request, answers the probes itself, and only a complete, parsed CloudEvent
reaches the pipeline; only what needs I/O reaches one of the bounded worker threads.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import functions_framework.aio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from khook import metrics
from khook.auth import AuthError
from khook.body import BodyTooLarge, read_body
from khook.core.cloudevent import CloudEventError, parse_lowercase
from khook.core.events import Envelope
from khook.core.outcome import Counts, Outcome, Status
from khook.core.reasons import Code, Reason
from khook.logs import log
from khook.runtime import NotReady, Runtime, current
from khook.settings import SettingsError
from khook.trace import handling

if TYPE_CHECKING:
    from khook.pipeline import Pipeline

logger = logging.getLogger("khook.http")

HEALTH_PATHS = ("/healthz", "/readyz")
METRICS_PATH = "/metrics"
# Not events: counting the probes and the scrapes would drown what deliveries get.
_UNCOUNTED = frozenset((*HEALTH_PATHS, METRICS_PATH))


class Answer(Response):
    """khook's answer: its headers given encoded (Starlette's ``headers`` argument would copy,
    lowercase and encode them again, on the event loop, for every event), and its
    ``X-Khook-Reason`` kept for the metric that counts it. A body is JSON."""

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: str, body: bytes = b""
    ) -> None:
        self.status_code = status
        self.background = None
        self.body = body
        length = (b"content-length", str(len(body)).encode("latin-1"))
        json = [(b"content-type", b"application/json")] if body else []
        self.raw_headers = [*headers, length, *json]
        self.reason_header = reason


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    return await _answer(request.scope, request.receive)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]


async def _answer(scope: Scope, receive: Receive) -> Response:
    """The answer to one request, from its ASGI scope and receive channel: all it reads, so
    no Starlette Request is made for an event."""
    try:
        response = await _handle(scope, receive)
    except Exception as exc:  # a bug must not take the worker down: say so, ask for a retry
        logger.exception("unexpected error handling a request")
        response = _response(
            503, error=Reason(Code.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        )
    if scope["path"] not in _UNCOUNTED:
        # Every answer but the scrape's (not counted) is an Answer, its reason kept on it.
        reason = response.reason_header if isinstance(response, Answer) else ""
        metrics.answered(response.status_code, reason)
    return response


ASGIApp = Callable[[Scope, Receive, Callable[[Any], Awaitable[None]]], Awaitable[None]]


def direct_posts(app: ASGIApp) -> ASGIApp:
    """``app``, functions-framework's app built from the entry file, with every POST (every
    event) handed straight to :func:`handle`: what each gunicorn worker serves, under `khook
    serve` and under ``functions-framework --target handle`` alike (khook.serving.hooks).

    functions-framework routes a POST on any path to ``handle`` through Starlette's router,
    its two middlewares (an execution id khook does not log, a 500 for what ``handle``
    already answers) and its own wrappers: about 20 µs of every event, a fifth of the
    request's cost in `make bench`. The answer is the same either way (tests/test_serve_app.py
    compares them); everything else (the probes, the scrape, any other method, lifespan)
    still goes through ``app``."""

    async def served(
        scope: Scope, receive: Receive, send: Callable[[Any], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        response = await _answer(scope, receive)
        await response(scope, receive, send)

    return served


async def _handle(scope: Scope, receive: Receive) -> Response:
    path = scope["path"]
    if path in HEALTH_PATHS:
        return await _health(path)
    if path == METRICS_PATH:
        return _metrics(scope["method"])
    if scope["method"] != "POST":
        response = _response(
            405, error=Reason(Code.METHOD_NOT_ALLOWED, "POST a CloudEvent to this URL")
        )
        response.headers["Allow"] = "POST"
        return response
    try:
        runtime = current()
    except SettingsError as exc:
        return _response(503, error=Reason(Code.CONFIG_ERROR, f"khook cannot start: {exc}"))
    headers = _headers(scope)
    if runtime.settings.auth != "none":
        refused = await _authenticate(runtime, headers)
        if refused is not None:
            return refused
    limit = runtime.settings.max_body_bytes
    declared = _content_length(headers)
    if declared is not None and declared > limit:
        return _response(
            413, error=Reason(Code.TOO_LARGE, f"body is {declared} bytes; limit {limit}")
        )
    try:
        body = await read_body(receive, limit, runtime.settings.request_timeout)
    except TimeoutError:
        waited = f"the body did not arrive within {runtime.settings.request_timeout:g}s"
        return _response(408, error=Reason(Code.BODY_TIMEOUT, waited))
    except BodyTooLarge:
        return _response(
            413, error=Reason(Code.TOO_LARGE, f"body exceeds the limit of {limit} bytes")
        )
    except ClientDisconnect:
        gone = "the client went away before sending the whole body"
        return _response(400, error=Reason(Code.INVALID_CLOUDEVENT, gone))
    metrics.body_size(len(body))
    try:
        envelope = parse_lowercase(headers, body)
    except CloudEventError as exc:
        return _response(400, error=Reason(Code.INVALID_CLOUDEVENT, str(exc)))
    try:
        # Its trace context goes on to the agent; its id, source, subject and trace id go on
        # every log line about it (khook.trace).
        with handling(headers, envelope.attributes):
            decided = _decide_now(runtime, envelope)
            outcome = decided if isinstance(decided, Outcome) else await runtime.run(decided)
    except NotReady as exc:
        return _response(503, error=Reason(Code.NOT_READY, str(exc)))
    return _outcome_response(outcome, runtime)


def _decide_now(runtime: Runtime, envelope: Envelope) -> Outcome | Callable[[Pipeline], Outcome]:
    """The outcome, when the event loop can decide it; else the rest of the work, for a
    worker thread (Runtime.run). Most events are answered here, for the cost of decoding and
    classifying them (Pipeline.screen: no I/O), and so are repeats of live incidents when the
    store can decide them without I/O (Pipeline.finish_now); the rest go to a worker thread,
    which costs a hand-over each way and may wait for the store, the agent or the API server.
    (A plain function, not a coroutine: most events never wait, and a coroutine more for
    each cost its making and its stepping.)"""
    pipeline = runtime.built()
    if pipeline is None:  # still being built: on a worker thread, which waits for it
        return lambda built: built.process(envelope)
    screened = pipeline.screen(envelope)
    rest = screened if isinstance(screened, Outcome) else pipeline.finish_now(screened)
    if isinstance(rest, Outcome):
        return rest
    return lambda built: built.finish(rest)


async def _authenticate(runtime: Runtime, headers: dict[str, str]) -> Response | None:
    """None when the sender may send; else the answer. Before the body is read: a sender that
    is not allowed costs no more than its headers. On a worker thread: verifying may read the
    cluster's signing keys."""
    try:
        await runtime.run(lambda pipeline: pipeline.authenticator.authenticate(headers))
    except NotReady as exc:
        return _response(503, error=Reason(Code.NOT_READY, str(exc)))
    except AuthError as exc:
        # The reason never holds the token.
        response = _response(
            exc.status, error=Reason(_AUTH_CODES.get(exc.status, Code.FORBIDDEN), exc.reason)
        )
        if exc.www_authenticate:
            response.headers["WWW-Authenticate"] = exc.www_authenticate
        if exc.status == 503:
            response.headers["Retry-After"] = "1"
        return response
    return None


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers, lowercase (as the ASGI server gives them); of a repeated header
    the first counts. Read from the scope: Starlette's Headers decodes them on every access."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _content_length(headers: dict[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isdigit():
        return None  # absent or malformed: the server's parser judges the framing
    return int(value)


async def _health(path: str) -> Response:
    if path == "/healthz":
        return _response(200, body={"status": "ok"}, reason=Reason(Code.OK, "alive"))
    try:
        runtime = current()
    except SettingsError as exc:
        broken = f"khook cannot start: {exc}"
        return _response(
            503,
            body={"status": "not ready", "error": broken},
            reason=Reason(Code.CONFIG_ERROR, broken),
        )
    state = runtime.readiness()
    if state.pop("ready"):
        return _response(200, body=state, reason=Reason(Code.OK, "ready"))
    why = str(state.get("error") or state.get("status") or "not ready")
    return _response(503, body=state, reason=Reason(Code.NOT_READY, why))


def _metrics(method: str) -> Response:
    """Prometheus's scrape, answered by the event loop like the probes (never queued behind
    events, never authenticated): a few milliseconds of formatting, no I/O but the workers'
    metric files in memory (khook.metrics)."""
    if method not in ("GET", "HEAD"):
        return Response(status_code=405, headers={"Allow": "GET"})
    return Response(metrics.scrape(), media_type=metrics.CONTENT_TYPE)


def _outcome_response(outcome: Outcome, runtime: Runtime) -> Response:
    if outcome.retryable:
        reasons = [outcome.error.text] if outcome.error else []
        reasons += [r.reason for r in outcome.results if r.status is Status.FAILED and r.retryable]
        response = _response(503, outcome=outcome, body={"error": "; ".join(reasons)})
        if outcome.retry_after is not None:
            cap = runtime.settings.max_retry_after
            response.headers["Retry-After"] = str(max(1, round(min(outcome.retry_after, cap))))
        return response
    return _response(202, outcome=outcome)


def _response(
    status: int,
    *,
    outcome: Outcome | None = None,
    error: Reason | None = None,
    body: dict[str, Any] | None = None,
    reason: Reason | None = None,
) -> Answer:
    if error is not None:
        body = {"error": error.text, "reason": error.code.value}
        reason = error
        log(
            logger,
            logging.WARNING if status < 500 else logging.ERROR,
            "request rejected",
            status=status,
            reason=error.code.value,
            error=error.text,
        )
    types = ",".join(outcome.event_types) if outcome else ""
    counts = outcome.counts() if outcome else Counts()
    if reason is None and outcome is not None:
        reason = outcome.reason()
    raw = [
        (b"x-khook-event-type", types.encode("latin-1") if types else b"none"),
        (b"x-khook-outcome", counts.header().encode("latin-1")),
    ]
    header = ""
    if reason is not None:
        header = reason.header()  # printable ASCII
        raw.append((b"x-khook-reason", header.encode("ascii")))
    return Answer(status, raw, header, b"" if body is None else orjson.dumps(body))


_AUTH_CODES = {401: Code.UNAUTHENTICATED, 403: Code.FORBIDDEN, 503: Code.AUTH_UNAVAILABLE}
