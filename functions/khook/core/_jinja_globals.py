"""The template's globals (range, lipsum, dict, cycler, joiner, namespace), each sized.

Calls to a ``Global`` are allowed (see HardenedEnvironment.call); each takes a step, checks
what decides its size, and pays for what it made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2.utils import Cycler, Joiner, Namespace, generate_lorem_ipsum

from khook.core._jinja_limits import Budget, current
from khook.core._jinja_ops import allow_hashing, materialise


class Global:
    """A function of the template's globals; calls to these are allowed (see Environment.call)."""

    __slots__ = ("_func", "_name")  # underscores: the sandbox hides them from templates

    def __init__(self, name: str, func: Callable[..., Any]) -> None:
        self._name = name
        self._func = func

    def __repr__(self) -> str:
        return f"<global {self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        return budget.made(self._func(budget, *args, **kwargs))


def _range(budget: Budget, *args: int) -> range:
    numbers = range(*args)
    budget.allow_items(len(numbers))
    return numbers


def _lipsum(budget: Budget, n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    budget.allow_items(n * max)  # one step of Python per word
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _dict(budget: Budget, *args: Any, **kwargs: Any) -> dict[Any, Any]:
    sources = [materialise(budget, a) for a in args]
    for source in sources:
        allow_hashing(budget, source.keys() if isinstance(source, Mapping) else _firsts(source))
    return dict(*sources, **kwargs)


def _firsts(pairs: Any) -> Any:
    return (pair[0] for pair in pairs if isinstance(pair, list | tuple) and pair)


def _cycler(budget: Budget, *items: Any) -> Cycler:
    return Cycler(*items)


def _joiner(budget: Budget, sep: str = ", ") -> Joiner:
    return Joiner(sep)


def _namespace(budget: Budget, *args: Any, **kwargs: Any) -> Namespace:
    return Namespace(_dict(budget, *args), **kwargs)


def make_globals() -> dict[str, Global]:
    funcs: dict[str, Callable[..., Any]] = {
        "range": _range,
        "lipsum": _lipsum,
        "dict": _dict,
        "cycler": _cycler,
        "joiner": _joiner,
        "namespace": _namespace,
    }
    return {name: Global(name, func) for name, func in funcs.items()}
