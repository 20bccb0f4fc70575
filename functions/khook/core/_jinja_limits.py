"""What one render of a prompt may spend, counted while it runs.

A tenant's template is code: every loop iteration, call, filter, operator and lookup takes a
step, every string it makes costs its length, and no single value may grow past a size. A
limit hit stops the render at once with a message naming the limit (``RenderLimit``). Counts
are per render; a budget that has tripped stays tripped, so code that swallows the error
(a filter's ``except ValueError``) cannot buy more work.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MappingView
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2.runtime import Undefined
from jinja2.utils import Namespace


@dataclass(frozen=True)
class Limits:
    steps: int = 100_000  # loop iterations, calls, filters, tests, operators, lookups
    chars: int = 10_000_000  # characters made in one render: strings, and all output
    string: int = 1_000_000  # the longest string one operation may make
    items: int = 10_000  # the longest list, tuple, dict or range
    items_made: int = 1_000_000  # list, tuple and dict items made in one render
    int_bits: int = 14_000  # the largest integer (about 4,200 decimal digits)
    depth: int = 40  # nested macro, caller(), block and recursive-loop calls
    output: int = 20_000  # the rendered prompt; longer output is cut with "…"
    rewrap: int = 100_000  # the longest text wordwrap, urlize and striptags will rework


LIMITS = Limits()


class RenderLimit(Exception):
    """A render went over one of its limits (not a ValueError: filters catch those)."""


class Budget:
    """The counts of one render."""

    __slots__ = ("chars", "depth", "items", "limits", "steps", "tripped")

    def __init__(self, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self.steps = 0
        self.chars = 0
        self.items = 0
        self.depth = 0
        self.tripped = ""

    def trip(self, message: str) -> RenderLimit:
        self.tripped = self.tripped or message
        return RenderLimit(self.tripped)

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.tripped or self.steps > self.limits.steps:
            raise self.trip(
                f"more than {self.limits.steps:,} steps "
                "(loop iterations, calls, filters, operators and lookups)"
            )

    def spend(self, chars: int) -> None:
        self.chars += chars
        if self.tripped or self.chars > self.limits.chars:
            raise self.trip(f"more than {self.limits.chars:,} characters made in total")

    def spend_items(self, count: int) -> None:
        self.items += count
        if self.tripped or self.items > self.limits.items_made:
            raise self.trip(f"more than {self.limits.items_made:,} list and dict items made")

    def allow_string(self, length: int) -> None:
        """Before making a string of (at most) ``length`` characters."""
        if length > self.limits.string:
            raise self.trip(f"a string of more than {self.limits.string:,} characters")

    def allow_items(self, count: int) -> None:
        if count > self.limits.items:
            raise self.trip(f"a sequence of more than {self.limits.items:,} items")

    def allow_int_bits(self, bits: int) -> None:
        if bits > self.limits.int_bits:
            raise self.trip(f"a number of more than {self.limits.int_bits:,} bits")

    def enter(self) -> None:
        self.depth += 1
        self.step()
        if self.depth > self.limits.depth:
            raise self.trip(
                f"calls nested more than {self.limits.depth} deep "
                "(macros, caller(), blocks, recursive loops)"
            )

    def leave(self) -> None:
        self.depth -= 1

    def made(self, value: Any) -> Any:
        """Check and pay for a value an operation has just made; returns it."""
        if isinstance(value, str):
            self.allow_string(len(value))
            self.spend(len(value))
        elif isinstance(value, bool):
            pass
        elif isinstance(value, int):
            self.allow_int_bits(value.bit_length())
        elif isinstance(value, list | tuple | dict | set | frozenset):
            self.allow_items(len(value))
            self.spend_items(len(value))
        elif isinstance(value, range):
            self.allow_items(len(value))
        return value


_CURRENT: ContextVar[Budget | None] = ContextVar("khook_prompt_budget", default=None)


def current() -> Budget:
    budget = _CURRENT.get()
    if budget is None:  # only PromptTemplate.render runs a template
        raise RuntimeError("a prompt template ran outside PromptTemplate.render")
    return budget


@contextmanager
def spending(budget: Budget) -> Iterator[Budget]:
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


_NESTING = 100  # text_size gives up on values nested deeper


def text_size(value: Any, limit: int) -> int:
    """About len(str(value)), counted without building it; stops counting past ``limit``.

    Strings count their length (repr's escapes are not counted: the caller checks the real
    result too); containers count every element each time it appears, so a list holding one
    big string many times is seen for what str() of it would be.
    """
    if isinstance(value, str):
        return len(value)
    return _size(value, limit, 0, set())


_FIXED = {type(None): 5, bool: 5, float: 24, range: 30}


def _scalar_size(value: Any) -> int | None:
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind is int:
        return int(value.bit_length()) * 3 // 10 + 2
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return fixed
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, Undefined | float):
        return 30
    return None


def _size(value: Any, limit: int, depth: int, path: set[int]) -> int:
    scalar = _scalar_size(value)
    if scalar is not None:
        return scalar
    if depth > _NESTING:
        raise current().trip(f"a value nested more than {_NESTING} deep")
    if id(value) in path:  # a namespace holding itself: repr writes "..."
        return 5
    if isinstance(value, Namespace):
        return 13 + _size(object.__getattribute__(value, "_Namespace__attrs"), limit, depth, path)
    if isinstance(value, Mapping):
        parts: Any = value.items()
        pairs = True
    elif isinstance(value, list | tuple | set | frozenset | MappingView):
        parts, pairs = value, False
    else:
        return 100  # a function, a loop or cycler, a generator: a short repr
    path.add(id(value))
    total = 2
    depth += 1
    for part in parts:
        for item in part if pairs else (part,):
            size = _scalar_size(item)
            total += 2 + (size if size is not None else _size(item, limit, depth, path))
        if total > limit:
            break
    path.discard(id(value))
    return total
