"""The RBAC manifests in config/rbac/ as the source of truth: is a request granted?"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.events import ROOT

RBAC = ROOT / "config" / "rbac"
SERVICE_ACCOUNT = ("khook-system", "khook")
NON_RESOURCE = "<nonResourceURL>"  # the group of a Grant for a non-resource URL


@dataclass(frozen=True)
class Grant:
    api_group: str
    resource: str  # "pods" or "hooks/status"
    verb: str
    namespace: str | None  # None: every namespace (a ClusterRole bound cluster-wide)

    def covers(self, group: str, resource: str, verb: str, namespace: str) -> bool:
        return (
            self.api_group == group
            and self.resource == resource
            and self.verb == verb
            and (self.namespace is None or self.namespace == namespace)
        )


def _documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    docs = []
    for path in paths:
        docs += [
            d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and "kind" in d
        ]
    return docs


def grants(directory: Path = RBAC, subject: tuple[str, str] = SERVICE_ACCOUNT) -> set[Grant]:
    """Every (group, resource, verb, namespace) the service account is granted."""
    docs = _documents(sorted(directory.glob("*.yaml")))
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
    }
    out: set[Grant] = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subjects = {
            (s.get("namespace"), s["name"])
            for s in binding.get("subjects", [])
            if s["kind"] == "ServiceAccount"
        }
        if subject not in subjects:
            continue
        ref = binding["roleRef"]
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role_ns = scope if ref["kind"] == "Role" else None
        role = roles.get((ref["kind"], role_ns, ref["name"]))
        assert role is not None, f"{binding['metadata']['name']} binds a role that is not defined"
        for rule in role.get("rules", []):
            for url in rule.get("nonResourceURLs", []):
                for verb in rule.get("verbs", []):
                    out.add(Grant(NON_RESOURCE, url, verb, None))
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add(Grant(group, resource, verb, scope))
    return out


def needed(request: Any) -> tuple[str, str, str, str]:
    if not request.resource:  # a non-resource URL such as /openid/v1/jwks
        return NON_RESOURCE, request.path, request.verb, ""
    resource = request.resource + (f"/{request.subresource}" if request.subresource else "")
    return request.group, resource, request.verb, request.namespace


def ungranted(requests: Iterable[Any], granted: set[Grant] | None = None) -> list[tuple[str, ...]]:
    granted = grants() if granted is None else granted
    missing = set()
    for request in requests:
        want = needed(request)
        if not any(g.covers(*want) for g in granted):
            missing.add(want)
    return sorted(missing)
