"""The Jinja environment prompts compile and run in: folds nothing, counts everything.

Compiling runs none of the tenant's computation: the optimizer is off, every operator is
intercepted (``BinExpr.as_const`` refuses intercepted operators), every filter, test and the
``finalize`` hook take the context (``as_const`` refuses those), so ``{{ 2**30000000 }}``
compiles in microseconds and only fails when it runs, under the render's budget. The code
generator routes what Jinja would run unchecked through the environment: ``~``
concatenation, comparisons, the items of a ``for`` loop, and every piece of output.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import BlockReference, Context, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, pass_context

from khook.core._jinja_filters import bounded_json_dumps, make_filters, make_tests
from khook.core._jinja_globals import Global, make_globals
from khook.core._jinja_limits import Budget, Limits, current, spending, text_size
from khook.core._jinja_ops import (
    BINOPS,
    MAPPING_METHODS,
    SEQUENCE_METHODS,
    STR_METHODS,
    UNOPS,
    Method,
    binop,
    compare,
    comparison_cost,
    conversion_work,
    guard_iter,
    materialise,
    unop,
)
from khook.core.objects import MAPPING

# The filters a ``for`` loop's items and a call's ``*args`` and ``**kwargs`` pass through;
# dotted names, which no template can write.
LOOP_FILTER = "khook.loop"
ARGS_FILTER = "khook.args"


class _CodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.khook_concat(context, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        if len(node.ops) == 1:
            self.write(f"environment.khook_compare(context, {node.ops[0].op!r}, ")
            self.visit(node.expr, frame)
            self.write(", ")
            self.visit(node.ops[0].expr, frame)
            self.write(")")
            return
        # a < b < c: later operands stay lazy, as in Python's chained comparison.
        self.write("environment.khook_chain(context, ")
        self.visit(node.expr, frame)
        self.write(", (")
        for op in node.ops:
            self.write(f"({op.op!r}, lambda: ")
            self.visit(op.expr, frame)
            self.write("), ")
        self.write("))")

    def visit_Getitem(self, node: nodes.Getitem, frame: Frame) -> None:
        if not isinstance(node.arg, nodes.Slice):
            super().visit_Getitem(node, frame)
            return
        # Jinja writes s[a:b] as Python slicing, unchecked: a slice is paid for too.
        self.write("environment.getitem(")
        self.visit(node.node, frame)
        self.write(", slice(")
        for i, part in enumerate((node.arg.start, node.arg.stop, node.arg.step)):
            self.write(", " if i else "")
            if part is None:
                self.write("None")
            else:
                self.visit(part, frame)
        self.write("))")

    def _output_const_repr(self, group: Any) -> str:
        # Literal text costs what it adds, in a macro's or a block's buffer too.
        return f"environment.khook_text(context, {super()._output_const_repr(group)})"


class _UndeclaredNames(_CodeGenerator):
    """jinja2.meta.find_undeclared_variables, without its constant folding."""

    def __init__(self, environment: HardenedEnvironment) -> None:
        super().__init__(environment, "<introspection>", "<introspection>", optimized=False)
        self.undeclared: set[str] = set()

    def write(self, x: str) -> None:
        """Generate nothing."""

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, param in frame.symbols.loads.values():
            if action == "resolve" and param not in self.environment.globals:
                self.undeclared.add(param)


@pass_context
def _finalize(context: Context, value: Any) -> str:
    """Every ``{{ }}`` becomes text here: sized before str() builds it, then paid for."""
    budget = current()
    budget.step()
    if not isinstance(value, str):
        budget.allow_string(text_size(value, budget.limits.string))
        budget.spend(conversion_work(value))
        value = str(value)
    return str(budget.made(value))


@pass_context
def _loop_items(context: Context, iterable: Any) -> Iterator[Any]:
    """What a ``for`` loop walks: one step per item."""
    return guard_iter(current(), iterable)


@pass_context
def _unpacked(context: Context, value: Any) -> Any:
    """What ``f(*args)`` or ``f(**kwargs)`` unpacks: read within the item limit first."""
    return materialise(current(), value)


_CALLABLE_METHODS = frozenset({"cycle", "changed", "next", "reset"})


class HardenedEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset(BINOPS)
    intercepted_unops = frozenset(UNOPS)

    def __init__(self) -> None:
        super().__init__(
            undefined=ChainableUndefined,  # object.metadata.labels.app is "" without labels
            autoescape=False,
            keep_trailing_newline=True,
            optimized=False,
            finalize=_finalize,
            cache_size=0,
        )
        self.filters.clear()
        self.filters.update(make_filters())
        self.filters[LOOP_FILTER] = _loop_items
        self.filters[ARGS_FILTER] = _unpacked
        self.tests.clear()
        self.tests.update(make_tests())
        self.globals.clear()
        self.globals.update(make_globals())
        self.policies["json.dumps_function"] = bounded_json_dumps

    def undeclared_names(self, tree: nodes.Template) -> set[str]:
        tracker = _UndeclaredNames(self)
        tracker.visit(tree)
        return tracker.undeclared

    # ---- what the sandbox intercepts ---------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        return binop(current(), operator, left, right)

    def call_unop(self, context: Context, operator: str, arg: Any) -> Any:
        return unop(current(), operator, arg)

    def getattr(self, obj: Any, attribute: str) -> Any:
        current().step()
        if isinstance(obj, str):
            if attribute in STR_METHODS:
                return Method(self, obj, attribute)
            if hasattr(obj, attribute):
                return self.unsafe_undefined(obj, attribute)
            return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, MAPPING):
            if attribute in MAPPING_METHODS:
                return Method(self, obj, attribute)
            try:
                return obj[attribute]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=attribute)
        if isinstance(obj, list | tuple):
            if attribute in SEQUENCE_METHODS:
                return Method(self, obj, attribute)
            if attribute in getattr(type(obj), "_fields", ()):  # groupby's (grouper, list)
                return getattr(obj, attribute)
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        budget = current()
        budget.step()
        if isinstance(obj, str | list | tuple | Mapping):
            try:
                return budget.made(obj[argument]) if isinstance(argument, slice) else obj[argument]
            except (TypeError, LookupError):
                if isinstance(argument, str):
                    return self.getattr(obj, argument)
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.step()
        if isinstance(__obj, Method | Global):
            kwargs.pop("_loop_vars", None)  # what Jinja passes calls made in loops and blocks
            kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        if isinstance(__obj, Undefined | Joiner):
            return __context.call(__obj, *args, **kwargs)
        if isinstance(__obj, Macro | BlockReference | LoopContext):
            if isinstance(__obj, LoopContext) and args:  # loop(children) in a recursive loop
                args = (guard_iter(budget, args[0]), *args[1:])
            budget.enter()
            try:
                return budget.made(__context.call(__obj, *args, **kwargs))
            finally:
                budget.leave()
        if (
            isinstance(__obj, types.MethodType)
            and isinstance(__obj.__self__, LoopContext | Cycler)
            and __obj.__name__ in _CALLABLE_METHODS
        ):
            budget.spend(text_size(args, budget.limits.string))  # loop.changed compares
            return __context.call(__obj, *args, **kwargs)
        raise SecurityError(f"{_describe(__obj)} cannot be called in a prompt")

    # ---- what the code generator routes here -------------------------------------------

    def khook_concat(self, context: Context, values: tuple[Any, ...]) -> str:
        budget = current()
        budget.step()
        limit = budget.limits.string
        parts: list[str] = []
        total = 0
        for value in values:
            if isinstance(value, str):
                text = value
            else:
                budget.allow_string(text_size(value, limit))
                budget.spend(conversion_work(value))
                text = str(value)
            total += len(text)
            budget.allow_string(total)
            parts.append(text)
        return str(budget.made("".join(parts)))

    def khook_compare(self, context: Context, op: str, left: Any, right: Any) -> Any:
        return compare(current(), op, left, right)

    def khook_chain(
        self, context: Context, left: Any, ops: tuple[tuple[str, Callable[[], Any]], ...]
    ) -> Any:
        budget = current()
        result: Any = True
        for op, operand in ops:
            right = operand()
            result = compare(budget, op, left, right)
            if not result:
                return False
            left = right
        return result

    def khook_text(self, context: Context, text: str) -> str:
        current().spend(len(text))
        return text


def _describe(obj: Any) -> str:
    name = getattr(obj, "__name__", None)
    if isinstance(name, str):
        return f"{type(obj).__name__} {name!r}"
    return type(obj).__name__


ENV = HardenedEnvironment()


def render_bounded(template: Any, variables: Mapping[str, Any], limits: Limits) -> str:
    """Run a compiled template under a fresh budget; output past ``limits.output`` is cut
    with "…" and the rest of the template never runs."""
    budget = Budget(limits)
    with spending(budget):
        context = template.new_context(dict(variables))
        stream = template.root_render_func(context)
        pieces: list[str] = []
        size = 0
        try:
            for piece in stream:
                pieces.append(piece)
                size += len(piece)
                if size > limits.output:
                    return "".join(pieces)[: limits.output - 1] + "…"
        finally:
            stream.close()
        return "".join(pieces)


__all__ = ["ENV", "HardenedEnvironment", "comparison_cost", "render_bounded"]


def nesting(tree: nodes.Node) -> int:
    """How deep a parsed template nests (counted without recursion: it may be deep)."""
    deepest = 0
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


def guard_tree(tree: nodes.Template) -> None:
    """Route what Jinja would iterate unchecked through the budget: every ``for`` loop's
    items (one step each) and every call's ``*args`` and ``**kwargs`` (the item limit)."""

    def through(name: str, node: nodes.Node) -> nodes.Filter:
        return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)

    for loop in list(tree.find_all(nodes.For)):
        loop.iter = through(LOOP_FILTER, loop.iter)
    calls: list[Any] = list(tree.find_all((nodes.Call, nodes.Filter, nodes.Test)))
    for call in calls:
        if call.dyn_args is not None:
            call.dyn_args = through(ARGS_FILTER, call.dyn_args)
        if call.dyn_kwargs is not None:
            call.dyn_kwargs = through(ARGS_FILTER, call.dyn_kwargs)
