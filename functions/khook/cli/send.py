"""``khook send``: post sample CloudEvents to a khook and say what each answer was.

Exit 0 when every event was taken, 1 when any failed (an answer that is not 2xx, a 2xx whose
``X-Khook-Outcome`` counts ``failed=N`` above 0, or a sample that cannot be read), 2 when the
server could not be reached (connection refused, a name that does not resolve, a timeout): the
files after that one are not sent.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from khook.cli._common import COMMANDS, SampleError, load_sample
from khook.settings import Settings
from khook.startup import shown_url

FAILED = 1
UNREACHABLE = 2
_FAILED_COUNT = re.compile(r"(?:^|\s)failed=(\d+)")


def _url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {value!r}")
    return value


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "send",
        help=COMMANDS["send"],
        description="Post CloudEvents from files (captured requests, structured CloudEvents or "
        "bare Kubernetes objects) and print each answer's status and X-Khook-* headers. For a "
        "khook with KHOOK_AUTH=token it sends the secret in KHOOK_AUTH_TOKEN(_FILE).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    p.add_argument("--to", required=True, metavar="URL", type=_url, help="the function's URL")
    p.add_argument(
        "--structured",
        action="store_true",
        help="send in structured mode (application/cloudevents+json) instead of binary",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (60)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    failures = 0
    token = Settings.from_env().read_auth_token()
    where = shown_url(args.to)  # what messages show: never a user:password@
    with httpx.Client(timeout=args.timeout) as client:
        for index, path in enumerate(args.files):
            try:
                headers, body = load_sample(path, structured=args.structured)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                response = client.post(args.to, headers=headers, content=body)
            except SampleError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            except httpx.TransportError as exc:  # refused, DNS, timeouts, a dropped connection
                left = len(args.files) - index - 1
                rest = f"; {left} more file(s) not sent" if left else ""
                print(f"{path}: cannot reach {where}: {_why(exc)}{rest}", file=sys.stderr)
                return UNREACHABLE
            print(f"{path}: {response.status_code} {response.reason_phrase}")
            for name in ("X-Khook-Event-Type", "X-Khook-Outcome", "X-Khook-Reason", "Retry-After"):
                if name in response.headers:
                    print(f"  {name}: {response.headers[name]}")
            if response.text:
                print(f"  {response.text.strip()}")
            failures += not response.is_success or _failed(response) > 0
    return FAILED if failures else 0


def _failed(response: httpx.Response) -> int:
    """``failed=N`` of the answer's X-Khook-Outcome (0 without one)."""
    found = _FAILED_COUNT.search(response.headers.get("X-Khook-Outcome", ""))
    return int(found.group(1)) if found else 0


def _why(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    # httpx's message may quote the URL it tried, credentials included: the cause's, not it.
    cause = exc.__cause__ or exc.__context__
    return str(cause or exc) or type(exc).__name__
