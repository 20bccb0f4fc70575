from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from khook.cli._common import COMMANDS
from khook.logs import configure
from khook.replay import (
    ReplayInputError,
    ReplayLine,
    ReplayOptions,
    ReplayReport,
    check,
    expand,
    load_expectation,
    open_storm,
    play,
)
from khook.settings import ENV


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "replay",
        help=COMMANDS["replay"],
        description="Play recorded CloudEvents (JSON lines of ApiServerSource requests, or a "
        "`kubectl get events,pods -A -o json` snapshot) through the real pipeline, with a "
        "virtual clock that jumps to each event's ce-time: an hour of storm plays in seconds. "
        "A storm directory brings its hooks.yaml, rules.yaml and expected.yaml. Dry run by "
        "default. Prints one line per session opened, follow-up sent and hold, and last "
        "`sessions=N followups=M held=K`. Exit 0; 1 when --check finds a difference or khook "
        "failed to fire; 2 when the input cannot be replayed.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="STORM_DIR_OR_FILE",
        help="a storm directory, a recording file, or a directory of storm directories",
    )
    p.add_argument(
        "--hooks",
        action="append",
        metavar="PATH",
        help="Hook file or directory to play against instead of the storm's hooks.yaml "
        "(repeatable)",
    )
    p.add_argument(
        "--rules",
        action="append",
        metavar="FILE",
        help="classification rules on top of the storm's rules.yaml (repeatable)",
    )
    p.add_argument(
        "--dedup",
        default="memory",
        metavar="STORE",
        help="memory (default) | tinydb:PATH (with several inputs, one PATH/<name> each)",
    )
    p.add_argument("--agent-url", metavar="URL", help="call this Kagent instead of a dry run")
    p.add_argument("--a2a-version", choices=("0.3", "1.0", "auto"), help="A2A version (0.3)")
    p.add_argument(
        "--show-requests",
        action="store_true",
        help="also print the A2A requests the dry run would send (one JSON line each)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="compare each storm with its expected.yaml; exit 1 on a difference",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    configure(os.environ.get(ENV["log_level"]) or "warning")
    inputs = expand(args.inputs)
    several = len(inputs) > 1
    reports: list[ReplayReport] = []
    code = 0
    try:
        storms = [open_storm(path) for path in inputs]
        for storm in storms:
            if several:
                print(f"== {storm.name}")
            options = ReplayOptions(
                hooks=tuple(args.hooks or ()),
                rules=tuple(args.rules or ()),
                dedup=_store(args.dedup, storm.name, several),
                agent_url=args.agent_url or "",
                a2a_version=args.a2a_version,
                requests_out=sys.stdout if args.show_requests else None,
            )
            expectation = (
                load_expectation(storm.expected) if args.check and storm.expected else None
            )
            report = play(storm, options, on_line=_print_line, on_problem=_warn)
            reports.append(report)
            if several:
                print(f"{storm.name}: {report.summary()}")
            if report.failed:
                code = 1
            if args.check:
                code = max(code, _check(storm.name, report, expectation))
    except ReplayInputError as exc:
        print(f"khook replay: {exc}", file=sys.stderr)
        return 2
    sessions = sum(r.sessions for r in reports)
    followups = sum(r.followups for r in reports)
    held = sum(r.held for r in reports)
    print(f"sessions={sessions} followups={followups} held={held}")
    return code


def _store(dedup: str, name: str, several: bool) -> str:
    kind, _, path = dedup.partition(":")
    if kind == "tinydb" and path and several:
        return f"tinydb:{Path(path) / name}"
    return dedup


def _check(name: str, report: ReplayReport, expectation: Any) -> int:
    if expectation is None:
        _warn(f"{name}: no expected.yaml to check against")
        return 1
    problems = check(report, expectation)
    for problem in problems:
        _warn(f"{name}: check: {problem}")
    return 1 if problems else 0


def _print_line(line: ReplayLine) -> None:
    print(line, flush=True)


def _warn(text: str) -> None:
    print(f"khook replay: {text}", file=sys.stderr, flush=True)
