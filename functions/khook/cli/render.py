from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from khook.agent import A2AVersion, AgentRequest, AgentResult, DryRunClient
from khook.cli._common import (
    COMMANDS,
    SampleError,
    add_control_namespace_option,
    add_rules_option,
    load_sample,
)
from khook.clock import SystemClock
from khook.core import cloudevent
from khook.core.classify import classify
from khook.core.cloudevent import CloudEventError
from khook.core.events import ClusterEvent, NotOfInterest, Reference, decode
from khook.core.explain import why_no_rule, why_not
from khook.core.memory import ObjectMemory
from khook.core.outcome import Status
from khook.core.prompt import PromptTemplate
from khook.core.reasons import Code, Reason
from khook.core.rules import RuleTable
from khook.files import (
    FileError,
    HookSet,
    load_correlation,
    load_rules,
    parse_hook_documents,
    read_documents,
)
from khook.pipeline import Pipeline, PipelineConfig
from khook.runtime import build_admission, build_renderer
from khook.sessions import Budget
from khook.settings import Settings, SettingsError
from khook.stores import Deduplicator, MemoryRecords


class _Capture:
    """An agent that only remembers what it was asked."""

    def __init__(self) -> None:
        self.requests: list[AgentRequest] = []

    def send(self, request: AgentRequest) -> AgentResult:
        self.requests.append(request)
        return AgentResult("rendered", "", "rendered", "rendered")

    def close(self) -> None:
        pass


class _Static:
    def __init__(self, hooks: HookSet) -> None:
        self._hooks = hooks

    def current(self, wait: bool = True) -> HookSet:
        return self._hooks

    def cached(self) -> HookSet | None:
        return self._hooks

    def close(self) -> None:
        pass


class _Silent:
    def record(self, outcome: Any) -> None:
        pass


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "render",
        help=COMMANDS["render"],
        description="Run an event through classification, matching and prompt rendering "
        "against the Hooks in a file, and print each prompt and the A2A request khook would "
        "send. Nothing is sent and no dedup record is kept.",
    )
    p.add_argument("--hook", required=True, type=Path, metavar="FILE", help="Hook file or dir")
    p.add_argument("--event", required=True, type=Path, metavar="FILE", help="sample event")
    add_rules_option(p)
    add_control_namespace_option(p)
    p.add_argument("--agent-url", metavar="URL", help="Kagent base URL shown in the request")
    p.add_argument("--a2a-version", choices=("0.3", "1.0"), help="A2A version (0.3)")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also walk every Hook in FILE and say why it acts on the event or not",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(
            rules=args.rules,
            control_namespace=args.control_namespace,
            agent_url=args.agent_url,
            a2a_version=args.a2a_version,
        )
        rules = load_rules(settings.rules)
        correlation = load_correlation(settings.rules)
        # As khook serve admits and renders: agent policy, quota, sandboxed prompts.
        renderer = build_renderer(settings)
        admission = build_admission(settings, rules.event_types, renderer)
        hooks = parse_hook_documents(
            read_documents(args.hook),
            rules.event_types,
            settings.control_namespace,
            admission=admission,
        )
        headers, body = load_sample(args.event)
        envelope = cloudevent.parse(headers, body)
    except (SettingsError, FileError, SampleError, CloudEventError, ValueError) as exc:
        print(f"khook render: {exc}", file=sys.stderr)
        return 2
    for bad in hooks.invalid:
        print(f"khook render: {bad}", file=sys.stderr)
    clock = SystemClock()
    capture = _Capture()
    pipeline = Pipeline(
        hooks=_Static(hooks),
        rules=rules,
        dedup=Deduplicator(MemoryRecords(clock), clock, timedelta(days=3650)),
        agent=capture,
        recorder=_Silent(),
        clock=clock,
        config=PipelineConfig(settings.control_namespace, timedelta(days=3650)),
        renderer=renderer,
        # Render what a session's first message would be: no hold keeps it back here.
        correlation=correlation.without_holds(),
        memory=ObjectMemory(correlation),
        budget=Budget(sessions_per_minute=0),
    )
    decoded = decode(envelope, clock.now())
    if isinstance(decoded, Reference):
        print("event type: none")
        print(
            f"reason: {Code.NEEDS_OBJECT.value}; a Reference-mode event names "
            f"{decoded.ref.display}: render needs the object (Resource mode)"
        )
        return 0
    if isinstance(decoded, NotOfInterest):
        print("event type: none")
        print(f"reason: {Reason(decoded.code, decoded.reason).header()}")
        return 0
    outcome = pipeline.process_event(decoded)
    print(f"event type: {', '.join(outcome.event_types) or 'none'}")
    print(f"reason: {outcome.reason().header()}")
    if args.explain:
        _explain(decoded, rules, hooks, settings.control_namespace)
    failed = [r for r in outcome.results if r.status is Status.FAILED]
    for r in failed:
        print(f"hook {r.hook.key} {r.config.event_type}: FAILED: {r.reason}", file=sys.stderr)
    if not capture.requests:
        print(f"no Hook in {args.hook} fires for this event")
        return 1 if failed else 0
    client = DryRunClient(
        version=A2AVersion(settings.a2a_version),
        user_id=settings.user_id,
        base_url=settings.agent_url or None,
    )
    for request in capture.requests:
        print(f"\n=== {request.metadata.get('khook.dev/hook')} -> agent {request.agent.id}")
        print("--- prompt")
        print(request.prompt)
        print("--- A2A request")
        print(json.dumps(client.http_request(request).redacted(), indent=2, ensure_ascii=False))
    return 1 if failed else 0


def _explain(event: ClusterEvent, rules: RuleTable, hooks: HookSet, control: str) -> None:
    """Every Hook of the file, in force or not, and why it acts on the event or does not."""
    detections = classify(event, rules)
    print("--- explain")
    if detections:
        for d in detections:
            print(f"signal {d.signal.signal.value} {d.signal.reason!r}: {d.event_type}")
    else:
        print(f"signals: {why_no_rule(event)}")
    for hook in hooks.hooks:
        why = why_not(hook, event, detections, control) if detections else "no signal classified"
        if why:
            print(f"hook {hook.key}: not acting: {why}")
        else:
            wanted = sorted({d.event_type for d in detections} & set(hook.event_types))
            print(f"hook {hook.key}: acts on {', '.join(wanted)}")
            for event_type in wanted:
                config = hook.configuration(event_type)
                if config is not None:
                    print(f"  {event_type}: {_where_it_renders(config.prompt)}")
    for bad in hooks.invalid:
        print(f"hook {bad.namespace}/{bad.name}: not in force ({bad.reason}): {bad}")


def _where_it_renders(prompt: PromptTemplate) -> str:
    if prompt.straight:
        return "its prompt is straight-line: it renders in khook's process"
    return (
        "its prompt computes (a loop, call, set, arithmetic, ...): it renders in a render process"
    )
