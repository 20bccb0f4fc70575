"""Hooks and classification rules from YAML files, as a user writes them for kubectl.

A file may hold several documents; a directory is read recursively (``*.yaml``, ``*.yml``,
``*.json``). Files are checked for changes at most once a second and reloaded when they change,
so editing a Hook takes effect without a restart. Which Hooks are in force is decided by
:mod:`khook.admission`, as in cluster mode.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import yaml

from khook import metrics
from khook.admission import Admission, Reading
from khook.clock import Clock
from khook.core.correlation import CorrelationTable, parse_correlation
from khook.core.hooks import KIND, Hook, HookInvalid, Reason, hook_identity
from khook.core.rules import RuleTable, parse_rules
from khook.logs import log

logger = logging.getLogger("khook.files")

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 8 * 1024 * 1024  # a larger file is refused, not read
# libyaml when PyYAML has it: faster, and it refuses deep nesting with a clear error where the
# pure-Python loader runs out of stack.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class FileError(ValueError):
    pass


@dataclass(frozen=True)
class HookSet:
    """The Hooks in force, and those that could not be used, with the reasons."""

    hooks: tuple[Hook, ...] = ()
    invalid: tuple[HookInvalid, ...] = ()
    problems: tuple[str, ...] = field(default=())  # files that could not be read at all
    synced: bool = True  # False while a cluster source has not completed its first list

    def visible_to(self, namespace: str, control_namespace: str) -> tuple[Hook, ...]:
        """The Hooks that may see an event about an object in ``namespace`` (its own and the
        control namespace's), in this set's order: matching against these gives the same
        answer as against all the Hooks, and costs at most two namespaces' quota."""
        own = self._by_namespace.get(namespace, ())
        if namespace == control_namespace:
            return tuple(hook for _, hook in own)
        control = self._by_namespace.get(control_namespace, ())
        if not own or not control:
            return tuple(hook for _, hook in own or control)
        return tuple(hook for _, hook in sorted(own + control, key=lambda item: item[0]))

    @cached_property
    def _by_namespace(self) -> dict[str, tuple[tuple[int, Hook], ...]]:
        index: dict[str, list[tuple[int, Hook]]] = {}
        for position, hook in enumerate(self.hooks):
            index.setdefault(hook.namespace, []).append((position, hook))
        return {namespace: tuple(hooks) for namespace, hooks in index.items()}


class HookSource(Protocol):
    def current(self, wait: bool = True) -> HookSet:
        """The Hooks in force; a source still loading may wait (bounded) unless told not to."""

    def cached(self) -> HookSet | None:
        """The Hooks in force as last loaded, without waiting, loading or looking for changes
        (no I/O: the event loop's fast path asks); None when only :meth:`current` can tell.
        Once a set is ``synced``, every later one is (the pipeline relies on it)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Document:
    origin: str  # file[#index]
    body: Any


@functools.cache
def builtin_rules() -> RuleTable:
    """The shipped rules (parsed once: the start-up check parses them in gunicorn's master,
    and its workers inherit the table)."""
    text = importlib.resources.files("khook.core").joinpath("builtin_rules.yaml").read_text()
    return parse_rules(yaml.load(text, Loader=_LOADER), "builtin")  # noqa: S506 - safe (_LOADER)


def load_rules(paths: Iterable[str | Path]) -> RuleTable:
    """User rules first (so they can refine built-in types), then the built-in table."""
    table = RuleTable()
    for path in paths:
        for doc in read_documents(Path(path)):
            if (
                isinstance(doc.body, Mapping)
                and "rules" not in doc.body
                and "correlation" in doc.body
            ):
                continue  # a correlation table only (see load_correlation)
            table = table.then(parse_rules(doc.body, doc.origin))
    return table.then(builtin_rules())


@functools.cache
def builtin_correlation() -> CorrelationTable:
    """The shipped correlation table (parsed once: it never changes while khook runs)."""
    resource = importlib.resources.files("khook.core").joinpath("builtin_correlation.yaml")
    document = yaml.load(resource.read_text(), Loader=_LOADER)  # noqa: S506 - safe (_LOADER)
    return parse_correlation(document, "builtin")


def load_correlation(paths: Iterable[str | Path]) -> CorrelationTable:
    """The ``correlation:`` mappings of the --rules files first, in the order given (see
    CorrelationTable.then for how each key merges), then the built-in table. A document
    without a ``correlation`` key holds rules only and is skipped here."""
    table = CorrelationTable()
    for path in paths:
        for doc in read_documents(Path(path)):
            if isinstance(doc.body, Mapping) and "correlation" in doc.body:
                table = table.then(parse_correlation(doc.body, doc.origin))
    return table.then(builtin_correlation())


def read_documents(path: Path) -> Iterator[Document]:
    """Every YAML document in a file, or in the files under a directory; the first file that
    cannot be read raises FileError."""
    for file in _files(path):
        yield from _file_documents(file)


def collect_documents(paths: Iterable[str | Path]) -> tuple[list[Document], list[str]]:
    """Every document in these files and directories, and a problem for each file that could
    not be read: one bad file does not hide the others."""
    documents: list[Document] = []
    problems: list[str] = []
    for path in paths:
        try:
            files = _files(Path(path))
        except FileError as exc:
            problems.append(str(exc))
            continue
        for file in files:
            try:
                documents.extend(_file_documents(file))
            except FileError as exc:
                problems.append(str(exc))
    return documents, problems


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.rglob("*")
            if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
    if path.is_file():
        return [path]
    raise FileError(f"{path}: no such file or directory")


def _file_documents(file: Path) -> list[Document]:
    bodies = _load_file(file)
    documents: list[Document] = []
    for body in bodies:
        for item in _expand_lists(body):
            origin = f"{file}#{len(documents)}" if len(bodies) > 1 else str(file)
            documents.append(Document(origin, item))
    return documents


def _load_file(file: Path) -> list[Any]:
    try:
        size = file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FileError(
                f"{file}: {size} bytes; files larger than {MAX_FILE_BYTES} bytes are not read"
            )
        with file.open(encoding="utf-8") as handle:
            text = handle.read(MAX_FILE_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError(f"{file}: cannot read: {exc}") from exc
    if len(text) > MAX_FILE_BYTES:  # it grew while we looked
        raise FileError(f"{file}: files larger than {MAX_FILE_BYTES} bytes are not read")
    try:
        return list(yaml.load_all(text, Loader=_LOADER))  # a safe loader (see _LOADER)
    except yaml.YAMLError as exc:
        raise FileError(f"{file}: not valid YAML: {str(exc)[:2000]}") from exc
    except (RecursionError, MemoryError) as exc:
        raise FileError(f"{file}: not valid YAML: nested too deeply or too large") from exc
    except Exception as exc:  # the YAML library does not wrap everything (a 5,000-digit int)
        raise FileError(f"{file}: not valid YAML: {type(exc).__name__}: {exc}"[:2000]) from exc


def _expand_lists(body: Any) -> Iterator[Any]:
    if body is None:
        return
    kind = body.get("kind") if isinstance(body, Mapping) else None
    if isinstance(kind, str) and kind.endswith("List"):
        items = body.get("items")
        yield from items if isinstance(items, list) else []
    else:
        yield body


def is_hook_document(body: Any) -> bool:
    return isinstance(body, Mapping) and body.get("kind") == KIND


def parse_hook_documents(
    documents: Iterable[Document],
    known_types: frozenset[str],
    control_namespace: str,
    *,
    admission: Admission | None = None,
) -> HookSet:
    """The Hooks among ``documents``, admitted (see :mod:`khook.admission`); without an
    ``admission``, the default agent policy and quota and no prompt check apply."""
    admission = admission or Admission(known_types=known_types, control_namespace=control_namespace)
    readings: list[Reading] = []
    duplicates: dict[int, HookInvalid] = {}  # by the position it would have had
    seen: dict[str, str] = {}
    for doc in documents:
        if not is_hook_document(doc.body):
            continue
        namespace, name = hook_identity(doc.body, "default")
        key = f"{namespace}/{name}"
        if key in seen:
            duplicates[len(readings) + len(duplicates)] = HookInvalid(
                namespace, name, [f"defined twice: here and in {seen[key]}"], origin=doc.origin
            )
            continue
        seen[key] = doc.origin
        readings.append(admission.read(doc.body, doc.origin))
    verdicts = iter(admission.admit(readings))
    ordered = [
        duplicates[i] if i in duplicates else next(verdicts)
        for i in range(len(readings) + len(duplicates))
    ]
    hooks = tuple(v for v in ordered if isinstance(v, Hook))
    return HookSet(hooks, tuple(v for v in ordered if isinstance(v, HookInvalid)))


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
        admission: Admission | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self._known_types = known_types
        self._control_namespace = control_namespace
        # Which Hooks are in force (agent policy, quota, prompt checks): built by the caller
        # from its settings; the default admits with the default policy and no prompt check.
        self._admission = admission or Admission(
            known_types=known_types, control_namespace=control_namespace
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] | None = None
        self._checked_at = float("-inf")
        self._current = HookSet()

    def cached(self) -> HookSet | None:
        # Stale by at most CHECK_EVERY_SECONDS, as current() is: once a check of the files is
        # due (or they were never loaded), only current() can tell.
        if self._fingerprint is None:
            return None
        if self._clock.monotonic() - self._checked_at >= self.CHECK_EVERY_SECONDS:
            return None
        return self._current

    def current(self, wait: bool = True) -> HookSet:
        with self._lock:
            now = self._clock.monotonic()
            if now - self._checked_at >= self.CHECK_EVERY_SECONDS:
                fingerprint = self._scan()
                if fingerprint != self._fingerprint:
                    self._fingerprint = fingerprint
                    self._current = self._load()
                # Only now: while a look is under way, cached() says nothing (the loop asks).
                self._checked_at = now
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
        documents, problems = collect_documents(self.paths)
        loaded = parse_hook_documents(
            documents, self._known_types, self._control_namespace, admission=self._admission
        )
        loaded = HookSet(loaded.hooks, loaded.invalid, tuple(problems))
        report(loaded)
        metrics.hooks_loaded(len(loaded.hooks), (bad.reason for bad in loaded.invalid))
        return loaded


def report(hook_set: HookSet) -> None:
    for problem in hook_set.problems:
        log(logger, logging.ERROR, "hook file unreadable", problem=problem)
    crowded: Counter[str] = Counter()
    for bad in hook_set.invalid:
        if bad.reason == Reason.TOO_MANY_HOOKS:
            crowded[bad.namespace] += 1  # one line per namespace, not one per Hook
            continue
        log(
            logger,
            logging.ERROR,
            "hook invalid, not in force",
            hook=f"{bad.namespace}/{bad.name}",
            reason=bad.reason,
            problems=bad.problems,
        )
    for namespace, count in sorted(crowded.items()):
        log(
            logger,
            logging.ERROR,
            "hooks over the namespace's quota, not in force",
            namespace=namespace,
            hooks=count,
            reason=Reason.TOO_MANY_HOOKS.value,
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
