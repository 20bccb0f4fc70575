from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from khook.cli._common import add_control_namespace_option, add_rules_option
from khook.core.rules import RulesError, RuleTable, parse_rules
from khook.files import (
    Document,
    FileError,
    builtin_rules,
    is_hook_document,
    load_rules,
    parse_hook_documents,
    read_documents,
)
from khook.settings import Settings


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="check Hook and rules files",
        description="Check Hooks and classification rules files; exits non-zero with every "
        "problem found. Event types defined by rules files given here count as known.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    add_rules_option(p)
    add_control_namespace_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env(rules=args.rules, control_namespace=args.control_namespace)
    failures = 0
    documents: list[Document] = []
    table = RuleTable()
    try:
        table = load_rules(settings.rules)
    except (FileError, RulesError) as exc:
        print(f"FAIL {exc}")
        failures += 1
        table = builtin_rules()
    for path in args.files:
        try:
            documents.extend(read_documents(path))
        except FileError as exc:
            print(f"FAIL {exc}")
            failures += 1
    for doc in documents:
        if isinstance(doc.body, Mapping) and "rules" in doc.body and not is_hook_document(doc.body):
            try:
                extra = parse_rules(doc.body, doc.origin)
            except RulesError as exc:
                print(f"FAIL rules {doc.origin}: " + "; ".join(exc.problems))
                failures += 1
                continue
            table = extra.then(table)
            types = ", ".join(sorted(extra.event_types))
            print(f"ok   rules {doc.origin}: {len(extra.rules)} rule(s) for {types}")
    hooks = parse_hook_documents(documents, table.event_types, settings.control_namespace)
    for hook in hooks.hooks:
        print(f"ok   Hook {hook.key} ({hook.origin}): {', '.join(hook.event_types)}")
        for warning in hook.warnings:
            print(f"     warning: {warning}")
    for bad in hooks.invalid:
        print(f"FAIL Hook {bad.namespace}/{bad.name}:")
        for problem in bad.problems:
            print(f"     - {problem}")
        failures += 1
    for doc in documents:
        if not is_hook_document(doc.body) and not (
            isinstance(doc.body, Mapping) and "rules" in doc.body
        ):
            kind = (
                doc.body.get("kind") if isinstance(doc.body, Mapping) else type(doc.body).__name__
            )
            print(f"skip {doc.origin}: not a Hook or rules document (kind {kind!r})")
    return 1 if failures else 0
