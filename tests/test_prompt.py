"""Prompts: khook's placeholders, Jinja on top, validation, and cluster text kept as data."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khook.core.prompt import KHOOK_PLACEHOLDERS, PromptError, PromptFacts, compile_prompt

T = datetime(2026, 11, 23, 9, 20, tzinfo=UTC)


def facts(**kw: object) -> PromptFacts:
    values: dict[str, object] = {
        "event_type": "oom-kill",
        "namespace": "shop",
        "kind": "Pod",
        "name": "web-1",
        "reason": "OOMKilled",
        "message": "Container app was OOM-killed",
        "timestamp": T,
        "count": 2,
        "first_seen": T,
        "last_seen": T,
        "hook": "shop/pod-hook",
        "owner": "Deployment/web",
    }
    values.update(kw)
    return PromptFacts(**values)  # type: ignore[arg-type]


def test_every_khook_placeholder_works_unchanged() -> None:
    source = " ".join("{{." + name + "}}" for name in KHOOK_PLACEHOLDERS)
    text = compile_prompt(source).render(facts(), {})
    first_line = text.splitlines()[0]
    assert first_line == (
        "oom-kill web-1 shop OOMKilled Container app was OOM-killed 2026-11-23T09:20:00Z "
        "2026-11-23T09:20:00Z Container app was OOM-killed"
    )


def test_jinja_works_on_top() -> None:
    template = compile_prompt(
        "{{ event.kind }}/{{ event.name }} app={{ object.metadata.labels.app }} "
        "missing=[{{ object.metadata.labels.nope }}] {% if event.count > 1 %}again{% endif %} "
        "{{ hook.name }}"
    )
    obj = {"metadata": {"labels": {"app": "web"}}}
    assert template.render(facts(), obj).startswith("Pod/web-1 app=web missing=[] again pod-hook")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("Pod {{.PodName}} broke", "{{.PodName}}"),
        ("{{ cluster_name }}", "cluster_name"),
        ("{% if %}", "template error"),
        ("{{ .Namespace or 'x' }}", "Go template syntax"),
        ("{% include 'other' %}", "include"),
        ("x" * 10_001, "limit"),
    ],
)
def test_invalid_prompts_are_rejected_with_the_reason(source: str, fragment: str) -> None:
    with pytest.raises(PromptError) as err:
        compile_prompt(source)
    assert fragment in str(err.value)


def test_cluster_text_is_never_evaluated_as_a_template() -> None:
    hostile = "{{ 7*7 }} {% for x in range(10) %}x{% endfor %} {{.Namespace}}"
    text = compile_prompt("Message: {{.Message}}").render(facts(message=hostile), {})
    assert text.startswith(f"Message: {hostile}")
    assert "49" not in text


def test_cluster_text_is_cleaned_and_capped() -> None:
    nasty = "ok\x00\x1b[31mred\u202egnp.exe\u200b" + "y" * 5000
    text = compile_prompt("{{.Message}}").render(facts(message=nasty), {})
    message = text.split("\n\n")[0]
    assert message.startswith("ok[31mredgnp.exey")
    assert len(message) <= 2000
    assert "\x1b" not in text and "\u202e" not in text


def test_sandbox_blocks_python_internals() -> None:
    assert compile_prompt("[{{ event.__class__.__mro__ }}]").render(facts(), {}).startswith("[]")
    with pytest.raises(PromptError, match="unsafe"):
        compile_prompt("{{ ''.__class__.__subclasses__() }}").render(facts(), {})


def test_runtime_errors_are_prompt_errors() -> None:
    with pytest.raises(PromptError):
        compile_prompt("{{ 1 / 0 }}").render(facts(), {})


def test_context_block_carries_the_facts() -> None:
    text = compile_prompt("Look at {{.ResourceName}}.").render(
        facts(message="has ``` backticks"), {}
    )
    prompt, block = text.split("\n\n", 1)
    assert prompt == "Look at web-1."
    assert block.startswith("```yaml\n# khook event context\n")
    assert block.endswith("\n```")
    body = block.removeprefix("```yaml\n").removesuffix("\n```")
    assert "```" not in body
    for line in (
        'eventType: "oom-kill"',
        'namespace: "shop"',
        'resource: "Pod/web-1"',
        'owner: "Deployment/web"',
        'reason: "OOMKilled"',
        "count: 2",
        'firstSeen: "2026-11-23T09:20:00Z"',
        'lastSeen: "2026-11-23T09:20:00Z"',
    ):
        assert line in body.splitlines()


@given(st.text(max_size=300))
def test_any_cluster_message_renders_safely(message: str) -> None:
    text = compile_prompt("{{.Message}}").render(facts(message=message), {"metadata": {}})
    assert text.endswith("\n```")
    assert all(ch in "\n\t" or ord(ch) >= 32 for ch in text if ord(ch) < 127)
