"""Hooks and classification rules from YAML files, as a user writes them for kubectl.

A file may hold several documents; a directory is read recursively (``*.yaml``, ``*.yml``,
``*.json``). Files are checked for changes at most once a second and reloaded when they change,
so editing a Hook takes effect without a restart.
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from khook.clock import Clock
from khook.core.hooks import KIND, Hook, HookInvalid, hook_identity, parse_hook
from khook.core.rules import RuleTable, parse_rules
from khook.logs import log

logger = logging.getLogger("khook.files")

SUFFIXES = (".yaml", ".yml", ".json")


class FileError(ValueError):
    pass


@dataclass(frozen=True)
class HookSet:
    """The Hooks in force, and those that could not be used, with the reasons."""

    hooks: tuple[Hook, ...] = ()
    invalid: tuple[HookInvalid, ...] = ()
    problems: tuple[str, ...] = field(default=())  # files that could not be read at all
    synced: bool = True  # False while a cluster source has not completed its first list


class HookSource(Protocol):
    def current(self, wait: bool = True) -> HookSet:
        """The Hooks in force; a source still loading may wait (bounded) unless told not to."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Document:
    origin: str  # file[#index]
    body: Any


def builtin_rules() -> RuleTable:
    text = importlib.resources.files("khook.core").joinpath("builtin_rules.yaml").read_text()
    return parse_rules(yaml.safe_load(text), "builtin")


def load_rules(paths: Iterable[str | Path]) -> RuleTable:
    """User rules first (so they can refine built-in types), then the built-in table."""
    table = RuleTable()
    for path in paths:
        for doc in read_documents(Path(path)):
            table = table.then(parse_rules(doc.body, doc.origin))
    return table.then(builtin_rules())


def read_documents(path: Path) -> Iterator[Document]:
    """Every YAML document in a file, or in the files under a directory."""
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
    elif path.is_file():
        files = [path]
    else:
        raise FileError(f"{path}: no such file or directory")
    for file in files:
        try:
            with file.open(encoding="utf-8") as handle:
                bodies = list(yaml.safe_load_all(handle))
        except (OSError, UnicodeDecodeError) as exc:
            raise FileError(f"{file}: cannot read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise FileError(f"{file}: not valid YAML: {exc}") from exc
        index = 0
        for body in bodies:
            for item in _expand_lists(body):
                yield Document(f"{file}#{index}" if len(bodies) > 1 else str(file), item)
                index += 1


def _expand_lists(body: Any) -> Iterator[Any]:
    if body is None:
        return
    if isinstance(body, Mapping) and str(body.get("kind", "")).endswith("List"):
        items = body.get("items")
        yield from items if isinstance(items, list) else []
    else:
        yield body


def is_hook_document(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("kind") == KIND


def parse_hook_documents(
    documents: Iterable[Document], known_types: frozenset[str], control_namespace: str
) -> HookSet:
    hooks: list[Hook] = []
    invalid: list[HookInvalid] = []
    seen: dict[str, str] = {}
    for doc in documents:
        if not is_hook_document(doc.body):
            continue
        try:
            hook = parse_hook(
                doc.body,
                known_types=known_types,
                control_namespace=control_namespace,
                origin=doc.origin,
            )
        except HookInvalid as exc:
            invalid.append(exc)
            continue
        if hook.key in seen:
            namespace, name = hook_identity(doc.body, "default")
            invalid.append(
                HookInvalid(namespace, name, [f"defined twice: here and in {seen[hook.key]}"])
            )
            continue
        seen[hook.key] = doc.origin
        hooks.append(hook)
    return HookSet(tuple(hooks), tuple(invalid))


class FileHookSource:
    """Hooks from files and directories, reloaded when any of them changes."""

    CHECK_EVERY_SECONDS = 1.0

    def __init__(
        self,
        paths: Iterable[str | Path],
        *,
        known_types: frozenset[str],
        control_namespace: str,
        clock: Clock,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self._known_types = known_types
        self._control_namespace = control_namespace
        self._clock = clock
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._checked_at = float("-inf")
        self._current = HookSet()

    def current(self, wait: bool = True) -> HookSet:
        with self._lock:
            now = self._clock.monotonic()
            if now - self._checked_at >= self.CHECK_EVERY_SECONDS:
                self._checked_at = now
                fingerprint = self._scan()
                if fingerprint != self._fingerprint:
                    self._fingerprint = fingerprint
                    self._current = self._load()
            return self._current

    def close(self) -> None:
        pass

    def _scan(self) -> tuple[tuple[str, int, int], ...]:
        entries = []
        for path in self.paths:
            candidates = path.rglob("*") if path.is_dir() else [path]
            for file in candidates:
                try:
                    st = file.stat()
                except OSError:
                    entries.append((str(file), -1, -1))
                    continue
                if file.is_file():
                    entries.append((str(file), st.st_mtime_ns, st.st_size))
        return tuple(sorted(entries))

    def _load(self) -> HookSet:
        documents: list[Document] = []
        problems: list[str] = []
        for path in self.paths:
            try:
                documents.extend(read_documents(path))
            except FileError as exc:
                problems.append(str(exc))
        loaded = parse_hook_documents(documents, self._known_types, self._control_namespace)
        loaded = HookSet(loaded.hooks, loaded.invalid, tuple(problems))
        report(loaded)
        return loaded


def report(hook_set: HookSet) -> None:
    for problem in hook_set.problems:
        log(logger, logging.ERROR, "hook file unreadable", problem=problem)
    for bad in hook_set.invalid:
        log(
            logger,
            logging.ERROR,
            "hook invalid, not in force",
            hook=f"{bad.namespace}/{bad.name}",
            problems=bad.problems,
        )
    for hook in hook_set.hooks:
        for warning in hook.warnings:
            log(logger, logging.WARNING, "hook warning", hook=hook.key, warning=warning)
    log(
        logger,
        logging.INFO,
        "hooks loaded",
        hooks=[h.key for h in hook_set.hooks],
        invalid=len(hook_set.invalid),
    )
