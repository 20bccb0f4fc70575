"""The HTTP entry: a functions-framework target, served as ASGI.

    functions-framework --target handle --source functions/main.py --port 8080

It only checks the sender, reads the request (within its limits), parses the CloudEvent, hands
it to the pipeline on a worker thread, and maps the outcome to a status: 202 with an empty body
for every accepted event (never the ``@cloud_event`` decorator's 200 ``OK``, which a Knative
Broker counts as a failed delivery), 400 for what is not a valid CloudEvent, 401/403 for a
sender that is not allowed (``KHOOK_AUTH``), 408 for a body that does not arrive in time, 413
for a body over the limit, 503 when a retry can fix it (never 500: an ApiServerSource drops a
500 at once).

ASGI, not WSGI, because a slow or stalled client must cost a socket, never a thread: the event
loop reads every request, answers the probes itself, and only a complete, parsed CloudEvent
reaches one of the bounded worker threads that run the pipeline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import functions_framework.aio
import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from khook.auth import AuthError
from khook.core.cloudevent import CloudEventError, parse
from khook.core.outcome import Counts, Outcome, Status
from khook.logs import log
from khook.runtime import NotReady, Runtime, current
from khook.settings import SettingsError

logger = logging.getLogger("khook.http")

HEALTH_PATHS = ("/healthz", "/readyz")


class BodyTooLarge(ValueError):
    pass


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    try:
        return await _handle(request)
    except Exception as exc:  # a bug must not take the worker down: say so, ask for a retry
        logger.exception("unexpected error handling a request")
        return _response(503, error=f"internal error: {type(exc).__name__}")


async def _handle(request: Request) -> Response:
    path = request.url.path
    if path in HEALTH_PATHS:
        return await _health(path)
    if request.method != "POST":
        response = _response(405, error="POST a CloudEvent to this URL")
        response.headers["Allow"] = "POST"
        return response
    try:
        runtime = current()
    except SettingsError as exc:
        return _response(503, error=f"khook cannot start: {exc}")
    headers = _headers(request)
    if runtime.settings.auth != "none":
        refused = await _authenticate(runtime, headers)
        if refused is not None:
            return refused
    limit = runtime.settings.max_body_bytes
    declared = _content_length(request)
    if declared is not None and declared > limit:
        return _response(413, error=f"body is {declared} bytes; limit {limit}")
    try:
        body = await asyncio.wait_for(_read(request, limit), runtime.settings.request_timeout)
    except TimeoutError:
        return _response(
            408, error=f"the body did not arrive within {runtime.settings.request_timeout:g}s"
        )
    except BodyTooLarge:
        return _response(413, error=f"body exceeds the limit of {limit} bytes")
    except ClientDisconnect:
        return _response(400, error="the client went away before sending the whole body")
    try:
        envelope = parse(headers, body)
    except CloudEventError as exc:
        return _response(400, error=str(exc))
    try:
        outcome = await runtime.run(lambda pipeline: pipeline.process(envelope))
    except NotReady as exc:
        return _response(503, error=str(exc))
    return _outcome_response(outcome, runtime)


async def _authenticate(runtime: Runtime, headers: dict[str, str]) -> Response | None:
    """None when the sender may send; else the answer. Before the body is read: a sender that
    is not allowed costs no more than its headers. On a worker thread: verifying may read the
    cluster's signing keys."""
    try:
        await runtime.run(lambda pipeline: pipeline.authenticator.authenticate(headers))
    except NotReady as exc:
        return _response(503, error=str(exc))
    except AuthError as exc:
        response = _response(exc.status, error=exc.reason)  # the reason never holds the token
        if exc.www_authenticate:
            response.headers["WWW-Authenticate"] = exc.www_authenticate
        if exc.status == 503:
            response.headers["Retry-After"] = "1"
        return response
    return None


def _headers(request: Request) -> dict[str, str]:
    """The request's headers, lowercase; of a repeated header the first counts."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers.setdefault(name, value)
    return headers


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None or not value.isdigit():
        return None  # absent or malformed: the server's parser judges the framing
    return int(value)


async def _read(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _health(path: str) -> Response:
    if path == "/healthz":
        return _response(200, body={"status": "ok"})
    try:
        runtime = current()
    except SettingsError as exc:
        return _response(503, body={"status": "not ready", "error": f"khook cannot start: {exc}"})
    state = runtime.readiness()
    return _response(200 if state.pop("ready") else 503, body=state)


def _outcome_response(outcome: Outcome, runtime: Runtime) -> Response:
    if outcome.retryable:
        reasons = [outcome.error] if outcome.error else []
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
    error: str | None = None,
    body: dict[str, Any] | None = None,
) -> Response:
    if error is not None:
        body = {"error": error}
        log(
            logger,
            logging.WARNING if status < 500 else logging.ERROR,
            "request rejected",
            status=status,
            error=error,
        )
    if body is None:
        response = Response(status_code=status)  # an empty answer has no media type
    else:
        response = Response(orjson.dumps(body), status_code=status, media_type="application/json")
    types = list(outcome.event_types) if outcome else []
    response.headers["X-Khook-Event-Type"] = ",".join(types) or "none"
    response.headers["X-Khook-Outcome"] = (outcome.counts() if outcome else Counts()).header()
    return response
