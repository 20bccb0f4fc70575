"""Hooks from YAML files: multi-document files, directories, errors, and reload on change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from khook.cli.validate import validate
from khook.files import MAX_FILE_BYTES, FileHookSource, builtin_rules
from tests.support.clock import FakeClock
from tests.support.events import ROOT

KNOWN = builtin_rules().event_types

HOOK = """\
apiVersion: kagent.dev/v1alpha2
kind: Hook
metadata: {{name: {name}, namespace: shop}}
spec:
  eventConfigurations:
    - eventType: {event_type}
      agentRef: {{name: a}}
      prompt: "{{{{.ResourceName}}}}"
"""


def write(path: Path, *docs: str) -> None:
    path.write_text("---\n".join(docs))


def source(path: Path, clock: FakeClock) -> FileHookSource:
    return FileHookSource([path], known_types=KNOWN, control_namespace="khook-system", clock=clock)


def test_multi_document_files_in_a_directory(tmp_path: Path, clock: FakeClock) -> None:
    write(
        tmp_path / "a.yaml",
        HOOK.format(name="one", event_type="oom-kill"),
        HOOK.format(name="two", event_type="pod-restart"),
    )
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested" / "b.yml", HOOK.format(name="three", event_type="pod-pending"))
    write(tmp_path / "kustomization.yaml", "resources: [a.yaml]\n")
    hooks = source(tmp_path, clock).current()
    assert sorted(h.key for h in hooks.hooks) == ["shop/one", "shop/three", "shop/two"]
    assert hooks.invalid == () and hooks.problems == ()


def test_an_invalid_hook_does_not_stop_the_others(tmp_path: Path, clock: FakeClock) -> None:
    write(
        tmp_path / "a.yaml",
        HOOK.format(name="good", event_type="oom-kill"),
        HOOK.format(name="bad", event_type="no-such-type"),
        HOOK.format(name="good", event_type="pod-restart"),
    )
    hooks = source(tmp_path, clock).current()
    assert [h.key for h in hooks.hooks] == ["shop/good"]
    problems = {f"{i.namespace}/{i.name}": i.problems for i in hooks.invalid}
    assert "not a known event type" in problems["shop/bad"][0]
    assert "defined twice" in problems["shop/good"][0]


def test_broken_yaml_is_reported_not_raised(tmp_path: Path, clock: FakeClock) -> None:
    write(tmp_path / "a.yaml", "kind: Hook\nmetadata: [unclosed\n")
    hooks = source(tmp_path, clock).current()
    assert hooks.hooks == () and "not valid YAML" in hooks.problems[0]


def test_changes_take_effect_without_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    file = tmp_path / "hooks.yaml"
    write(file, HOOK.format(name="h", event_type="oom-kill"))
    src = source(file, clock)
    assert src.current().hooks[0].event_types == ["oom-kill"]
    write(file, HOOK.format(name="h", event_type="pod-restart") + "# longer now\n")
    assert src.current().hooks[0].event_types == ["oom-kill"], "checked at most once a second"
    clock.advance(1.0)
    assert src.current().hooks[0].event_types == ["pod-restart"]
    file.unlink()
    clock.advance(1.0)
    assert src.current().hooks == ()
    assert "no such file" in src.current().problems[0]


# ---- hostile files: a problem for that file, never an exception ------------------------------


def _alias_bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\nkind: Hook\nspec: {eventConfigurations: *a9}\n"


def _deep_block(levels: int) -> str:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(levels)) + f"{'  ' * levels}v\n"


HOSTILE_FILES: dict[str, str | bytes] = {
    "deep-flow": "kind: Hook\nspec: " + "[" * 5_000 + "]" * 5_000 + "\n",
    "deep-block": _deep_block(3_000),
    "huge-int": "kind: Hook\nmetadata: {name: " + "1" * 5_000 + "}\n",
    "binary": bytes(range(256)) * 4,
    "not-mappings": "- a\n---\n42\n---\n'text'\n---\nnull\n---\n[kind, Hook]\n",
    "alias-bomb": _alias_bomb(),
    "odd-hooks": "kind: Hook\nspec: [1]\n---\nkind: Hook\nmetadata: x\n---\nkind: Hook\n",
    "tabs": "kind: Hook\n\tmetadata: x\n",
    "odd-lists": "kind: List\nitems: {a: 1}\n---\nkind: [List]\n---\nkind: List\nitems: [1, [2]]\n",
    "unhashable-key": "? [a, b]\n: 1\n",
    "odd-keys": "kind: Hook\nspec: {1: a, null: b, 2.5: c, true: d}\n",
    "rules-odd": "rules: [1, [2], {eventType: {a: b}}, {message: [x]}]\n",
}


def write_hostile(path: Path, content: str | bytes) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.mark.parametrize("name", sorted(HOSTILE_FILES))
def test_hostile_files_are_problems(tmp_path: Path, clock: FakeClock, name: str) -> None:
    write_hostile(tmp_path / f"{name}.yaml", HOSTILE_FILES[name])
    write(tmp_path / "good.yaml", HOOK.format(name="good", event_type="oom-kill"))
    hooks = source(tmp_path, clock).current()
    assert [h.key for h in hooks.hooks] == ["shop/good"]  # the others keep working
    assert_findings(tmp_path)


def test_a_huge_file_is_not_read(tmp_path: Path, clock: FakeClock) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    hooks = source(tmp_path, clock).current()
    assert "files larger than 8388608 bytes are not read" in hooks.problems[0]
    assert "FAIL" in "\n".join(assert_findings(tmp_path))


def test_non_mapping_documents_are_skipped_with_a_reason(tmp_path: Path) -> None:
    write_hostile(tmp_path / "x.yaml", HOSTILE_FILES["not-mappings"])
    lines = assert_findings(tmp_path, expect=0)
    assert "skip" in lines[0] and "(42)" in "\n".join(lines)


CORPUS = ROOT / "tests" / "fixtures" / "hostile_hooks"


@pytest.mark.parametrize(
    "path", sorted(CORPUS.rglob("*.y*ml")) if CORPUS.is_dir() else [], ids=lambda p: p.name
)
def test_validate_answers_the_hostile_corpus(path: Path) -> None:
    assert_findings(path)


def assert_findings(path: Path, expect: int | None = None) -> list[str]:
    """`khook validate` on ``path``: an exit code and findings, each line of a known form."""
    lines: list[str] = []
    code = validate([path], out=lines.append)
    assert code in (0, 1) if expect is None else code == expect
    for line in lines:
        assert re.match(r"(ok   |FAIL |skip |warn |     )", line), line
        assert len(line) <= 4000 and line.isprintable()
    return lines
