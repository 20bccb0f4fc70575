"""The ``khook`` command: serve, send, validate, render, source, replay.

Exit codes common to every command: 2 for a usage or configuration mistake (one line on
stderr), 141 when the reader of its output went away (``khook render ... | head``): the
status a shell gives a command killed by SIGPIPE, so ``set -o pipefail`` scripts see what they
would see of ``cat``. Each command documents its own others.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

from khook import __version__
from khook.cli._common import COMMANDS, USAGE_ERROR, KhookParser
from khook.logs import fatal

CLOSED_PIPE = 128 + 13  # 128 + SIGPIPE


def parser(argv: Sequence[str] | None = None) -> KhookParser:
    """The command line's parser. Only the command ``argv`` names is imported, with what it
    needs (``khook serve`` the server, ``khook send`` an HTTP client, ...); the others are
    listed by name and one line of help, which is all ``khook --help`` shows of them. Without
    ``argv`` every command is imported."""
    top = KhookParser(
        prog="khook",
        description="Kubernetes event hooks for AI agents: CloudEvents in, Kagent A2A calls out.",
    )
    top.add_argument("--version", action="version", version=f"khook {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = None if argv is None else _command(argv)
    for name, text in COMMANDS.items():
        if argv is None or name == wanted:
            importlib.import_module(f"khook.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=text)
    return top


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option (khook's own options,
    ``--help`` and ``--version``, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            code = _main(argv)
        except SystemExit:  # --help, --version: argparse exits once it has written
            sys.stdout.flush()
            raise
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Python would print an error when it
        # flushes stdout at exit, so stdout now points at /dev/null (the recipe in Python's
        # signal module documentation, "Note on SIGPIPE").
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return CLOSED_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    top = parser(sys.argv[1:] if argv is None else argv)
    args, extra = top.parse_known_args(argv)
    if extra:  # said by the command's parser, so `khook serve --bogus` is JSON like the rest
        message = f"unrecognized arguments: {' '.join(extra)}"
        if args.command == "serve":
            fatal("khook cannot start", error=f"khook serve: {message}")
            return USAGE_ERROR
        top.error(message)
    code: int = args.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
