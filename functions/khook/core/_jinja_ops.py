"""Operators, comparisons and methods a prompt may use, each sized before it runs.

Python does what a template asks at full speed and with all the memory it wants: ``'a' *
10**9``, ``2 ** 10**7``, ``'%999999999s' % x``. Every operator here first works out how big
its result can be from its inputs, refuses one over a limit, and pays for what it made.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from math import ceil, log2
from string import Formatter
from typing import Any

from jinja2.sandbox import SandboxedFormatter

from khook.core._jinja_limits import Budget, current, text_size

BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "**": operator.pow,
    "%": operator.mod,
    "+": operator.add,
    "-": operator.sub,
}
UNOPS: dict[str, Callable[[Any], Any]] = {"+": operator.pos, "-": operator.neg}
COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gteq": operator.ge,
    "lt": operator.lt,
    "lteq": operator.le,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}
_SEQUENCES = (str, list, tuple)
_SIZED = (str, list, tuple, dict, range, set, frozenset)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def materialise(budget: Budget, value: Any) -> Any:
    """An iterable a filter will read whole, as a sized collection within the item limit.

    Lists, strings and dicts are already sized; anything lazy (a map(), a dict view) is
    read one step per item and refused past the limit.
    """
    if isinstance(value, _SIZED):
        budget.allow_items(len(value))
        return value
    if isinstance(value, Mapping):
        budget.allow_items(len(value))
        return value
    items: list[Any] = []
    for item in value:
        budget.step()
        items.append(item)
        budget.allow_items(len(items))
    return items


_HASH_SAFE = 2**61 - 1  # CPython hashes a number modulo this: bigger ones can collide
_COLLIDING_KEYS = 64


def allow_hashing(budget: Budget, keys: Iterable[Any]) -> None:
    """Before a set or dict is built from ``keys``: numbers past 2**61 share hashes at will
    (hash(n) is n mod 2**61-1), and ten thousand of them make one insert after another walk
    the same chain."""
    big = sum(
        1
        for key in keys
        if isinstance(key, int | float) and not isinstance(key, bool) and abs(key) >= _HASH_SAFE
    )
    if big > _COLLIDING_KEYS:
        raise budget.trip(f"more than {_COLLIDING_KEYS} numbers beyond 2**61 as keys")


def guard_iter(budget: Budget, value: Any) -> Iterator[Any]:
    """What a ``for`` loop walks: one step per item."""
    for item in value:
        budget.step()
        yield item


def binop(budget: Budget, op: str, left: Any, right: Any) -> Any:
    budget.step()
    if _is_int(left) and _is_int(right):
        _allow_arithmetic(budget, op, left, right)
    elif op == "*":
        _allow_product(budget, left, right)
    elif op == "+":
        _allow_sum(budget, left, right)
    elif op == "%" and isinstance(left, str):
        allow_printf(budget, left, right)
    return budget.made(BINOPS[op](left, right))


_LIMB_WORK = 4096  # bits x bits per unit: a 64-bit product costs 1, two 14,000-bit ones 47,000


def conversion_work(value: Any) -> int:
    """Python turns numbers into text and back in time quadratic in their length."""
    if isinstance(value, int):
        bits = value.bit_length()
    elif isinstance(value, str):
        bits = len(value) * 10 // 3 if len(value) > 100 else 0  # digits in a base-10 string
    else:
        return 0
    return bits * bits // _LIMB_WORK


def _allow_arithmetic(budget: Budget, op: str, left: int, right: int) -> None:
    """Big numbers cost time in proportion to their sizes' product (long division is
    schoolbook): count that work as characters, so loops over them stop early."""
    a, b = left.bit_length(), right.bit_length()
    if op == "**":
        if right <= 0 or abs(left) <= 1:
            return
        result = ceil(right * log2(abs(left)))
        budget.allow_int_bits(result)
        a = b = result
    elif op == "*":
        budget.allow_int_bits(a + b)
    budget.spend(a * b // _LIMB_WORK + max(a, b) // 8)


def unop(budget: Budget, op: str, value: Any) -> Any:
    budget.step()
    return UNOPS[op](value)


def _allow_product(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, _SEQUENCES):
        left, right = right, left
    if isinstance(left, _SEQUENCES) and isinstance(right, int):
        size = len(left) * max(int(right), 0)
        if isinstance(left, str):
            budget.allow_string(size)
        else:
            budget.allow_items(size)


def _allow_sum(budget: Budget, left: Any, right: Any) -> None:
    if isinstance(left, str) and isinstance(right, str):
        budget.allow_string(len(left) + len(right))
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        budget.allow_items(len(left) + len(right))


def compare(budget: Budget, op: str, left: Any, right: Any) -> Any:
    budget.step()
    budget.spend(comparison_cost(op, left, right, budget.limits.string))
    return COMPARISONS[op](left, right)


def comparison_cost(op: str, left: Any, right: Any, limit: int) -> int:
    """About how many characters a comparison reads (``s in [t] * 10000`` reads a lot)."""
    if op in ("in", "notin"):
        if isinstance(right, str):
            return len(right)
        if isinstance(right, list | tuple):
            return len(right) * (1 + text_size(left, limit))
        return 1 + text_size(left, limit) if isinstance(left, str) else 1
    if isinstance(left, str | list | tuple | Mapping) and isinstance(
        right, str | list | tuple | Mapping
    ):
        return min(text_size(left, limit), text_size(right, limit))
    return 1


def sorting_cost(items: Iterable[Any], count: int, limit: int) -> int:
    """Characters read sorting (or grouping, or deduplicating) ``count`` items."""
    total = sum(text_size(item, limit) for item in items)
    return total * max(1, ceil(log2(count + 1)))


# printf-style: %[(key)][flags][width][.precision][length]type
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.S)
_NUMBER_SLACK = 400  # '%f' of 1e308 is 309 digits


def allow_printf(budget: Budget, template: str, args: Any) -> None:
    """Before ``template % args``: the most it can make, from its widths and arguments."""
    limit = budget.limits.string
    if isinstance(args, tuple):
        values: Iterable[Any] = args
    elif isinstance(args, Mapping):
        values = args.values()
    else:
        values = (args,)
    values = list(values)
    widest = max((text_size(value, limit) for value in values), default=0)
    budget.spend(sum(conversion_work(value) for value in values if not isinstance(value, str)))
    total = len(template)
    for match in _PRINTF.finditer(template):
        width, precision, _ = match.groups()
        if "*" in (width, precision):
            raise budget.trip("a '*' width in % formatting")
        total += _number(budget, width) + _number(budget, precision) + widest + _NUMBER_SLACK
        if total > limit:
            budget.allow_string(total)


def _number(budget: Budget, digits: str | None) -> int:
    if not digits:
        return 0
    if len(digits) > 9:
        raise budget.trip(f"a format width of more than {budget.limits.string:,}")
    value = int(digits)
    budget.allow_string(value)
    return value


_SPEC_NUMBER = re.compile(r"\d+")


class BoundedFormatter(SandboxedFormatter):
    """str.format: every field's width and size checked, the whole result counted."""

    def __init__(self, env: Any, budget: Budget) -> None:
        super().__init__(env)
        self.budget = budget
        self.made = 0

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            self.budget.allow_string(text_size(value, self.budget.limits.string))
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        self.budget.step()
        for number in _SPEC_NUMBER.findall(format_spec):
            _number(self.budget, number)
        self.budget.allow_string(text_size(value, self.budget.limits.string))
        if not isinstance(value, str):
            self.budget.spend(conversion_work(value))
        text = Formatter.format_field(self, value, format_spec)
        self.made += len(text)
        self.budget.allow_string(self.made)
        return text


