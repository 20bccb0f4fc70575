"""Hostile prompts: the corpus in tests/fixtures/hostile_hooks, rendered in this process and in
render processes, and the render processes themselves (deadline, memory cap, threads, fork,
parent death)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from khook.core.prompt import PromptError, PromptTemplate, compile_prompt
from khook.core.sandbox_samples import BUILTIN_EVENT_TYPES, sample_facts, sample_object
from khook.sandbox import InlineRenderer, ProcessRenderer, SandboxBusy, SandboxError

CORPUS = Path(__file__).parent / "fixtures" / "hostile_hooks"
MIB = 1024 * 1024
HANG = 10.0  # seconds: a hang detector, not a timing test (the bugs took minutes)
# About 0.3 s of honest work inside every limit, then the character budget trips.
SLOW = (
    "{% set x %}{% for i in range(10000) %}{% for j in range(9) %}{{ object|tojson }}"
    "{% endfor %}{% endfor %}{% endset %}{{ x|length }}"
)
# Eight strings of a million four-byte characters: 32 MB, within every cooperative limit.
HUNGRY = (
    "{% set a = '\U0001f600' * 999999 %}"
    + "".join(f"{{% set {v} = a ~ '{v}' %}}" for v in "bcdefgh")
    + "{{ [a, b, c, d, e, f, g, h]|map('length')|sum }}"
)


@dataclass(frozen=True)
class Case:
    name: str
    event_type: str
    prompt: str
    expect: str
    problem: str
    shown: str


def _load(path: Path) -> Case:
    doc = yaml.safe_load(path.read_text())
    notes = doc["metadata"]["annotations"]
    (config,) = doc["spec"]["eventConfigurations"]
    return Case(
        name=path.stem,
        event_type=config["eventType"],
        prompt=config["prompt"],
        expect=notes["khook.dev/expect"],
        problem=notes.get("khook.dev/expect-problem", ""),
        shown=notes.get("khook.dev/expect-prompt", ""),
    )


CASES = [_load(path) for path in sorted(CORPUS.glob("*.yaml"))]


def _pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":  # a zombie has exited; nobody may be reaping it here
            alive.append(pid)
    return alive


def _wait_gone(pids: list[int], within: float = HANG) -> list[int]:
    deadline = time.monotonic() + within
    while _pids_alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _pids_alive(pids)


def _render(renderer: Any, source: str, event_type: str = "oom-kill") -> str:
    text: str = renderer.render(
        compile_prompt(source), sample_facts(event_type), sample_object(event_type)
    )
    return text


@pytest.fixture(scope="module")
def renderer() -> Iterator[ProcessRenderer]:
    """A render process for every render (``inline=False``): what the process does."""
    # More time than khook's 2 s default: on a loaded test machine a case must still end at
    # its own limit, not at the deadline (both refuse the Hook).
    r = ProcessRenderer(timeout=5.0, inline=False)
    yield r
    r.close()


@pytest.fixture(scope="module")
def khooks() -> Iterator[ProcessRenderer]:
    """As khook renders: a straight-line template in this process, the rest in a process."""
    r = ProcessRenderer(timeout=5.0)
    yield r
    r.close()


# ---- the corpus -------------------------------------------------------------------------


def test_the_corpus_is_well_formed() -> None:
    assert len(CASES) >= 100
    for path in CORPUS.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == "kagent.dev/v1alpha2" and doc["kind"] == "Hook"
        assert doc["metadata"]["namespace"] == "team-a"
        assert doc["metadata"]["name"] == path.stem
        assert doc["metadata"]["annotations"]["khook.dev/attack"]
        (config,) = doc["spec"]["eventConfigurations"]
        assert config["agentRef"] == {"name": "k8s-agent"}
    for case in CASES:
        assert case.expect in ("invalid", "fires"), case.name
        assert case.problem if case.expect == "invalid" else case.shown, case.name
        assert len(case.prompt) <= 10_000


def _outcome_in_process(case: Case) -> tuple[str, str]:
    try:
        text = _render(InlineRenderer(), case.prompt, case.event_type)
    except PromptError as exc:
        return "invalid", str(exc)
    return "fires", text


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_in_this_process(case: Case) -> None:
    started = time.monotonic()
    outcome, text = _outcome_in_process(case)
    assert time.monotonic() - started < HANG
    assert outcome == case.expect, text[:300]
    assert (case.problem if outcome == "invalid" else case.shown) in text


@pytest.mark.parametrize("path", ["process", "khook"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_in_a_render_process(
    case: Case, path: str, renderer: ProcessRenderer, khooks: ProcessRenderer
) -> None:
    if path == "khook":
        renderer = khooks
    started = time.monotonic()
    try:
        template = compile_prompt(case.prompt)
    except PromptError as exc:  # refused before any render: the same on every path
        assert case.expect == "invalid"
        assert case.problem in str(exc)
        return
    problem = renderer.check(case.event_type, template)
    try:
        text = renderer.render(
            template, sample_facts(case.event_type), sample_object(case.event_type)
        )
    except PromptError as exc:
        text = str(exc)
        assert problem == text
    assert time.monotonic() - started < HANG
    if case.expect == "invalid":
        assert problem is not None and case.problem in problem
    else:
        assert problem is None
        assert case.shown in text


# ---- render processes -------------------------------------------------------------------


def test_a_render_process_renders_what_this_process_would(renderer: ProcessRenderer) -> None:
    source = "{{.ResourceName}} {{ object.spec.containers[0].resources.limits.memory }}"
    assert _render(renderer, source) == _render(InlineRenderer(), source)
    assert os.getpid() not in renderer.worker_pids()


IMPORT_PROBE = """
import contextlib
import os
import khook.sandbox
me = str(os.getpid())
children = [p for p in os.listdir("/proc") if p.isdigit()
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == me]
print(f"threads={len(os.listdir('/proc/self/task'))} children={len(children)}")
"""


def test_processes_start_on_first_use_only() -> None:
    # A fresh pool (its own settings): nothing runs until the first render.
    lazy = ProcessRenderer(inline=False, workers=1, memory_bytes=256 * MIB + 1)
    assert lazy.worker_pids() == []
    assert _render(lazy, "{{ event.name }}").startswith("web-")
    assert len(lazy.worker_pids()) == 1
    probe = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, check=True
    )
    assert probe.stdout.split() == ["threads=1", "children=0"]  # importing starts nothing


def test_an_overrunning_render_is_killed_and_its_process_replaced() -> None:
    quick = ProcessRenderer(inline=False, timeout=0.05, workers=1, memory_bytes=256 * MIB + 2)
    patient = ProcessRenderer(inline=False, timeout=HANG, workers=1, memory_bytes=256 * MIB + 2)
    assert _render(patient, "{{ event.name }}").startswith("web-")
    (first,) = patient.worker_pids()
    started = time.monotonic()
    with pytest.raises(PromptError) as err:
        _render(quick, SLOW)
    assert time.monotonic() - started < HANG
    assert err.value.kind == "deadline"
    assert "longer than 0.05 s" in str(err.value)
    assert patient.worker_pids() == []
    assert _pids_alive([first]) == []
    assert _render(patient, "{{ event.name }}").startswith("web-")
    (second,) = patient.worker_pids()
    assert second != first


def _vm_size(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize")


def test_the_memory_cap_ends_a_hungry_render() -> None:
    roomy = ProcessRenderer(inline=False, timeout=HANG, workers=1, memory_bytes=256 * MIB + 3)
    assert _render(roomy, "{{ event.name }}").startswith("web-")
    (pid,) = roomy.worker_pids()
    cap = _vm_size(pid) + 16 * MIB  # what a process needs to render, and 16 MiB more
    assert _render(roomy, HUNGRY).startswith("7999999")  # fine with room to spare
    tight = ProcessRenderer(inline=False, timeout=HANG, workers=1, memory_bytes=cap)
    assert _render(tight, "{{ event.name }}").startswith("web-")  # it starts and renders
    with pytest.raises(PromptError) as err:
        _render(tight, HUNGRY)
    assert err.value.kind == "memory"
    assert tight.worker_pids() == []  # it left after running out of memory
    assert _render(tight, "{{ event.name }}").startswith("web-")


def test_renders_from_many_threads() -> None:
    shared = ProcessRenderer(inline=False, timeout=HANG, workers=2, memory_bytes=256 * MIB + 4)
    template = compile_prompt("{{ event.name }}/{{ event.count }}")

    def render(n: int) -> str:
        facts = replace(sample_facts("oom-kill"), name=f"pod-{n}", count=n)
        return shared.render(template, facts, sample_object("oom-kill")).split("\n")[0]

    with ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(render, range(64)))
    assert texts == [f"pod-{n}/{n}" for n in range(64)]
    assert len(shared.worker_pids()) <= 2


def test_a_caller_waits_for_a_free_process_within_its_deadline() -> None:
    busy = ProcessRenderer(inline=False, timeout=HANG, workers=1, memory_bytes=256 * MIB + 5)
    hurried = ProcessRenderer(inline=False, timeout=0.05, workers=1, memory_bytes=256 * MIB + 5)
    assert _render(busy, "{{ event.name }}").startswith("web-")
    outcomes: list[str] = []

    def occupy() -> None:
        try:
            _render(busy, SLOW)
        except PromptError as exc:
            outcomes.append(exc.kind)

    slow = threading.Thread(target=occupy)
    slow.start()
    refused = 0
    while slow.is_alive():
        try:
            _render(hurried, "{{ event.name }}")
        except SandboxBusy as exc:
            assert "no render process was free within 0.05 s" in str(exc)
            refused += 1
        except PromptError as exc:  # it got the process, and a loaded machine took 50 ms
            assert exc.kind == "deadline"
    slow.join()
    assert outcomes == ["limit"]
    assert refused > 0
    assert _render(busy, "{{ event.name }}").startswith("web-")


def test_a_forked_child_starts_its_own_processes(renderer: ProcessRenderer) -> None:
    assert _render(renderer, "{{ event.name }}").startswith("web-")
    parents = renderer.worker_pids()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        report: dict[str, Any] = {}
        try:
            report["inherited"] = renderer.worker_pids()
            report["text"] = _render(renderer, "{{ event.name }}")
            report["own"] = renderer.worker_pids()
        except BaseException as exc:  # reported to the parent
            report["error"] = repr(exc)
        finally:
            os.write(write, orjson.dumps(report))
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as stream:
        report = orjson.loads(stream.read())
    os.waitpid(child, 0)
    assert "error" not in report, report
    assert report["inherited"] == []
    assert report["text"].startswith("web-")
    assert report["own"] and set(report["own"]).isdisjoint(parents)
    assert renderer.worker_pids() == parents  # the parent's processes are untouched
    assert _render(renderer, "{{ event.name }}").startswith("web-")


PARENT = f"""
import threading, time
from khook.core.prompt import compile_prompt
from khook.core.sandbox_samples import sample_facts, sample_object
from khook.sandbox import ProcessRenderer, PromptError
r = ProcessRenderer(inline=False, timeout=60, workers=2)
f, o = sample_facts("oom-kill"), sample_object("oom-kill")
def slow():
    try:
        r.render(compile_prompt({SLOW!r}), f, o)
    except PromptError:
        pass
