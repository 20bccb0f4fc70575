"""Files for the local store, written so that damage is found, never crashed on: bounded
reads that refuse what is not a regular file, JSON that one odd number cannot make unreadable,
atomic replacement, moving a damaged file aside, and ``flock`` locks that stay sound when
their file or directory is deleted underneath them."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from khook.stores._base import StoreError


class Damaged(Exception):
    """This file cannot be used as it is (the message says why); move it aside."""


# Errors that say "this file is broken for good"; anything else (no file descriptors left,
# no memory, interrupted) is passing trouble and stays a StoreError.
_DAMAGE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EISDIR, errno.ELOOP, errno.EIO, errno.ENXIO, errno.EINVAL}
)


def read_bounded(path: Path, max_bytes: int) -> bytes | None:
    """The whole file, or None when there is none. Raises Damaged for a file that is not a
    regular file (a directory, a FIFO that would block, a symlink), unreadable, empty (a torn
    write), or larger than ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _DAMAGE_ERRNOS:
            raise Damaged(f"cannot be read ({exc.strerror})") from exc
        raise StoreError(f"cannot read {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Damaged("is not a regular file")
        if info.st_size > max_bytes:
            raise Damaged(f"is larger than {max_bytes} bytes")
        chunks = []
        size = 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise Damaged(f"is larger than {max_bytes} bytes")
    except OSError as exc:
        if exc.errno in _DAMAGE_ERRNOS:
            raise Damaged(f"cannot be read ({exc.strerror})") from exc
        raise StoreError(f"cannot read {path}: {exc}") from exc
    finally:
        os.close(fd)
    if not size:
        raise Damaged("is empty (a torn write?)")
    return b"".join(chunks)


def parse_json(data: bytes) -> tuple[Any, bool]:
    """The JSON value, and whether it needed the lenient parser. orjson refuses what Python's
    parser reads (``1e999``, ``NaN``, integers past 64 bits), and one such number in one
    record must not cost the whole file: those files are read by the standard parser and then
    checked record by record. Raises Damaged for what is not JSON at all."""
    try:
        return orjson.loads(data), False
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data), True
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Damaged(f"is not JSON ({str(exc)[:80]})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``: a crash of the
    process leaves the old file or the new one, never a torn one. No fsync: it cost more than
    the whole rest of a decision (and its p99 several times the 10 ms budget on a busy disk),
    and a power loss that tears or empties a file costs at most a re-fire, because a damaged
    file is moved aside and started afresh."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_files(directory: Path) -> dict[str, list[Path]]:
    """Temporary files ``write_atomic`` left (a crash mid-write), by the file they were for."""
    found: dict[str, list[Path]] = {}
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            name, sep, _ = entry.name[1:].partition(".tmp-")
            if entry.name.startswith(".") and sep:
                found.setdefault(name, []).append(Path(entry.path))
    return found


def move_aside(
    path: Path, now: datetime, keep: int, label: str = "corrupt", family: str = ""
) -> Path:
    """Rename a file (or directory) to ``<name>.<label>-<UTC yyyymmddThhmmssZ>``; then delete
    all but the newest ``keep`` files moved aside like it: those whose name starts with
    ``family`` (default: this file's name) and carries the same label."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.{label}-{stamp}")
    n = 1
    while target.is_symlink() or target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{label}-{stamp}-{n}")
    try:
        path.rename(target)
    except FileNotFoundError:
        return target  # someone else moved or removed it meanwhile
    except OSError as exc:
        raise StoreError(f"cannot move {path} aside: {exc}") from exc
    _trim(path.parent, family or path.name, f".{label}-", keep)
    return target


def _trim(directory: Path, family: str, marker: str, keep: int) -> None:
    found = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        found = [
            (e.stat(follow_symlinks=False).st_mtime, Path(e.path))
            for e in entries
            if e.name.startswith(family) and marker in e.name
        ]
    found.sort()
    for _, old in found[: max(0, len(found) - keep)]:
        with contextlib.suppress(OSError):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()


@contextlib.contextmanager
def flocked(lock_path: Path, on_missing_directory: Any, on_damage: Any) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if need be). The lock is only
    good while the path still names the file that was locked: if it was deleted or replaced
    meanwhile (its directory removed, say), another process may lock the new file, so the
    lock is taken again on that one. ``on_missing_directory()`` recreates the directory,
    ``on_damage(reason)`` moves a lock path that cannot be a lock file aside."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(5):
        try:
            fd = os.open(lock_path, flags, 0o644)
        except (FileNotFoundError, NotADirectoryError):
            on_missing_directory()
            continue
        except OSError as exc:
            if exc.errno in _DAMAGE_ERRNOS:
                on_damage(f"cannot be a lock file ({exc.strerror})")
                continue
            raise StoreError(f"cannot open the lock file {lock_path}: {exc}") from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                held = os.fstat(fd)
            except OSError as exc:
                raise StoreError(f"cannot lock {lock_path}: {exc}") from exc
            try:
                named = lock_path.lstat()
            except OSError:
                continue
            if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
                continue
            yield
            return
        finally:
            os.close(fd)  # closing the last descriptor releases the lock
    raise StoreError(f"could not lock {lock_path}: it kept vanishing")
