"""A straight-line prompt sees only the parts of the object it looks up: only they are cleaned
(khook.core._object_paths), and the prompt is the same as when the whole object is."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core._object_paths import WHOLE, TooBig, prune
from khook.core.prompt import PromptError, PromptFacts, PromptTemplate, compile_prompt
from khook.core.sandbox_samples import sample_facts, sample_object

PROMPTS = [
    "{{ object.spec.containers[0].resources.limits.memory | default('unset') }}",
    "{{ object.metadata.name }} {{ object.metadata.labels.app }} {{ object.status.phase }}",
    "{% if object.status.phase == 'Running' %}up{% else %}{{ object.status.reason }}{% endif %}",
    "{{ object.spec.containers[2].image }} {{ object.spec.containers[0].name|upper }}",
    "{{ object.spec.containers|length }} {{ object.spec.containers[1].name }}",
    "{{ object.metadata.labels|tojson }} {{ object.metadata['labels']['a`b'] }}",
    # The key as the template sees it: a backtick in the object's key reads as an apostrophe.
    '{{ object.metadata.labels["a\'b"] }} {{ object.spec["a\'b"].name }}',
    "{{ object.metadata.managedFields }} {{ object.spec.managedFields }}",
    "{{ object.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'] }}",
    "{{ object['spec'].nodeName is defined }} {{ object.spec.x.y.z | d('none') }}",
    "{{ object.spec.containers.first }} {{ object.spec.items }} {{ object.data[0] }}",
    "{{ object.metadata.name ~ object.metadata.namespace }} {{ object.status is mapping }}",
]

KEYS = st.sampled_from(
    [
        "spec",
        "status",
        "metadata",
        "containers",
        "name",
        "labels",
        "app",
        "a`b",
        "a'b",
        "phase",
        "reason",
        "image",
        "managedFields",
        "annotations",
        "kubectl.kubernetes.io/last-applied-configuration",
        "x",
        "y",
        "z",
        "k" * 300,
        "first",
        "items",
        "data",
        "0",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["Running", "x" * 3_000, "a\nb`c~~~d", "\u202e"]),
)
OBJECTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(KEYS, inner, max_size=6)),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"metadata": OBJECTS, "spec": OBJECTS, "status": OBJECTS}, optional={"data": OBJECTS}
    )
)
def test_a_prompt_sees_the_same_in_the_parts_it_looks_up_as_in_the_whole_object(
    obj: dict[str, Any],
) -> None:
    facts = sample_facts("oom-kill")
    for source in PROMPTS:
        template = compile_prompt(source)
        assert template.straight and template.object_paths is not None, source
        whole = replace(template, object_paths=None)
        assert rendered(template, facts, obj) == rendered(whole, facts, obj), source


def rendered(template: PromptTemplate, facts: PromptFacts, obj: dict[str, Any]) -> str:
    """The prompt, or the error it fails with (the same error is the same answer)."""
    try:
        return template.render(facts, obj)
    except PromptError as exc:
        return f"{exc.kind}: {exc}"


def test_the_paths_a_prompt_looks_up() -> None:
    template = compile_prompt(
        "{{ object.spec.containers[0].image }} {{ object.metadata.labels | tojson }}"
        "{{ object.metadata.labels.app }} {{ object.spec | length }}"
    )
    assert template.object_paths == {
        "spec": WHOLE,  # a filter on spec itself: all of spec is kept
        "metadata": {"labels": WHOLE},
    }
    assert template.object_paths["spec"] is WHOLE
    assert compile_prompt("{{ object.status.phase }}").object_paths == {"status": {"phase": {}}}


@pytest.mark.parametrize(
    "source",
    [
        "{{ object }}",
        "{{ object|tojson }}",
        "{{ object is mapping }}",
        "{{ object[-1] }}",  # not a key khook follows: the object is kept whole
        "{% for c in object.spec.containers %}{{ c.name }}{% endfor %}",  # not straight-line
    ],
)
def test_a_prompt_that_reads_the_object_whole_gets_all_of_it(source: str) -> None:
    assert compile_prompt(source).object_paths is None


def test_a_prompt_that_never_names_the_object_gets_none_of_it() -> None:
    template = compile_prompt("{{ event.name }}")
    assert template.object_part(sample_object("oom-kill")) is None


def test_a_big_object_renders_in_process_when_its_prompt_reads_little_of_it() -> None:
    """The sample oom-kill prompt reads one field: a Pod with 6,000 annotations no longer
    needs a render process (more than 5,000 values are cleaned in one only when looked at)."""
    big = sample_object("oom-kill")
    big["metadata"]["annotations"] = {f"note-{n}": "x" for n in range(6_000)}
    facts = sample_facts("oom-kill")
    small = compile_prompt("{{ object.spec.containers[0].resources.limits.memory | d('-') }}")
    assert small.render_inline(facts, big) == small.render(facts, big)
    reads_all = compile_prompt("{{ object.metadata.annotations | length }}")
    assert reads_all.render_inline(facts, big) is None


def test_cutting_a_big_object_is_left_to_a_render_process() -> None:
    """Each key along a path is fenced to be compared: an object with 100,000 labels is not
    cut in khook's process (on the event loop, with a dry run) for a prompt reading one."""
    big = sample_object("oom-kill")
    big["metadata"]["labels"] = {f"k{n:06d}": "" for n in range(100_000)}
    big["metadata"]["labels"]["app"] = "web"
    facts = sample_facts("oom-kill")
    template = compile_prompt("{{ object.metadata.labels.app }}")
    assert template.render_inline(facts, big) is None
    assert template.object_to_send(big) is big  # the render process cuts it
    assert template.render(facts, big).startswith("web")
    with pytest.raises(TooBig):
        prune(big, {"metadata": {"labels": {"app": WHOLE}}}, limit=5_000)


def test_pruning_keeps_the_raw_values_it_is_asked_for() -> None:
    obj = {
        "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b"}, {"name": "c"}]},
        "status": {"phase": "Running", "reason": "x"},
    }
    assert prune(obj, {"spec": {"containers": {1: {"name": WHOLE}}}}) == {
        "spec": {"containers": [None, {"name": "b"}]}
    }
    assert prune(obj, {"status": WHOLE}) == {"status": {"phase": "Running", "reason": "x"}}
    # A name looked up in a list, or anything looked up in a scalar: kept as it is.
    assert prune(obj, {"spec": {"containers": {"first": WHOLE}}}) == {
        "spec": {"containers": obj["spec"]["containers"]}
    }
    assert prune(obj, {"status": {"phase": {"x": WHOLE}}}) == {"status": {"phase": "Running"}}
