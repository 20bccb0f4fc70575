"""Jinja's filters, tests and globals, each wrapped to size its work before it runs.

Every wrapper takes the render's context (``pass_context``), which also keeps Jinja from
running it while the template compiles. A wrapper takes a step, checks the arguments that
decide how big the result gets (``center(999999999)``, ``batch(10**9)``, ``indent(width=
...)``), reads lazy inputs one step per item, and pays for what the filter made.
"""

from __future__ import annotations

import json
import pprint
from collections.abc import Callable, Mapping
from math import ceil, log2
from typing import Any, cast

from jinja2 import filters as jinja_filters
from jinja2 import tests as jinja_tests
from jinja2.runtime import Context
from jinja2.utils import _PassArg, pass_context

from khook.core._jinja_limits import Budget, current, text_size
from khook.core._jinja_ops import (
    allow_hashing,
    allow_printf,
    comparison_cost,
    conversion_work,
    joined_size,
    materialise,
    replaced_size,
    sorting_cost,
)

_Args = tuple[Any, ...]
_Kwargs = dict[str, Any]
Check = Callable[[Budget, Any, _Args, _Kwargs], Any]  # returns the value to filter


def _arg(args: _Args, kwargs: _Kwargs, index: int, name: str, default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _size_limit(budget: Budget, value: Any, factor: int = 1) -> None:
    budget.allow_string(text_size(value, budget.limits.string) * factor)


def _read_all(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    return materialise(budget, value)


def _read_lazy(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    """last, min, max, random: a string is fine as it is; anything lazy is read bounded."""
    return value if isinstance(value, str) else materialise(budget, value)


def _sorting(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    items = materialise(budget, value)
    if isinstance(items, Mapping):
        elements: Any = [x for pair in items.items() for x in pair]
    else:
        elements = items
    budget.spend(sorting_cost(elements, len(items), budget.limits.string))
    return items


def _unique(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    items = _sorting(budget, value, args, kwargs)
    allow_hashing(budget, items)
    return items


def _scan(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    size = text_size(value, budget.limits.string)
    if not isinstance(value, str):
        budget.allow_string(size)  # the filter turns it into text first: str(a mapping)
    budget.spend(size)
    return value


def _number(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    """int and float: reading a long string of digits takes quadratic time."""
    budget.spend(text_size(value, budget.limits.string) + conversion_work(value))
    return value


def _expanding(factor: int) -> Check:
    """Filters whose result is at most ``factor`` times their input (escaping, URL quoting)."""

    def check(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
        _size_limit(budget, value, factor)
        return value

    return check


def _rework(budget: Budget, value: Any) -> str:
    _size_limit(budget, value)
    text = value if isinstance(value, str) else str(value)
    if len(text) > budget.limits.rewrap:
        raise budget.trip(
            f"wordwrap, urlize and striptags take at most {budget.limits.rewrap:,} characters"
        )
    return text


def _center(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    _size_limit(budget, value)
    width = _arg(args, kwargs, 0, "width", 80)
    if isinstance(width, int):
        budget.allow_string(max(text_size(value, budget.limits.string), width))
    return value


def _indent(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    _size_limit(budget, value)
    text = str(value)
    width = _arg(args, kwargs, 0, "width", 4)
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    budget.allow_string(len(text) + (text.count("\n") + 2) * max(step, 0))
    return value


def _wordwrap(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    text = _rework(budget, value)
    wrapstring = _arg(args, kwargs, 2, "wrapstring")
    joint = len(wrapstring) if isinstance(wrapstring, str) else 1
    # Every line holds at least one character: at most len + 1 joints.
    budget.allow_string(len(text) + (len(text) + 1) * joint)
    return text


def _striptags(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    text = _rework(budget, value)
    budget.spend(len(text) * min(text.count("<"), text.count(">")))  # one copy per tag
    return text


def _urlize(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    text = _rework(budget, value)
    budget.allow_string(len(text) * 8)
    return text


def _replace(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    _size_limit(budget, value)
    text = str(value)
    old, new, count = (_arg(args, kwargs, i, n) for i, n in enumerate(("old", "new", "count")))
    budget.spend(len(text))
    budget.allow_string(replaced_size(text, str(old), str(new), count))
    return value


def _format(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    _size_limit(budget, value)
    allow_printf(budget, str(value), kwargs or args)
    return value


def _join(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    items = list(materialise(budget, value))
    separator = _arg(args, kwargs, 0, "d", "")
    budget.allow_string(joined_size(budget, str(separator), items))
    return items


def _counted(index: int, name: str) -> Check:
    """batch(linecount), slice(slices): the count is the length of what they make."""

    def check(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
        count = _arg(args, kwargs, index, name)
        if isinstance(count, int):
            budget.allow_items(count)
        return materialise(budget, value)

    return check


def _round(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    # round(5, -n) and round(x, n, 'floor') compute 10**n.
    precision = _arg(args, kwargs, 0, "precision", 0)
    if isinstance(precision, int):
        budget.allow_int_bits(ceil(abs(precision) * log2(10)))
    return value


def _sum(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    start = _arg(args, kwargs, 1, "start", 0)
    if not isinstance(start, int | float):
        raise TypeError("sum only adds numbers")
    items = materialise(budget, value)
    budget.spend(len(items))
    return items


def _string(budget: Budget, value: Any, args: _Args, kwargs: _Kwargs) -> Any:
    _size_limit(budget, value)
    budget.spend(conversion_work(value) if not isinstance(value, str) else 0)
    return value


def _pprint_bounded(value: Any) -> str:
    stream = _BoundedStream(current())
    pprint.PrettyPrinter(stream=stream).pprint(value)  # type: ignore[arg-type]
    return "".join(stream.parts).rstrip("\n")


class _BoundedStream:
    """A text sink that refuses to grow past the string limit (for pprint and json)."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        self.budget.allow_string(self.size)
        self.parts.append(text)
        return len(text)


INDENT_LEVELS = 100  # a value nested deeper cannot be printed at all
_JSON_GROWTH = 12  # json.dumps writes an astral character as two \uXXXX escapes


def bounded_json_dumps(value: Any, **kwargs: Any) -> str:
    """The tojson filter's dumps: at C speed when the value is small enough that its JSON
    cannot pass the string limit, else piece by piece, stopped at the limit."""
    budget = current()
    indent = kwargs.get("indent")
    if indent:
        # The encoder makes its indent string, once per level, before it writes a thing.
        width = indent if isinstance(indent, int) else len(str(indent))
        budget.allow_string(width * INDENT_LEVELS)
    else:
        size = text_size(value, budget.limits.string)
        if size * _JSON_GROWTH <= budget.limits.string:
            return json.dumps(value, **kwargs)
    stream = _BoundedStream(budget)
    for piece in json.JSONEncoder(**kwargs).iterencode(value):
        stream.write(piece)
    return "".join(stream.parts)


_CHECKS: dict[str, Check] = {
    "batch": _counted(0, "linecount"),
    "capitalize": _scan,
    "center": _center,
    "dictsort": _sorting,
    "e": _expanding(6),
    "escape": _expanding(6),
    "forceescape": _expanding(6),
    "float": _number,
    "format": _format,
    "groupby": _sorting,
    "indent": _indent,
    "int": _number,
    "join": _join,
    "last": _read_lazy,
    "list": _read_all,
    "lower": _scan,
    "max": _sorting,
    "min": _sorting,
    "pprint": _string,
    "random": _read_lazy,
    "replace": _replace,
    "reverse": _read_lazy,
    "round": _round,
    "slice": _counted(0, "slices"),
    "sort": _sorting,
    "string": _string,
    "striptags": _striptags,
    "sum": _sum,
    "title": _scan,
    "trim": _scan,
    "unique": _unique,
    "upper": _scan,
    "urlencode": _expanding(9),
    "urlize": _urlize,
    "wordcount": _scan,
    "wordwrap": _wordwrap,
    "xmlattr": _expanding(6),
}
_REPLACED: dict[str, Callable[..., Any]] = {"pprint": _pprint_bounded}


def _call_with_pass_arg(
    func: Callable[..., Any], context: Context, value: Any, args: _Args, kwargs: _Kwargs
) -> Any:
    pass_arg = _PassArg.from_obj(func)
    if pass_arg is _PassArg.context:
        return func(context, value, *args, **kwargs)
    if pass_arg is _PassArg.eval_context:
        return func(context.eval_ctx, value, *args, **kwargs)
    if pass_arg is _PassArg.environment:
        return func(context.environment, value, *args, **kwargs)
    return func(value, *args, **kwargs)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    check = _CHECKS.get(name)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if check is not None:
            value = check(budget, value, args, kwargs)
        return budget.made(_call_with_pass_arg(func, context, value, args, kwargs))

    guarded.__name__ = f"filter_{name}"
    return guarded


_TEST_COMPARISONS = {
    "==": "eq",
    "eq": "eq",
    "equalto": "eq",
    "!=": "ne",
    "ne": "ne",
    ">": "gt",
    "gt": "gt",
    "greaterthan": "gt",
    ">=": "gteq",
    "ge": "gteq",
    "<": "lt",
    "lt": "lt",
    "lessthan": "lt",
    "<=": "lteq",
    "le": "lteq",
    "in": "in",
}


_SCANNING_TESTS = frozenset({"lower", "upper"})


def _guard_test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    comparison = _TEST_COMPARISONS.get(name)

    @pass_context
    def guarded(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if comparison is not None and args:
            budget.spend(comparison_cost(comparison, value, args[0], budget.limits.string))
        elif name in _SCANNING_TESTS and isinstance(value, str):
            budget.spend(len(value))
        return _call_with_pass_arg(func, context, value, args, kwargs)

    guarded.__name__ = f"test_{name}"
    return guarded


def make_filters() -> dict[str, Callable[..., Any]]:
    return {
        name: _guard_filter(name, _REPLACED.get(name, func))
        for name, func in jinja_filters.FILTERS.items()
    }


def make_tests() -> dict[str, Callable[..., Any]]:
    tests = cast("dict[str, Callable[..., Any]]", jinja_tests.TESTS)
    return {name: _guard_test(name, func) for name, func in tests.items()}
