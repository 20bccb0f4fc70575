"""Label and field selectors, parsed and matched the way the real API server does.

Parse errors raise ``ValueError``; the HTTP layer turns them into 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.apiserver_model import Obj, ResourceType

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE = re.compile(rf"^({_NAME})?$")
_REQUIREMENT = re.compile(
    r"""^(?:
        !\s*(?P<absent>[^\s!=<>(),]+)
      | (?P<key>[^\s!=<>(),]+)\s*(?:
            (?P<op>==|!=|=|<|>)\s*(?P<value>[^\s!=<>(),]*)
          | \s(?P<setop>in|notin)\s*\((?P<set>[^()]*)\)
        )?
    )$""",
    re.VERBOSE,
)

# Field labels the real server supports beyond metadata.name/metadata.namespace, with the
# object path each one reads (for Events, "source" is source.component).
_BUILTIN_FIELDS: dict[tuple[str, str], dict[str, str]] = {
    ("", "pods"): {
        name: name
        for name in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        )
    },
    ("", "events"): {
        "involvedObject.kind": "involvedObject.kind",
        "involvedObject.namespace": "involvedObject.namespace",
        "involvedObject.name": "involvedObject.name",
        "involvedObject.uid": "involvedObject.uid",
        "involvedObject.apiVersion": "involvedObject.apiVersion",
        "involvedObject.resourceVersion": "involvedObject.resourceVersion",
        "involvedObject.fieldPath": "involvedObject.fieldPath",
        "reason": "reason",
        "reportingComponent": "reportingComponent",
        "source": "source.component",
        "type": "type",
    },
    ("", "nodes"): {"spec.unschedulable": "spec.unschedulable"},
    ("", "namespaces"): {"status.phase": "status.phase"},
}

Matcher = Callable[[Obj], bool]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", "<", ">"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key, "")
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            # As in the real server: objects without the label match a negative requirement.
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        return present and _compare(value, self.op, self.values[0])


def _compare(value: str, op: str, bound: str) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return number < int(bound) if op == "<" else number > int(bound)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` value sets."""
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [part.strip() for part in parts]


def _check_key(key: str) -> str:
    if len(key.rsplit("/", maxsplit=1)[-1]) > 63 or not _KEY.match(key):
        raise ValueError(f"unable to parse requirement: invalid label key: {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise ValueError(f"unable to parse requirement: invalid label value: {value!r}")
    return value


def _parse_requirement(text: str) -> Requirement:
    found = _REQUIREMENT.match(text)
    if found is None:
        raise ValueError(f"unable to parse requirement: {text!r}")
    if found["absent"]:
        return Requirement(_check_key(found["absent"]), "!")
    key = _check_key(found["key"])
    if found["setop"]:
        values = tuple(_check_value(v.strip()) for v in found["set"].split(","))
        return Requirement(key, found["setop"], values)
    op = found["op"]
    if op is None:
        return Requirement(key, "exists")
    value = _check_value(found["value"])
    if op in ("<", ">") and not re.fullmatch(r"-?\d+", value):
        raise ValueError(f"unable to parse requirement: {value!r} is not an integer")
    return Requirement(key, "=" if op == "==" else op, (value,))


def parse_label_selector(text: str) -> list[Requirement]:
    """``a=b,c!=d,e in (x,y),f notin (z),g,!h`` -> requirements, all of which must match."""
    if not text.strip():
        return []
    return [_parse_requirement(part) for part in _split_top_level(text)]


def labels_match(requirements: list[Requirement], obj: Obj) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: str  # dotted path into the object
    negate: bool
    value: str

    def matches(self, obj: Obj) -> bool:
        return (_field_value(obj, self.path) == self.value) != self.negate


def _field_value(obj: Obj, path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        current = current.get(part) if isinstance(current, dict) else None
    if isinstance(current, bool):
        return "true" if current else "false"
    return "" if current is None else str(current)


def supported_fields(rt: ResourceType) -> dict[str, str]:
    fields = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}
    if not rt.custom:
        fields.update(_BUILTIN_FIELDS.get((rt.group, rt.plural), {}))
    return fields


def parse_field_selector(text: str, rt: ResourceType) -> list[FieldRequirement]:
    """``metadata.name=x,metadata.namespace!=y`` -> requirements, all of which must match."""
    if not text.strip():
        return []
    fields = supported_fields(rt)
    requirements: list[FieldRequirement] = []
    for part in text.split(","):
        found = re.fullmatch(r"\s*([^=!\s]+)\s*(==|!=|=)\s*(.*?)\s*", part)
        if found is None:
            raise ValueError(f"invalid selector: {text!r}; can't understand {part!r}")
        label, op, value = found.groups()
        if label not in fields:
            raise ValueError(f"field label not supported: {label}")
        requirements.append(FieldRequirement(fields[label], op == "!=", value))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: Obj) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)


def build_matcher(rt: ResourceType, namespace: str, labels: str, fields: str) -> Matcher:
    """One predicate for a list/watch/deletecollection request's namespace and selectors."""
    label_reqs = parse_label_selector(labels)
    field_reqs = parse_field_selector(fields, rt)

    def matches(obj: Obj) -> bool:
        if namespace and (obj.get("metadata") or {}).get("namespace") != namespace:
            return False
        return labels_match(label_reqs, obj) and fields_match(field_reqs, obj)

    return matches
