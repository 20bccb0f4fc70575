"""Text from the cluster is data: cleaned, fenced and capped before a prompt sees it.

``fence`` is what every string from the cluster (event fields, the Go placeholders, every key
and string of ``object``) goes through before a template sees it: it stays on one line and
cannot open or close a Markdown code fence, so an event's message cannot forge the structure
of khook's prompt (for example a fake facts block ahead of the real one).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

NAME_LIMIT = 253
MESSAGE_LIMIT = 2000
VALUE_LIMIT = 1024
_LIST_LIMIT = 100
_DEPTH_LIMIT = 12
_KEEP = {"\n", "\t"}
_DROPPED = ("Cc", "Cf", "Cs")  # control, format (bidi overrides, zero-width), lone surrogates
_DROPPED_METADATA = ("managedFields",)
_DROPPED_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
# Line breaks become visible escapes: one value is one line of the prompt.
_LINE_BREAKS = {"\n": "\\n", "\r": "\\r", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_TILDES = re.compile("~{3,}")  # ~~~ opens a Markdown code fence too
_INT64 = (-(2**63), 2**64)


def clean(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Drop control and format characters (bidi overrides, zero-width), cap the length."""
    if text.isprintable():  # holds none of them (nor separators): nothing to drop
        return _cap(text, limit)
    kept = "".join(ch for ch in text if ch in _KEEP or unicodedata.category(ch) not in _DROPPED)
    return _cap(kept, limit)


def fence(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cluster text as a prompt shows it: one line, no backticks, no control characters.

    Newlines and carriage returns (and U+2028/U+2029) become the two characters ``\\n``,
    ``\\r`` (``\\u2028``...); control and format characters are dropped; every backtick
    becomes an apostrophe and a run of three or more tildes is spaced out (``~ ~ ~``), so
    no value can start, end or fake a code fence; the result is at most ``limit``
    characters (cut with "…").
    """
    if not text.isprintable():
        text = "".join(_fence_char(ch) for ch in text)
    if "`" in text:
        text = text.replace("`", "'")
    if "~~~" in text:
        text = _TILDES.sub(lambda m: " ".join(m.group()), text)
    return _cap(text, limit)


def _fence_char(ch: str) -> str:
    escaped = _LINE_BREAKS.get(ch)
    if escaped is not None:
        return escaped
    if ch == "\t" or unicodedata.category(ch) not in _DROPPED:
        return ch
    return ""


def _cap(text: str, limit: int) -> str:
    if len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def clean_object(value: Any, depth: int = 0) -> Any:
    """A copy of a Kubernetes object that is safe to hand to a template: every key and
    string fenced and capped, lists and nesting capped, numbers plain JSON numbers."""
    if depth > _DEPTH_LIMIT:
        return None
    kind = _json_kind(value)
    if kind is str:
        return fence(value, VALUE_LIMIT)
    if kind is dict:
        return _clean_mapping(value, depth)
    if kind is list:
        return [clean_object(item, depth + 1) for item in value[:_LIST_LIMIT]]
    if kind is int:
        return value if _INT64[0] <= value < _INT64[1] else fence(str(value), VALUE_LIMIT)
    if kind is object:
        return fence(str(value), VALUE_LIMIT)
    return value  # bool, float, None


def has_at_most(value: Any, count: int) -> bool:
    """Whether a JSON-like value holds at most ``count`` values (mapping entries, list items
    and scalars, at any depth); stops counting past it."""
    stack = [value]
    seen = 1
    while stack:
        item = stack.pop()
        kind = _json_kind(item)
        if kind is dict:
            children: Any = item.values()
        elif kind is list or isinstance(item, tuple):
            children = item
        else:
            continue
        seen += len(children)
        if seen > count:  # before a child is touched: never more work than ``count``
            return False
        stack.extend(children)
    return True


_JSON_KINDS = {str: str, dict: dict, list: list, bool: bool, int: int, float: float}


def _json_kind(value: Any) -> type:
    """What a value counts as: str, dict (any mapping), list, bool, int, float, None's type,
    or object (anything else). By exact type first: what a JSON decoder makes, without an
    isinstance against Mapping, which is slow."""
    kind = _JSON_KINDS.get(type(value))
    if kind is not None:
        return kind
    if value is None:
        return type(None)
    for base, named in ((str, str), (Mapping, dict), (list, list), (int, int), (float, float)):
        if isinstance(value, base):
            return named
    return object


def _clean_mapping(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if depth == 1 and key in _DROPPED_METADATA:
            continue
        if key in _DROPPED_ANNOTATIONS:
            continue
        out[fence(str(key), NAME_LIMIT)] = clean_object(item, depth + 1)
    return out
