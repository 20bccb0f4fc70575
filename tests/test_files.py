"""Hooks from YAML files: multi-document files, directories, errors, and reload on change."""

from __future__ import annotations

from pathlib import Path

from khook.files import FileHookSource, builtin_rules
from tests.support.clock import FakeClock

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
