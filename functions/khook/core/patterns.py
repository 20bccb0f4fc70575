"""Message patterns of classification rules, run with RE2: time linear in the text.

Rules are written by operators, but the messages they are searched in come from any tenant's
Events and Pods. A backtracking engine (Python's ``re``) can take exponential time on a pattern
such as ``^(\\w+\\s?)*$``; RE2 cannot, so a pattern it cannot run (backreferences, lookaround)
is refused when the rules load, and one that *would* be catastrophic elsewhere is only flagged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import re2

MAX_PATTERN_LENGTH = 1_000  # characters in one message pattern
MAX_PATTERN_MEMORY = 4 * 1024 * 1024  # bytes RE2 may use for one compiled pattern
SEARCH_LIMIT = 4_096  # characters of a signal's message that are searched


class PatternError(ValueError):
    pass


@dataclass(frozen=True)
class MessagePattern:
    """A case-insensitive RE2 pattern, searched in the first SEARCH_LIMIT characters."""

    source: str
    _compiled: Any  # re2._Regexp; Any keeps re2's untyped objects off the public face

    def search(self, text: str) -> bool:
        return self._compiled.search(text[:SEARCH_LIMIT]) is not None


def _options() -> Any:
    options = re2.Options()
    options.case_sensitive = False
    options.max_mem = MAX_PATTERN_MEMORY
    options.log_errors = False  # the error is raised (and reported); RE2 need not print it
    return options


def compile_message_pattern(source: str) -> MessagePattern:
    """Compile with RE2; a PatternError says why a pattern cannot be used."""
    if not isinstance(source, str) or not source:
        raise PatternError("must be a non-empty regular expression (a string)")
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(f"is {len(source)} characters long; the limit is {MAX_PATTERN_LENGTH}")
    try:
        compiled = re2.compile(source, _options())
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(
            f"is not a regular expression RE2 can run: {detail} (khook runs message patterns "
            "with RE2, in time linear in the message; backreferences and lookaround are not "
            "available)"
        ) from None
    return MessagePattern(source, compiled)


# ---- what a backtracking engine would make of a pattern ----------------------------------


@dataclass
class _Group:
    repeats_inside: bool = False  # holds a quantifier that repeats (max > 1)


def backtracking_risk(source: str) -> str | None:
    """Why a backtracking engine (Python's re, PCRE, Java) could take exponential time on this
    pattern, or None: a group repeated without bound that holds a repeated part (nested
    quantifiers, as in ``(\\w+\\s?)*`` or ``(a+)+``). A heuristic: it reads the pattern's
    structure only and never runs it; ``(\\d+\\.){3}`` (bounded) is not flagged."""
    stack = [_Group()]
    last_group: _Group | None = None  # the group just closed, if the last atom was one
    after_quantifier = False
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        quantifier = _quantifier_at(source, i)
        if quantifier is not None:
            end, bounded, repeats = quantifier
            if after_quantifier:  # a lazy or possessive marker: a*? a*+
                i += 1
                after_quantifier = False
                continue
            if repeats:
                if not bounded and last_group is not None and last_group.repeats_inside:
                    return (
                        f"nested quantifiers at character {i}: a group repeated without bound "
                        "holds a repeated part, which a backtracking engine (Python's re, "
                        "PCRE, Java) can take exponential time to reject"
                    )
                stack[-1].repeats_inside = True
            last_group, after_quantifier, i = None, True, end
            continue
        after_quantifier = False
        last_group = None
        if ch == "\\":
            i += 2
        elif ch == "[":
            i = _class_end(source, i)
        elif ch == "(":
            stack.append(_Group())
            i += 1
        elif ch == ")" and len(stack) > 1:
            inner = stack.pop()
            stack[-1].repeats_inside |= inner.repeats_inside
            last_group = inner
            i += 1
        else:
            i += 1
    return None


def _quantifier_at(source: str, i: int) -> tuple[int, bool, bool] | None:
    """(end, bounded, repeats) for a quantifier starting at i, else None."""
    ch = source[i]
    if ch in "*+":
        return i + 1, False, True
    if ch == "?":
        return i + 1, True, False
    if ch != "{":
        return None
    close = source.find("}", i, i + 24)
    if close < 0:
        return None
    low, comma, high = source[i + 1 : close].partition(",")
    if not low.isdigit() or (high and not high.isdigit()):
        return None
    if not comma:
        return close + 1, True, int(low) > 1
    if not high:
        return close + 1, False, True
    return close + 1, True, int(high) > 1


def _class_end(source: str, i: int) -> int:
    """The index after the character class that starts at i."""
    j = i + 1
    if j < len(source) and source[j] == "^":
        j += 1
    if j < len(source) and source[j] == "]":
        j += 1  # a leading ] is a literal
    while j < len(source):
        ch = source[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[" and source.startswith(":", j + 1):
            close = source.find(":]", j + 2)
            if close >= 0:
                j = close + 2
                continue
        if ch == "]":
            return j + 1
        j += 1
    return len(source)