for _ in range(2):  # two renders at once: two processes
    threading.Thread(target=slow, daemon=True).start()
deadline = time.monotonic() + 30
while len(r.worker_pids()) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
print(" ".join(map(str, r.worker_pids())), flush=True)
time.sleep(600)
"""


def test_render_processes_end_when_khook_dies() -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2 and _pids_alive(pids) == pids
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(pids) == []  # busy or idle, both leave


def test_an_object_orjson_refuses_still_renders(renderer: ProcessRenderer) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(300):
        node["x"] = node = {}
    obj = {
        "metadata": {"name": "web-\ud800-1", "labels": {"big": 2**70, "\udfff": "lone"}},
        "deep": deep,
    }
    template = compile_prompt(
        "{{ object.metadata.name }} {{ object.metadata.labels.big }} "
        "{{ object.metadata.labels|length }} {{ object.deep.x.x.x }}"
    )
    facts = replace(sample_facts("oom-kill"), message="lone \ud800 surrogate")
    expected = InlineRenderer().render(template, facts, obj)
    assert renderer.render(template, facts, obj) == expected
    assert expected.startswith("web--1 1180591620717411303424 2 {'x': {")


def test_the_trial_render_uses_the_event_types_sample(renderer: ProcessRenderer) -> None:
    per_container = compile_prompt("{{ 100 // object.spec.containers|length }}")
    assert renderer.check("oom-kill", per_container) is None  # a Pod has containers
    problem = renderer.check("node-not-ready", per_container)  # a Node has none
    assert problem is not None and "ZeroDivisionError" in problem
    assert renderer.check("my-own-type", per_container) is None  # a generic Pod
    assert renderer.check("node-not-ready", per_container) == problem  # cached, the same
    for event_type in BUILTIN_EVENT_TYPES:
        assert renderer.check(event_type, compile_prompt("{{ object.kind }}")) is None


def test_a_closed_renderer_renders_no_more() -> None:
    closing = ProcessRenderer(inline=False, workers=2)
    assert _render(closing, "{{ event.name }}").startswith("web-")
    closing.close()
    with pytest.raises(SandboxError):
        _render(closing, "{{ event.name }}")


def test_inline_and_process_renderers_agree_on_every_builtin_type(
    renderer: ProcessRenderer,
) -> None:
    template: PromptTemplate = compile_prompt(
        "{{.EventType}} {{.ResourceName}} {{.Namespace}} {{.Reason}} {{.Message}} "
        "{{ event|tojson }} {{ object|tojson }} {{ hook.name }}"
    )
    for event_type in BUILTIN_EVENT_TYPES:
        facts, obj = sample_facts(event_type), sample_object(event_type)
        assert renderer.render(template, facts, obj) == template.render(facts, obj)


# ---- straight-line prompts, rendered in this process -------------------------------------


def test_a_straight_line_prompt_renders_here_as_a_process_would(
    renderer: ProcessRenderer,
) -> None:
    here = ProcessRenderer(inline=True, workers=1, memory_bytes=256 * MIB + 6)
    sources = [
        "{{.ResourceName}} {{ object.spec.containers[0].resources.limits.memory }}",
        "{{ Namespace or 'cluster-scoped' }}: {{ event.owner | default('no owner') }}",
        "{% if event.count > 3 %}{{ event.reason|upper }}{% else %}{{ Message }}{% endif %}",
    ]
    for source in sources:
        assert compile_prompt(source).straight, source
        assert _render(here, source) == _render(renderer, source)
    assert here.worker_pids() == []  # no render process was needed


def test_a_straight_line_prompt_over_the_inline_limits_goes_to_a_process(
    renderer: ProcessRenderer,
) -> None:
    here = ProcessRenderer(inline=True, workers=1, memory_bytes=256 * MIB + 7)
    big = sample_object("oom-kill")
    big["metadata"]["labels"] = {f"l{i}": "x" * 1000 for i in range(90)}
    # Five copies of a ~95,000-character object: within the full limits, past INLINE_LIMITS.
    source = "{{ object|tojson|length }}," * 5
    template = compile_prompt(source)
    assert template.straight
    facts = sample_facts("oom-kill")
    assert template.render_inline(facts, big) is None  # over the inline character budget
    text = here.render(template, facts, big)
    assert text == renderer.render(template, facts, big)
    assert int(text.split(",")[0]) > 90_000
    assert len(here.worker_pids()) == 1  # it took a render process


def test_a_straight_line_prompts_error_is_the_one_a_process_gives(
    renderer: ProcessRenderer,
) -> None:
    template = compile_prompt("{{ event.name|truncate('ten') }}")
    assert template.straight
    facts, obj = sample_facts("oom-kill"), sample_object("oom-kill")
    with pytest.raises(PromptError) as here:
        template.render_inline(facts, obj)
    with pytest.raises(PromptError) as there:
        renderer.render(template, facts, obj)
    assert (str(here.value), here.value.kind) == (str(there.value), there.value.kind)
    assert here.value.kind == "template"


def test_few_hostile_prompts_are_straight_line_and_those_stay_small_here() -> None:
    # Every corpus case that compiles and is not straight-line is one khook sends to a process;
    # the straight-line ones render here within INLINE_LIMITS or go there too.
    straight = []
    for case in CASES:
        try:
            template = compile_prompt(case.prompt)
        except PromptError:
            continue
        if template.straight:
            straight.append(case.name)
            started = time.monotonic()
            with contextlib.suppress(PromptError):
                template.render_inline(
                    sample_facts(case.event_type), sample_object(case.event_type)
                )
            assert time.monotonic() - started < HANG
    # The corpus is made of attacks: loops, calls, arithmetic, big strings. A few attacks
    # on text alone (fences, placeholders) are straight-line and harmless here.
    assert len(straight) < len(CASES) // 4, straight


def test_a_straight_line_prompt_about_a_big_object_goes_to_a_process(
    renderer: ProcessRenderer,
) -> None:
    here = ProcessRenderer(inline=True, workers=1, memory_bytes=256 * MIB + 8)
    big = sample_object("oom-kill")
    big["metadata"]["labels"] = {f"l{i}": "" for i in range(6_000)}
    facts = sample_facts("oom-kill")
    template = compile_prompt("{{ object.metadata.labels|length }}")
    assert template.straight
    assert template.render_inline(facts, big) is None  # more values than INLINE_OBJECT_VALUES
    text = here.render(template, facts, big)
    assert text == renderer.render(template, facts, big) and text.startswith("6000")
    assert len(here.worker_pids()) == 1
    # A prompt that never names the object renders here, whatever the object holds.
    assert _render(here, "{{ event.name }}").startswith("web-")
    assert here.render(compile_prompt("{{ event.name }}"), facts, big).startswith("web-")
    assert len(here.worker_pids()) == 1