class Method:
    """A method of a str, dict, list or tuple that a prompt may call, checked before it runs."""

    __slots__ = ("_env", "_name", "_obj")  # underscores: the sandbox hides them from templates

    def __init__(self, env: Any, obj: Any, name: str) -> None:
        self._env = env
        self._obj = obj
        self._name = name

    def __repr__(self) -> str:
        return f"<method {type(self._obj).__name__}.{self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if self._name in ("format", "format_map"):
            return budget.made(self._format(budget, args, kwargs))
        if isinstance(self._obj, str):
            if self._name not in _CONSTANT_TIME:
                budget.spend(len(self._obj))  # s.count('x') reads all of s
            check = _METHOD_CHECKS.get(self._name)
            if check is not None:
                args, kwargs = check(budget, self._obj, args, kwargs)
        elif isinstance(self._obj, list | tuple) and args:  # count, index compare every item
            budget.spend(comparison_cost("in", args[0], self._obj, budget.limits.string))
        return budget.made(getattr(self._obj, self._name)(*args, **kwargs))

    def _format(self, budget: Budget, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        formatter = BoundedFormatter(self._env, budget)
        if self._name == "format_map":
            if kwargs or len(args) != 1:
                raise TypeError("format_map() takes exactly one argument")
            mapping: Any = args[0]
            args, kwargs = (), mapping
        return str(type(self._obj)(formatter.vformat(self._obj, args, kwargs)))


_STR_METHOD_NAMES = """capitalize casefold center count endswith expandtabs find format
    format_map index isalnum isalpha isascii isdecimal isdigit isidentifier islower isnumeric
    isprintable isspace istitle isupper join ljust lower lstrip partition removeprefix
    removesuffix replace rfind rindex rjust rpartition rsplit rstrip split splitlines
    startswith strip swapcase title upper zfill"""
STR_METHODS = frozenset(_STR_METHOD_NAMES.split())  # not encode, translate, maketrans
_CONSTANT_TIME = frozenset({"startswith", "endswith"})
MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})
SEQUENCE_METHODS = frozenset({"count", "index"})

