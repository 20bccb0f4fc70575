"""What a template sees of one firing (khook.core._prompt_facts): a straight-line template is
given only the names it reads, each the same value it has among all of them, and the block of
facts ending every prompt writes each value as JSON would."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core._prompt_facts import NAMES, _json_string
from khook.core.prompt import PLACEHOLDERS, PromptFacts, compile_prompt
from khook.core.sandbox_samples import sample_facts

TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "a`b", "line\u2028sep\u2029", "x" * 5_000, "{{ 7*7 }}", "\ud800"]),
)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
FACTS = st.builds(
    PromptFacts,
    event_type=TEXT,
    namespace=TEXT,
    kind=TEXT,
    name=TEXT,
    reason=TEXT,
    message=TEXT,
    timestamp=TIMES,
    count=st.integers(0, 10**6),
    first_seen=TIMES,
    last_seen=TIMES,
    hook=TEXT,
    owner=TEXT,
    container=TEXT,
    api_version=TEXT,
    action=TEXT,
    incident_group=TEXT,
    incident_cause=TEXT,
    incident_detail=TEXT,
    incident_state=TEXT,
    affected=st.lists(TEXT, max_size=25).map(tuple),
    affected_total=st.integers(0, 30),  # below the list too, which then counts
    workloads=st.lists(TEXT, max_size=25).map(tuple),
    workloads_total=st.integers(0, 10**4),
)
OBJECT = st.one_of(st.none(), st.just({"metadata": {"name": "web", "labels": {"a`b": "c"}}}))


@settings(max_examples=200, deadline=None)
@given(FACTS, OBJECT, st.frozensets(st.sampled_from(sorted(NAMES | {"nothing"}))))
def test_each_name_is_worked_out_alone_as_it_is_among_all(
    facts: PromptFacts, obj: dict[str, Any] | None, names: frozenset[str]
) -> None:
    every = facts.context(obj)
    some = facts.context(obj, names)
    assert set(every) == NAMES
    assert some == {name: every[name] for name in names & NAMES}


@settings(max_examples=200, deadline=None)
@given(FACTS)
def test_the_placeholders_are_what_event_and_incident_hold(facts: PromptFacts) -> None:
    seen, event, incident = facts.context(None), facts.event(), facts.incident()
    assert set(PLACEHOLDERS) <= set(seen)
    assert (seen["EventType"], seen["ResourceName"], seen["Namespace"]) == (
        event["type"],
        event["name"],
        event["namespace"],
    )
    assert seen["Reason"] == event["reason"]
    assert seen["Message"] == seen["EventMessage"] == event["message"]
    assert seen["Timestamp"] == seen["EventTime"] == event["timestamp"]
    assert seen["Cause"] == incident["cause"]
    assert seen["Affected"] == ", ".join(incident["affected"])
    assert seen["AffectedCount"] == incident["affectedTotal"]
    assert seen["event"] == event and seen["incident"] == incident


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, st.integers(-(2**70), 2**70)))
def test_the_facts_block_writes_each_value_as_json_would(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False)
    expected = expected.replace("`", "\\u0060").replace("\u2028", "\\u2028")
    assert _json_string(value) == expected.replace("\u2029", "\\u2029")


STRAIGHT = [
    "{{.ResourceName}} in {{.Namespace}}: {{.Message}} at {{.Timestamp}}",
    "{{ Cause }} hit {{ AffectedCount }}: {{ Affected }} ({{ event.kind }}, {{ hook.name }})",
    "{{ EventType }} {{ Reason | upper }} {{ incident.state }} {{ EventTime }} {{ EventMessage }}",
    "{{ object.metadata.name | default('none') }} {{ Namespace or 'cluster-scoped' }}",
]


@settings(max_examples=100, deadline=None)
@given(FACTS, OBJECT)
def test_a_straight_line_prompt_renders_the_same_from_its_own_names(
    facts: PromptFacts, obj: dict[str, Any] | None
) -> None:
    for source in STRAIGHT:
        template = compile_prompt(source)
        assert template.straight and template.names is not None, source
        assert template.names < NAMES
        assert template.render(facts, obj) == replace(template, names=None).render(facts, obj)


def test_a_count_past_the_listed_objects_is_what_they_name_at_least() -> None:
    facts = replace(
        sample_facts("oom-kill"), affected=tuple(f"Pod/p{i}" for i in range(25)), affected_total=0
    )
    counted = facts.context(None, frozenset({"AffectedCount", "Affected"}))
    assert counted["AffectedCount"] == facts.incident()["affectedTotal"] == 20
    assert counted["Affected"].count("Pod/") == 20
