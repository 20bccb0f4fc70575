"""The bare function khook is compared with: the same functions-framework stack (ASGI, gunicorn
with uvicorn workers), a function that only reads the body, parses the CloudEvent with the
cloudevents SDK and answers an empty 202.

    functions-framework --target handle --source tests/bench/bare.py

Anything that is not a CloudEvent (a probe) gets 400: nothing here is khook's.
"""

from __future__ import annotations

import functions_framework.aio
from cloudevents.exceptions import GenericException
from cloudevents.http import from_http
from starlette.requests import Request
from starlette.responses import Response


@functions_framework.aio.http
async def handle(request: Request) -> Response:
    body = await request.body()
    try:
        from_http(dict(request.headers), body)
    except GenericException:
        return Response(status_code=400)
    return Response(status_code=202)