_Args = tuple[tuple[Any, ...], dict[str, Any]]


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name)


def _check_width(budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    width = _arg(args, kwargs, 0, "width")
    if isinstance(width, int):
        budget.allow_string(max(len(s), width))
    return args, kwargs


def _check_expandtabs(
    budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _Args:
    size = _arg(args, kwargs, 0, "tabsize")
    size = 8 if size is None else size
    if isinstance(size, int):
        budget.allow_string(len(s) + s.count("\t") * max(size, 0))
    return args, kwargs


def replaced_size(s: str, old: Any, new: Any, count: Any) -> int:
    """The length of s.replace(old, new, count), from how often ``old`` occurs."""
    if not isinstance(old, str) or not isinstance(new, str):
        return len(s)
    found = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(len(new) - len(old), 0)


def _check_replace(budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    old, new, count = (_arg(args, kwargs, i, n) for i, n in enumerate(("old", "new", "count")))
    budget.spend(len(s))
    budget.allow_string(replaced_size(s, old, new, count))
    return args, kwargs


def joined_size(budget: Budget, separator: str, items: list[Any]) -> int:
    limit = budget.limits.string
    total = len(separator) * max(len(items) - 1, 0)
    for item in items:
        total += text_size(item, limit)
        if total > limit:
            break
    return total


def _check_join(budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    if len(args) != 1 or kwargs:
        return args, kwargs
    items = list(materialise(budget, args[0]))
    budget.allow_string(joined_size(budget, s, items))
    return (items,), kwargs


def _check_split(budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    # At most items + 1 pieces: more than ``items`` of them is over the limit either way.
    limit = budget.limits.items
    maxsplit = _arg(args, kwargs, 1, "maxsplit")
    if not isinstance(maxsplit, int) or maxsplit < 0 or maxsplit > limit:
        sep = _arg(args, kwargs, 0, "sep")
        return (sep, limit), {}
    return args, kwargs


def _check_splitlines(
    budget: Budget, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _Args:
    if s.count("\n") > budget.limits.items:
        budget.allow_items(s.count("\n"))
    return args, kwargs


_METHOD_CHECKS: dict[str, Callable[[Budget, Any, tuple[Any, ...], dict[str, Any]], _Args]] = {
    "center": _check_width,
    "ljust": _check_width,
    "rjust": _check_width,
    "zfill": _check_width,
    "expandtabs": _check_expandtabs,
    "replace": _check_replace,
    "join": _check_join,
    "split": _check_split,
    "rsplit": _check_split,
    "splitlines": _check_splitlines,
}
