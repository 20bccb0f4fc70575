"""Every package khook imports is declared in pyproject.toml, with a range it is tested in.

An import that works only because some other package happened to pull its distribution in
breaks the day that package stops doing so; a range without an upper bound lets the next
major version in untested.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from khook.listwatch import watch_lines
from tests.support.events import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
DEV = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]
LOCAL = {"khook", "tests", "main"}  # this project's own top-level modules
# The standard library, and _typeshed: its stubs' types, importable only under TYPE_CHECKING.
STDLIB = sys.stdlib_module_names | {"_typeshed"}
DISTRIBUTIONS = importlib.metadata.packages_distributions()


def imports(source: str) -> Iterator[str]:
    """Every absolute module an ``import`` or ``from ... import`` names, nested ones too."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def distribution(module: str) -> str:
    """The installed distribution that provides ``module`` (a namespace package such as
    ``google`` is shared by several: the one holding the submodule's files provides it)."""
    top = module.split(".", maxsplit=1)[0]
    candidates = DISTRIBUTIONS.get(top, [])
    assert candidates, f"{module}: no installed distribution provides it"
    if len(candidates) == 1:
        return canonicalize_name(candidates[0])
    prefix = "/".join(module.split(".")[:2]) + "/"
    holding = {
        canonicalize_name(name)
        for name in candidates
        if any(str(f).startswith(prefix) for f in importlib.metadata.files(name) or [])
    }
    assert len(holding) == 1, f"{module}: provided by {sorted(holding) or candidates}"
    return holding.pop()


def undeclared(paths: list[Path], declared: list[Requirement]) -> dict[str, list[str]]:
    """Third-party distributions imported in ``paths`` but not declared: {distribution:
    [file, ...]}."""
    names = {canonicalize_name(r.name) for r in declared}
    missing: dict[str, list[str]] = {}
    for path in paths:
        for module in imports(path.read_text()):
            top = module.split(".")[0]
            if top in STDLIB or top in LOCAL:
                continue
            dist = distribution(module)
            if dist not in names:
                missing.setdefault(dist, []).append(str(path))
    return missing


def test_the_code_imports_only_declared_runtime_dependencies() -> None:
    code = sorted((ROOT / "functions").rglob("*.py"))
    assert any(p.parts[-2:] == ("khook", "listwatch.py") for p in code)
    assert undeclared(code, RUNTIME) == {}


def test_the_tests_import_only_declared_dependencies() -> None:
    tests = sorted((ROOT / "tests").rglob("*.py"))
    assert undeclared(tests, RUNTIME + DEV) == {}


def test_an_undeclared_import_is_found(tmp_path: Path) -> None:
    """The checks above can fail: a test-only package imported by the code, and a package
    reached through a namespace shared by several distributions."""
    module = tmp_path / "probe.py"
    module.write_text("import hypothesis\nfrom google.protobuf import json_format\n")
    assert set(undeclared([module], RUNTIME)) == {"hypothesis", "protobuf"}
    assert distribution("re2") == "google-re2" and distribution("yaml") == "pyyaml"


@pytest.mark.parametrize("requirement", RUNTIME + DEV, ids=str)
def test_every_requirement_has_a_tested_range(requirement: Requirement) -> None:
    operators = {spec.operator for spec in requirement.specifier}
    assert ">=" in operators, f"{requirement}: no lower bound"
    assert "<" in operators or "<=" in operators, f"{requirement}: no upper bound"
    installed = importlib.metadata.version(requirement.name)
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{requirement}: the tests run with {installed}, outside the declared range"
    )


def repository_files() -> Iterator[Path]:
    """The repository's own files: no virtualenv, caches, VCS data or build output."""
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        hidden = any(
            p.startswith(".") and p not in (".ci", ".dockerignore", ".gitignore") for p in parts
        )
        built = any(p == "__pycache__" or p.endswith(".egg-info") for p in parts)
        if path.is_file() and not hidden and not built:
            yield path


def test_nothing_points_to_files_that_are_not_in_the_repository() -> None:
    """Notes once pointed to a REFERENCE.md and a ../shared directory this repository does
    not have: say the fact, never where it was read."""
    pointer = re.compile(r"REFERENCE\.md|\.\./shared\b")
    this = Path(__file__).resolve()
    found = [
        str(path.relative_to(ROOT))
        for path in repository_files()
        if path.resolve() != this and pointer.search(path.read_text(errors="replace"))
    ]
    assert found == []


# ---- the watch reader that replaced kubernetes.watch.watch.iter_resp_lines --------------------


class Chunks:
    """A urllib3 response as ``watch_lines`` reads it: ``stream()`` yields these chunks."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def stream(self, amt: int | None = None, decode_content: bool = True) -> Iterator[bytes]:
        assert amt is None and decode_content is False
        yield from self.chunks


def test_watch_lines_split_at_newlines_across_chunks() -> None:
    snowman = "☃".encode()
    stream = Chunks(b'{"a":', b"1}\n\n", b'{"b":"' + snowman[:1], snowman[1:] + b'"}\n{"c"')
    assert list(watch_lines(stream)) == ['{"a":1}', '{"b":"☃"}']  # the cut tail is no line


def test_watch_lines_read_as_they_arrive() -> None:
    """A line is handed over when its newline arrives, not when the stream ends."""
    read: list[bytes] = []

    class Live(Chunks):
        def stream(self, amt: int | None = None, decode_content: bool = True) -> Iterator[bytes]:
            for chunk in self.chunks:
                read.append(chunk)
                yield chunk

    lines = watch_lines(Live(b"one\ntw", b"o\n", b"three\n"))
    assert next(lines) == "one" and len(read) == 1
    assert next(lines) == "two" and len(read) == 2


def test_khook_uses_no_private_module_of_the_kubernetes_client() -> None:
    for path in (ROOT / "functions" / "khook").rglob("*.py"):
        for module in imports(path.read_text()):
            assert not module.startswith("kubernetes.watch"), f"{path}: {module}"
