from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from khook.cli._common import SampleError, load_sample
from khook.settings import Settings


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "send",
        help="post sample CloudEvents to a khook function",
        description="Post CloudEvents from files (captured requests, structured CloudEvents or "
        "bare Kubernetes objects) and print each answer's status and X-Khook-* headers. For a "
        "khook with KHOOK_AUTH=token it sends the secret in KHOOK_AUTH_TOKEN(_FILE).",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    p.add_argument("--to", required=True, metavar="URL", help="the function's URL")
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
    with httpx.Client(timeout=args.timeout) as client:
        for path in args.files:
            try:
                headers, body = load_sample(path, structured=args.structured)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                response = client.post(args.to, headers=headers, content=body)
            except SampleError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                failures += 1
                continue
            except httpx.HTTPError as exc:
                print(f"{path}: cannot reach {args.to}: {exc}", file=sys.stderr)
                failures += 1
                continue
            print(f"{path}: {response.status_code} {response.reason_phrase}")
            for name in ("X-Khook-Event-Type", "X-Khook-Outcome", "Retry-After"):
                if name in response.headers:
                    print(f"  {name}: {response.headers[name]}")
            if response.text:
                print(f"  {response.text.strip()}")
            failures += not response.is_success
    return 1 if failures else 0
