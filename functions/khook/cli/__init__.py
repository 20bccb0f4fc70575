"""The ``khook`` command: serve, send, validate, render."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from khook import __version__
from khook.cli import render, replay, send, serve, source, validate


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="khook",
        description="Kubernetes event hooks for AI agents: CloudEvents in, Kagent A2A calls out.",
    )
    top.add_argument("--version", action="version", version=f"khook {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, send, validate, render, source, replay):
        module.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
