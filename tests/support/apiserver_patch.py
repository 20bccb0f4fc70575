"""JSON merge patch (RFC 7386) and JSON patch (RFC 6902), as the API server applies them.

A malformed patch document raises ``ValueError`` (the server answers 400); a well-formed
patch that does not apply (missing path, failed ``test``) raises ``PatchFailed`` (422).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchFailed(Exception):
    """A JSON patch operation could not be applied to the object."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_directives(patch: Any) -> Any:
    """Drop strategic-merge directives (``$patch``, ``$setElementOrder/...``): a merge patch
    approximates a strategic one, and the directives would otherwise land in the object."""
    if not isinstance(patch, dict):
        return patch
    return {k: strip_directives(v) for k, v in patch.items() if not k.startswith("$")}


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ValueError(f"invalid JSON pointer: {path!r}")
    if not path:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, *, insert: bool) -> int:
    if insert and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchFailed(f"invalid array index: {token!r}")
    index = int(token)
    if index > len(container) or (not insert and index == len(container)):
        raise PatchFailed(f"array index out of bounds: {index}")
    return index


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, insert=False)]
        else:
            raise PatchFailed(f"doc is missing path: {path!r}")
    return current


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, insert=False)]
    raise PatchFailed(f"doc is missing key: {path!r}")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], insert=True), value)
    else:
        raise PatchFailed(f"cannot add to a scalar at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchFailed("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1], insert=False)]
    else:
        raise PatchFailed(f"remove operation does not apply: doc is missing path: {path!r}")
    return doc


def _replace(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    _get(doc, path)  # unlike add, replace requires the target to exist
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    if isinstance(parent, list):
        parent[_index(parent, tokens[-1], insert=False)] = value
    else:
        parent[tokens[-1]] = value
    return doc


def _json_equal(left: Any, right: Any) -> bool:
    # Python's == says True == 1; JSON does not.
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_json_equal, left, right))
    return bool(left == right)


def _apply_one(doc: Any, operation: Any) -> Any:
    if not isinstance(operation, dict) or "path" not in operation:
        raise ValueError(f"invalid JSON patch operation: {operation!r}")
    op, path = operation.get("op"), operation["path"]
    if op in ("add", "replace", "test") and "value" not in operation:
        raise ValueError(f"missing value in {op} operation")
    value = copy.deepcopy(operation.get("value"))
    if op == "add":
        return _add(doc, path, value)
    if op == "remove":
        return _remove(doc, path)
    if op == "replace":
        return _replace(doc, path, value)
    if op == "test":
        if not _json_equal(_get(doc, path), value):
            raise PatchFailed(f"testing value {path} failed: test failed")
        return doc
    if op in ("move", "copy"):
        source = operation.get("from")
        if not isinstance(source, str):
            raise ValueError(f"missing from in {op} operation")
        moved = copy.deepcopy(_get(doc, source))
        if op == "move":
            doc = _remove(doc, source)
        return _add(doc, path, moved)
    raise ValueError(f"unexpected JSON patch operation: {op!r}")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902: apply the operations in order to a copy of ``doc``; all or nothing."""
    if not isinstance(operations, list):
        raise ValueError("a JSON patch must be a list of operations")
    result = copy.deepcopy(doc)
    for operation in operations:
        result = _apply_one(result, operation)
    return result
