"""The parts of ``object`` a straight-line prompt looks up, so that only they are cleaned.

A straight-line prompt (``_jinja_straight``) reads the object only through lookups with
constant keys: ``object.spec.containers[0].image``. The paths of those lookups, gathered once
when the prompt compiles, say which parts of an object it can ever see; the object is cut down
to them (``prune``) before it is cleaned for the template, so a prompt that prints one field
of a Pod no longer pays for cleaning all of it. The prompt is the same either way: cleaning
works value by value (every key fenced, every string and list capped, the same few metadata
keys dropped), so the parts kept clean exactly as they would inside the whole object, and a
lookup outside them finds nothing in either.

A path ends where a lookup stops being constant (``object.spec[name]``), at a filter or a
test (``object.metadata.labels | tojson``), or at a key that is neither a string nor a
non-negative index: all of the object below that point is kept. A bare ``object`` keeps it
whole.
"""

from __future__ import annotations

from typing import Any

from jinja2 import nodes

from khook.core.text import NAME_LIMIT, fence

# A trie of the paths: a mapping from a key to what is kept below it. WHOLE (this one empty
# mapping, told apart by identity and never changed) keeps all of the object below its key.
Paths = dict[str | int, Any]
WHOLE: Paths = {}


def object_paths(tree: nodes.Template) -> Paths | None:
    """The paths under ``object`` a straight-line prompt looks up; None when it reads the
    object whole. Only for straight-line prompts: in others a lookup may be a method
    (``object.metadata.labels.items()``), not a key."""
    found: list[tuple[str | int, ...]] = []
    stack: list[nodes.Node] = [tree]
    while stack:  # no recursion: the tree may nest 40 deep
        node = stack.pop()
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            chain = _chain(node)
            if chain is not None:
                keys, arguments = chain
                found.append(keys)
                stack.extend(arguments)
                continue
        elif isinstance(node, nodes.Name) and node.name == "object":
            return None
        stack.extend(node.iter_child_nodes())
    trie: Paths = {}
    for keys in found:
        if not keys:
            return None
        _insert(trie, keys)
    return trie


class TooBig(Exception):
    """Cutting the object would look at more entries than allowed."""


def prune(obj: Any, paths: Paths, limit: int | None = None) -> Any:
    """``obj`` with only what ``paths`` look up (the raw values, not yet cleaned). ``limit``:
    the most mapping entries and list items the cut may look at (each key is fenced to be
    compared), TooBig past it; the parts kept whole are not looked into."""
    return _prune(obj, paths, [limit] if limit is not None else None)


def _prune(obj: Any, paths: Paths, left: list[int] | None) -> Any:
    if paths is WHOLE:
        return obj
    if isinstance(obj, dict):
        _spend(left, len(obj))
        kept: dict[Any, Any] = {}
        for key, value in obj.items():
            # The key the template sees is the cleaned one; keys that clean alike all stay,
            # in order, so the last one wins as it does when the whole object is cleaned.
            below = paths.get(fence(str(key), NAME_LIMIT))
            if below is not None:
                kept[key] = _prune(value, below, left)
        return kept
    if isinstance(obj, list):
        indexes = [key for key in paths if type(key) is int]
        if len(indexes) < len(paths):
            return obj  # a name looked up in a list: kept as it is
        # The items before the last one looked up keep their places; those not looked up
        # are None (a constant lookup never reaches them).
        looked = obj[: max(indexes) + 1]
        _spend(left, len(looked))
        return [
            _prune(item, paths[n], left) if n in paths else None for n, item in enumerate(looked)
        ]
    return obj


def _spend(left: list[int] | None, entries: int) -> None:
    if left is not None:
        left[0] -= entries
        if left[0] < 0:
            raise TooBig


def _chain(node: nodes.Getattr | nodes.Getitem) -> tuple[tuple[str | int, ...], list[Any]] | None:
    """For a chain of lookups that starts at ``object``: the constant path it looks up, and
    the lookups' arguments (to be searched too); None for a chain that starts elsewhere."""
    links: list[nodes.Getattr | nodes.Getitem] = []
    inner: nodes.Node = node
    while isinstance(inner, nodes.Getattr | nodes.Getitem):
        links.append(inner)
        inner = inner.node
    if not (isinstance(inner, nodes.Name) and inner.name == "object"):
        return None
    keys: list[str | int] = []
    for link in reversed(links):  # from ``object`` outwards
        key = _key(link)
        if key is None:
            break
        keys.append(key)
    arguments = [link.arg for link in links if isinstance(link, nodes.Getitem)]
    return tuple(keys), arguments


def _key(link: nodes.Getattr | nodes.Getitem) -> str | int | None:
    if isinstance(link, nodes.Getattr):
        return link.attr
    value = link.arg.value if isinstance(link.arg, nodes.Const) else None
    if type(value) is str or (type(value) is int and value >= 0):
        return value
    return None


def _insert(trie: Paths, keys: tuple[str | int, ...]) -> None:
    node = trie
    for n, key in enumerate(keys):
        last = n == len(keys) - 1
        below = node.get(key)
        if below is WHOLE:
            return  # all of it is kept already
        if last:
            node[key] = WHOLE
            return
        if below is None:
            below = node[key] = {}
        node = below
