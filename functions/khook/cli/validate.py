"""``khook validate``: every problem in Hook and rules files, as findings with field paths.

It admits Hooks exactly as khook does when it serves (:mod:`khook.admission`: shape, agent
policy, quota, prompts), with the settings from the environment and the flags. Whatever the
files hold (non-mapping documents, huge or deeply nested ones, hostile templates) the answer is
a list of findings and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from khook.admission import Admission, PromptCheck, policy_from_settings
from khook.cli._common import COMMANDS, add_control_namespace_option, add_rules_option, env_help
from khook.core.hook_fields import show
from khook.core.rules import RulesError, RuleTable, parse_rules
from khook.core.tenancy import AgentPolicy, PolicyError
from khook.files import (
    Document,
    FileError,
    builtin_rules,
    collect_documents,
    is_hook_document,
    load_rules,
    parse_hook_documents,
)
from khook.settings import Settings, SettingsError

Out = Callable[[str], None]
_LINE_LIMIT = 4000  # characters of one printed finding


def add_parser(sub: Any, prompt_check: PromptCheck | None = None) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help=COMMANDS["validate"],
        description="Check Hooks and classification rules files as khook would admit them "
        "(shape, agent policy, per-namespace quota, prompts); exits 1 with every problem "
        "found. Event types defined by rules files given here count as known.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    add_rules_option(p)
    add_control_namespace_option(p)
    p.add_argument(
        "--agent-namespaces",
        metavar="NS,...",
        help=env_help("agent_namespaces", "agent namespaces every Hook may call (kagent)"),
    )
    p.add_argument(
        "--agent-grants",
        metavar="GRANTS",
        help=env_help("agent_grants", "more agent namespaces per Hook namespace, 'ns=a,b;...'"),
    )
    p.add_argument(
        "--max-hooks-per-namespace",
        metavar="N",
        help=env_help("max_hooks_per_namespace", "Hooks in force per namespace (50)"),
    )
    p.set_defaults(run=partial(run, prompt_check=prompt_check))


def run(args: argparse.Namespace, prompt_check: PromptCheck | None = None) -> int:
    overrides = {
        "rules": args.rules,
        "control_namespace": args.control_namespace,
        "agent_namespaces": getattr(args, "agent_namespaces", None),
        "agent_grants": getattr(args, "agent_grants", None),
        "max_hooks_per_namespace": getattr(args, "max_hooks_per_namespace", None),
    }
    if prompt_check is None:
        # Prompts are trial-rendered exactly as khook serve does: in the sandbox processes.
        # With settings that do not load, validate() reports their problem as a finding.
        # (The runtime on first use: it brings the agent client, stores and cluster parts.)
        from khook.runtime import build_renderer  # noqa: PLC0415

        with contextlib.suppress(SettingsError):
            prompt_check = build_renderer(Settings.from_env()).check
    return validate(args.files, overrides, prompt_check=prompt_check)


def validate(
    paths: Iterable[Path],
    overrides: Mapping[str, Any] | None = None,
    *,
    prompt_check: PromptCheck | None = None,
    out: Out = print,
) -> int:
    """Print a finding per line; 1 when any is a failure. ``overrides`` are Settings fields
    over the environment, as flags give them."""
    emit = _printer(out)
    try:
        return _validate(list(paths), dict(overrides or {}), prompt_check, emit)
    except Exception as exc:  # a last resort: a finding, not a traceback
        emit(f"FAIL khook validate could not finish: {type(exc).__name__}: {exc}")
        return 1


class _Findings:
    """Prints findings and counts the failures among them."""

    def __init__(self, emit: Out) -> None:
        self.emit = emit
        self.failures = 0

    def fail(self, line: str) -> None:
        self.emit(f"FAIL {line}")
        self.failures += 1


def _validate(
    paths: list[Path], overrides: dict[str, Any], prompt_check: PromptCheck | None, emit: Out
) -> int:
    found = _Findings(emit)
    settings, policy = _settings(overrides, found)
    table = _rules(settings, found)
    documents, unreadable = collect_documents(paths)
    for problem in unreadable:
        found.fail(problem)
    for doc in documents:
        if _is_rules_document(doc.body):
            table = _rules_document(doc, table, found)
    admission = Admission(
        known_types=table.event_types,
        control_namespace=settings.control_namespace,
        policy=policy,
        max_hooks_per_namespace=settings.max_hooks_per_namespace,
        prompt_check=prompt_check,
    )
    hooks = parse_hook_documents(
        documents, table.event_types, settings.control_namespace, admission=admission
    )
    for hook in hooks.hooks:
        emit(f"ok   Hook {hook.key} ({hook.origin}): {', '.join(hook.event_types)}")
        for warning in hook.warnings:
            emit(f"     warning: {warning}")
    for bad in hooks.invalid:
        where = f" ({bad.origin})" if bad.origin else ""
        found.fail(f"Hook {bad.namespace}/{bad.name}{where}: {bad.reason}")
        for problem in bad.problems:
            emit(f"     - {problem}")
    for doc in documents:
        if not is_hook_document(doc.body) and not _is_rules_document(doc.body):
            kind = doc.body.get("kind") if isinstance(doc.body, Mapping) else doc.body
            what = f"kind {show(kind)}" if isinstance(doc.body, Mapping) else show(kind)
            emit(f"skip {doc.origin}: not a Hook or rules document ({what})")
    return 1 if found.failures else 0


def _settings(overrides: dict[str, Any], found: _Findings) -> tuple[Settings, AgentPolicy]:
    try:
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        found.fail(f"settings: {exc}")
        settings = Settings.from_env({}, rules=overrides.get("rules"))
    try:
        policy = policy_from_settings(settings)
    except PolicyError as exc:
        found.fail(f"settings: KHOOK_AGENT_NAMESPACES / KHOOK_AGENT_GRANTS: {exc}")
        policy = AgentPolicy(settings.control_namespace)
    return settings, policy


def _rules(settings: Settings, found: _Findings) -> RuleTable:
    try:
        table = load_rules(settings.rules)
    except (FileError, RulesError) as exc:
        found.fail(str(exc))
        for warning in exc.warnings if isinstance(exc, RulesError) else ():
            found.emit(f"warn rules {warning}")
        table = builtin_rules()
    for warning in table.warnings:
        found.emit(f"warn rules {warning}")
    return table


def _rules_document(doc: Document, table: RuleTable, found: _Findings) -> RuleTable:
    try:
        extra = parse_rules(doc.body, doc.origin)
    except RulesError as exc:
        found.fail(f"rules {doc.origin}: " + "; ".join(exc.problems))
        for warning in exc.warnings:
            found.emit(f"warn rules {warning}")
        return table
    types = ", ".join(sorted(extra.event_types))
    found.emit(f"ok   rules {doc.origin}: {len(extra.rules)} rule(s) for {types}")
    for warning in extra.warnings:
        found.emit(f"warn rules {warning}")
    return extra.then(table)


def _is_rules_document(body: Any) -> bool:
    return isinstance(body, Mapping) and "rules" in body and not is_hook_document(body)


def _printer(out: Out) -> Out:
    """Findings quote what users wrote: no control characters (a terminal would obey them),
    and no line longer than _LINE_LIMIT."""

    def emit(line: str) -> None:
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)
        out(text if len(text) <= _LINE_LIMIT else text[: _LINE_LIMIT - 1] + "…")

    return emit
