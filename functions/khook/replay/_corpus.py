"""Recordings and storms: what a replay reads.

A **recording** is either JSON lines, one HTTP request per line as the ApiServerSource adapter
posted it (``{"headers": {...}, "body": <the object>}``, the form of
``tests/fixtures/captured/``; a structured CloudEvent per line works too), or a ``kubectl get
events,pods -A -o json`` snapshot (see :mod:`khook.replay._snapshot`). A **storm** is a
directory: its recording (``events.jsonl`` or ``snapshot.json``), the Hooks it is played
against (``hooks.yaml``), the classification rules it needs (``rules.yaml``, optional) and what
should come of it (``expected.yaml``, optional).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from khook.core.objects import parse_time
from khook.replay._snapshot import SnapshotError, is_snapshot, item_request, snapshot_items
from khook.replay._wire import go_json, sendable

MIB = 1024 * 1024
MAX_LINE_BYTES = 4 * MIB  # one recorded request (khook refuses bodies over 1 MiB anyway)
MAX_SNAPSHOT_BYTES = 64 * MIB
RECORDINGS = ("events.jsonl", "snapshot.json")
HOOKS_FILE, RULES_FILE, EXPECTED_FILE = "hooks.yaml", "rules.yaml", "expected.yaml"


class ReplayInputError(ValueError):
    """A recording or storm that cannot be replayed (``khook replay`` exits 2)."""


@dataclass(frozen=True)
class Request:
    headers: Mapping[str, str]  # as recorded, transport headers included
    body: bytes  # the bytes on the wire
    time: datetime | None  # its ce-time: when the adapter sent it
    where: str  # file:line, for messages


@dataclass(frozen=True)
class Storm:
    name: str
    recording: Path
    hooks: tuple[Path, ...] = ()
    rules: tuple[Path, ...] = ()
    expected: Path | None = None


def is_storm(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in RECORDINGS)


def expand(paths: list[Path]) -> list[Path]:
    """The storms to play: a corpus directory (one holding storm directories, like
    ``sources/storms``) stands for each of its storms, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and not is_storm(path):
            storms = sorted(p for p in path.iterdir() if is_storm(p))
            if storms:
                found += storms
                continue
        found.append(path)
    return found


def open_storm(path: Path) -> Storm:
    """A storm directory, or a bare recording file (no Hooks of its own)."""
    if path.is_dir():
        recording = next((path / f for f in RECORDINGS if (path / f).is_file()), None)
        if recording is None:
            raise ReplayInputError(f"{path}: a storm directory holds {' or '.join(RECORDINGS)}")

        def optional(name: str) -> Path | None:
            return path / name if (path / name).is_file() else None

        hooks, rules = optional(HOOKS_FILE), optional(RULES_FILE)
        return Storm(
            name=path.name,
            recording=recording,
            hooks=(hooks,) if hooks else (),
            rules=(rules,) if rules else (),
            expected=optional(EXPECTED_FILE),
        )
    if path.is_file():
        return Storm(name=path.stem, recording=path)
    raise ReplayInputError(f"{path}: no such file or directory")


def read_requests(recording: Path) -> Iterator[Request]:
    """The recording's requests in the order they were sent."""
    if recording.suffix != ".jsonl":
        document = _whole_document(recording)
        if document is not None:
            yield from _document_requests(recording, document)
            return
    yield from _lines(recording)


def storm_requests(path: Path) -> Iterator[tuple[dict[str, str], bytes]]:
    """(headers, body) of every request of a storm directory or recording, ready to post to
    khook over HTTP (the headers an HTTP client sets itself left out)."""
    for request in read_requests(open_storm(path).recording):
        yield sendable(request.headers), request.body


def _whole_document(recording: Path) -> Any | None:
    """The file as one JSON document, or None when it is JSON lines."""
    try:
        size = recording.stat().st_size
        if size > MAX_SNAPSHOT_BYTES:
            raise ReplayInputError(f"{recording}: over {MAX_SNAPSHOT_BYTES // MIB} MiB")
        text = recording.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{recording}: cannot read: {exc}") from exc
    try:
        return json.loads(text)
    except ValueError:
        return None  # several documents: JSON lines


def _document_requests(recording: Path, document: Any) -> Iterator[Request]:
    if not is_snapshot(document):
        yield _request(document, f"{recording}:1")
        return
    try:
        items = snapshot_items(document)
    except SnapshotError as exc:
        raise ReplayInputError(f"{recording}: {exc}") from exc
    known = [t for t, _, _ in items if t is not None]
    if not known:
        raise ReplayInputError(f"{recording}: no item names a time to play it at")
    latest = max(known)
    # Pods before Events at the same moment: the Pod's owner is known when its Events arrive.
    ordered = sorted(
        items, key=lambda i: (i[0] or latest, 0 if i[2].get("kind") != "Event" else 1, i[1])
    )
    for at, order, obj in ordered:
        headers, body = item_request(obj, at or latest, order)
        yield Request(headers, body, at or latest, f"{recording}: item {order + 1}")


def _lines(recording: Path) -> Iterator[Request]:
    try:
        stream = recording.open("rb")
    except OSError as exc:
        raise ReplayInputError(f"{recording}: cannot read: {exc}") from exc
    with stream:
        number = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            where = f"{recording}:{number}"
            if len(raw) > MAX_LINE_BYTES:
                raise ReplayInputError(f"{where}: a line is at most {MAX_LINE_BYTES // MIB} MiB")
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
            except ValueError as exc:
                raise ReplayInputError(f"{where}: not JSON: {exc}") from exc
            yield _request(doc, where)


def _request(doc: Any, where: str) -> Request:
    if isinstance(doc, Mapping) and isinstance(doc.get("headers"), Mapping) and "body" in doc:
        headers = {str(k): str(v) for k, v in doc["headers"].items()}
        raw = doc["body"]
        body = raw.encode() if isinstance(raw, str) else go_json(raw)
        lower = {k.lower(): v for k, v in headers.items()}
        return Request(headers, body, parse_time(lower.get("ce-time")), where)
    if isinstance(doc, Mapping) and "specversion" in doc:
        headers = {"Content-Type": "application/cloudevents+json"}
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return Request(headers, body, parse_time(doc.get("time")), where)
    raise ReplayInputError(
        f'{where}: neither a recorded request ({{"headers": ..., "body": ...}}), a '
        "structured CloudEvent nor a kubectl List"
    )
