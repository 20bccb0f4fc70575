"""Frozen dataclasses that cost what plain ones cost to make.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``
(the class's own ``__setattr__`` refuses every assignment): one function call per field.
khook makes about six such objects for an event no Hook wants and forty for a new incident.
:func:`quick_init` gives a frozen dataclass an ``__init__`` that fills the new instance's
``__dict__`` in one step: the same parameters and defaults, the same object (equal, hashed,
shown and frozen as before). On the 19 value types made and dropped for every event, counted
with callgrind in process on `make bench`'s realistic stream: 3.6% fewer instructions a
request (635,500 to 612,500), and as many cache misses. Timings on this kind of machine vary
more than that from run to run, so the count is the measure.

Not for what is kept: on Python 3.11 a plain instance keeps its fields inline, in about 40%
of the memory of the dictionary this ``__init__`` makes (a Record: 384 bytes against 968).
The records, the pods OwnerMemory remembers and the object references in them keep their
dataclass's own ``__init__``."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Put over ``@dataclass(frozen=True)``. A class whose ``__init__`` does more than set
    its fields (``__post_init__``, a ``default_factory``, init-only or keyword-only fields,
    ``__slots__``) is refused with a TypeError when it is defined: its own ``__init__`` is
    the one that knows how. So is one with a ``ClassVar``, which this does not tell apart
    from an ``InitVar`` (none of khook's value types has one)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    declared: dict[str, Any] = getattr(cls, "__dataclass_fields__", {})
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    if (
        "__slots__" in vars(cls)
        or hasattr(cls, "__post_init__")
        or len(declared) != len(fields)  # InitVar and ClassVar pseudo-fields
        or any(
            not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING for f in fields
        )
    ):
        raise TypeError(f"{cls.__name__}: its __init__ does more than set its fields")
    defaults = {f"_{f.name}": f.default for f in fields if f.default is not dataclasses.MISSING}
    signature = ", ".join(
        f.name if f.default is dataclasses.MISSING else f"{f.name}=_{f.name}" for f in fields
    )
    values = ", ".join(f"{f.name!r}: {f.name}" for f in fields)
    source = f"def __init__(self, {signature}):\n    self.__dict__.update({{{values}}})\n"
    made: dict[str, Any] = {}
    # As dataclasses makes every __init__: the names are the class's own field names
    # (identifiers), the defaults are passed in as globals, never written into the source.
    exec(source, defaults, made)  # noqa: S102
    init = made["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    type.__setattr__(cls, "__init__", init)
    return cls


__all__ = ["quick_init"]
