"""One JSON object per log line, so `kubectl logs` output can be filtered with jq.

Every line of the process is one: khook's own, other libraries' (through the root logger),
Python warnings, uncaught exceptions in any thread (the traceback is the ``error`` field, one
line), and gunicorn's and uvicorn's (``khook.serving.JSONLogger`` formats them with
:class:`JSONFormatter`). Fields bound with :func:`bind_lazy` (the CloudEvent being handled,
its trace: ``khook.trace.handling``) are added to every line logged until they are unbound, in
whatever thread the context was copied to.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import types
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

_FIELDS = "khook_fields"
LEVELS = ("debug", "info", "warning", "error", "critical")
# Fields worked out only when a line is written: most events are answered without one, and
# building their fields up front cost more than deciding the event (see :func:`bind_lazy`).
_lazy: ContextVar[LazyFields | None] = ContextVar("khook_lazy_log_fields", default=None)


# What orjson cannot write (an int past 64 bits, a key that is not a string) the standard
# library's encoder writes, as every line was before orjson: str() of anything else. orjson's
# own forms of datetimes and dataclasses are passed to that str() too, so a field shows the same
# whichever encoder wrote the line.
_FALLBACK = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def json_line(value: Any) -> str:
    """``value`` as one compact line of JSON (no newline in it), UTF-8 characters as they
    are: khook's log lines and its dry-run agent's requests. orjson writes a line in a tenth
    of the standard library's time; these lines are most of what a new incident costs past
    deciding it. A float that is not a number (NaN, infinity) is written ``null`` (valid
    JSON) by orjson, ``NaN`` by the fallback (as every line was before)."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return _FALLBACK.encode(value)


class LazyFields(Protocol):
    def log_fields(self) -> Mapping[str, Any]: ...


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        lazy = _lazy.get()
        if lazy is not None:
            entry.update(lazy.log_fields())
        entry.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = record.stack_info
        return json_line(entry)


def configure(level: str = "INFO") -> None:
    """khook's loggers, and the root logger every other library logs through, write JSON to
    stderr at ``level`` (the root: warnings and worse). Idempotent."""
    # Every LogRecord would look up its thread, its process id (a system call) and its
    # multiprocessing process name: no line khook writes shows them (logging's documented
    # switches; a line that names a thread, an uncaught exception's, names it itself).
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    _handle(logging.getLogger("khook"), level.upper())
    logging.getLogger("khook").propagate = False
    _handle(logging.getLogger(), max(logging.WARNING, logging.getLevelName(level.upper())))
    logging.captureWarnings(True)  # warnings.warn(...) -> the py.warnings logger -> the root
    # Uncaught exceptions as JSON too; a hook someone else installed (a test runner's) stays.
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _uncaught
    if threading.excepthook is threading.__excepthook__:
        threading.excepthook = _uncaught_in_thread


def _handle(logger: logging.Logger, level: int | str) -> None:
    if not any(isinstance(h.formatter, JSONFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
    logger.setLevel(level)


def log(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """One line of ``msg`` and ``fields`` (those that are not None) at ``level``: the record
    is made here and handed to the logger's handlers as ``logger.log`` would, without looking
    up the caller's file and line, which no line shows (a quarter of a line's cost)."""
    if logger.isEnabledFor(level):  # a line not written costs no record (most debug lines)
        record = logging.LogRecord(logger.name, level, "", 0, msg, None, None)
        setattr(record, _FIELDS, {k: v for k, v in fields.items() if v is not None})
        logger.handle(record)


def bind_lazy(source: LazyFields | None) -> Token[LazyFields | None]:
    """Add ``source.log_fields()`` to every line logged until :func:`unbind_lazy`, asked only
    for a line that is written; a line's own fields come after, and win."""
    return _lazy.set(source)


def unbind_lazy(token: Token[LazyFields | None]) -> None:
    _lazy.reset(token)


def fatal(msg: str, **fields: Any) -> None:
    """One JSON line on stderr, whatever logging's state: for a process that stops before its
    logging is configured (a bad KHOOK_LOG_LEVEL is one reason it could not be)."""
    record = logging.LogRecord("khook", logging.ERROR, __file__, 0, msg, None, None)
    setattr(record, _FIELDS, fields)
    sys.stderr.write(JSONFormatter().format(record) + "\n")
    sys.stderr.flush()


def _uncaught(
    kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    logging.getLogger("khook").critical("uncaught exception", exc_info=(kind, exc, tb))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    thread = args.thread.name if args.thread is not None else None
    logging.getLogger("khook").error(
        "uncaught exception in a thread",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={_FIELDS: {"thread": thread}},
    )
