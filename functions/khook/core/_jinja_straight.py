"""Straight-line prompts: templates whose shape alone keeps their render small.

Most prompts only print facts: text, placeholders, lookups, ``or``/``default`` and an
``if``. Such a template has no loop, no call, no arithmetic and no assignment, so each of its
nodes runs at most once, each on a value khook's context already caps (fenced strings of at
most 2,000 characters, objects of capped strings and lists). khook renders a straight-line
prompt in its own process under ``INLINE_LIMITS``, a fraction of the full limits, and sends
it to a render process only if it goes over them; any other prompt always renders in a render
process. The answer is the same either way: limits change a render's result only when one
trips, and a render that trips here is done again there.
"""

from __future__ import annotations

from dataclasses import replace

from jinja2 import nodes

from khook.core._jinja_limits import LIMITS

# A few hundred of nodes' worth of work: under a millisecond for what a prompt usually prints.
INLINE_LIMITS = replace(
    LIMITS, steps=2_000, chars=400_000, string=100_000, items=1_000, items_made=10_000
)

# The most values (strings, numbers, mapping entries, list items) an object rendered here may
# hold: a Pod has a few hundred; cleaning a bigger one for the template is left to a process.
INLINE_OBJECT_VALUES = 5_000

_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.CondExpr,
    nodes.If,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.List,
    nodes.Tuple,
    nodes.Filter,
    nodes.Test,
    nodes.Keyword,
)
# Filters and tests whose work is at most linear in their input. Only those below take
# arguments here (constants): an argument may size a result (``center(n)``, ``indent(n)``,
# ``tojson(indent=n)``), and such a prompt is left to a render process.
_WITH_ARGUMENTS = frozenset({"d", "default", "truncate"})
_FILTERS = frozenset(
    {
        "capitalize",
        "count",
        "d",
        "default",
        "first",
        "last",
        "length",
        "lower",
        "title",
        "tojson",
        "trim",
        "truncate",
        "upper",
    }
)
_TESTS = frozenset(
    {
        "boolean",
        "defined",
        "false",
        "float",
        "integer",
        "mapping",
        "none",
        "number",
        "sequence",
        "string",
        "true",
        "undefined",
    }
)


def is_straight_line(tree: nodes.Template) -> bool:
    """Whether every node of a parsed prompt is one of the few kinds above: names are only
    read, keys and arguments are constants, filters and tests are the linear ones."""
    stack: list[nodes.Node] = [tree]
    while stack:  # no recursion: the tree may nest 40 deep
        node = stack.pop()
        if not isinstance(node, _NODES) or not _allowed(node):
            return False
        stack.extend(node.iter_child_nodes())
    return True


def _allowed(node: nodes.Node) -> bool:
    if isinstance(node, nodes.Name):
        return node.ctx == "load"
    if isinstance(node, nodes.List | nodes.Tuple):
        return all(isinstance(item, nodes.Const) for item in node.items)
    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const)
    if isinstance(node, nodes.Filter | nodes.Test):
        filtering = isinstance(node, nodes.Filter)
        if node.name not in (_FILTERS if filtering else _TESTS) or node.node is None:
            return False
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            return False
        if filtering and node.name not in _WITH_ARGUMENTS and (node.args or node.kwargs):
            return False
        return all(isinstance(arg, nodes.Const) for arg in node.args) and all(
            isinstance(kw.value, nodes.Const) for kw in node.kwargs
        )
    return True
