"""knative/networkpolicy.yaml and knative/eventpolicy.yaml: valid, and saying what they mean.

The NetworkPolicy is evaluated here the way a network plugin evaluates it, against the pods
that really talk to a Knative Service's pods; the EventPolicies are checked against Knative's
own validation rules and against the names Knative derives for the senders' identities.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from khook.auth import SenderAllowList
from tests.support.events import ROOT

KNATIVE = ROOT / "knative"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def one(path: Path, kind: str, name: str = "") -> dict[str, Any]:
    (found,) = [
        d
        for d in documents(path)
        if d["kind"] == kind and (not name or d["metadata"]["name"] == name)
    ]
    return found


POLICY = one(KNATIVE / "networkpolicy.yaml", "NetworkPolicy")
SERVICE = one(KNATIVE / "service.yaml", "Service", "khook")
EVENT_POLICIES = documents(KNATIVE / "eventpolicy.yaml")
SOURCES = [
    one(ROOT / "sources" / v / "apiserversource.yaml", "ApiServerSource")
    for v in ("direct", "broker")
]
TRIGGERS = [d for d in documents(KNATIVE / "broker" / "triggers.yaml") if d["kind"] == "Trigger"]
BROKER = one(KNATIVE / "broker" / "broker.yaml", "Broker")

# queue-proxy's ports (knative/serving pkg/networking/constants.go): 8012 HTTP/1, 8013 h2c,
# 8112 TLS, 9090 the autoscaler's metrics. khook itself listens on 8080 behind it.
QUEUE_PROXY = {8012, 8013, 8112}
METRICS = 9090


# ---- the NetworkPolicy -----------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A pod that opens a connection: its namespace and labels."""

    namespace: str
    labels: dict[str, str]

    @property
    def namespace_labels(self) -> dict[str, str]:
        # Set by the API server on every namespace since Kubernetes 1.21.
        return {"kubernetes.io/metadata.name": self.namespace}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics: matchLabels and matchExpressions, all ANDed."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def admits(policy: dict[str, Any], peer: Peer, port: int) -> bool:
    """Whether the policy lets ``peer`` connect to ``port`` of a pod it selects (TCP)."""
    spec = policy["spec"]
    for rule in spec.get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(
            p.get("protocol", "TCP") == "TCP" and p["port"] == port for p in ports
        ):
            continue
        for source in rule.get("from") or []:
            assert "ipBlock" not in source
            namespaces = source.get("namespaceSelector")
            pods = source.get("podSelector")
            in_namespace = (
                selects(namespaces, peer.namespace_labels)
                if namespaces is not None
                else peer.namespace == policy["metadata"]["namespace"]
            )
            if in_namespace and (pods is None or selects(pods, peer.labels)):
                return True
    return False


ACTIVATOR = Peer("knative-serving", {"app": "activator", "role": "activator"})
AUTOSCALER = Peer("knative-serving", {"app": "autoscaler"})
KOURIER = Peer("kourier-system", {"app": "3scale-kourier-gateway"})
OPERATOR_KOURIER = Peer("knative-serving", {"app": "3scale-kourier-gateway"})
ISTIO = Peer("istio-system", {"istio": "ingressgateway"})
CONTOUR = Peer("contour-internal", {"app": "envoy"})
SOURCE_ADAPTER = Peer(
    "khook-system",
    {
        "eventing.knative.dev/source": "apiserver-source-controller",
        "eventing.knative.dev/sourceName": "khook",
    },
)
BROKER_FILTER = Peer("knative-eventing", {"eventing.knative.dev/brokerRole": "filter"})
TENANT = Peer("team-a", {"app": "curl"})
NEIGHBOUR = Peer("khook-system", {"app": "curl"})


def test_the_network_policy_validates_and_selects_khooks_revision_pods() -> None:
    for version in ("1.28", "1.33"):
        kubernetes_validate.validate(POLICY, desired_version=version, strict=True)
    assert POLICY["metadata"]["namespace"] == SERVICE["metadata"]["namespace"]
    # Knative labels every revision's pods with the Service's name.
    pod_labels = {"serving.knative.dev/service": SERVICE["metadata"]["name"]}
    pod_labels |= SERVICE["spec"]["template"]["metadata"]["labels"]
    assert selects(POLICY["spec"]["podSelector"], pod_labels)
    assert not selects(POLICY["spec"]["podSelector"], {"serving.knative.dev/service": "other"})
    assert POLICY["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize("peer", [ACTIVATOR, KOURIER, OPERATOR_KOURIER, ISTIO, CONTOUR])
def test_knatives_data_path_reaches_queue_proxy(peer: Peer) -> None:
    for port in QUEUE_PROXY:
        assert admits(POLICY, peer, port), (peer, port)
    container_port = SERVICE["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert not admits(POLICY, peer, container_port["containerPort"]), "bypasses queue-proxy"


def test_only_the_autoscaler_scrapes_the_metrics_port() -> None:
    assert admits(POLICY, AUTOSCALER, METRICS)
    for peer in (ACTIVATOR, KOURIER, TENANT):
        assert not admits(POLICY, peer, METRICS)


@pytest.mark.parametrize("peer", [SOURCE_ADAPTER, BROKER_FILTER, TENANT, NEIGHBOUR])
def test_nobody_else_reaches_a_khook_pod_directly(peer: Peer) -> None:
    for port in (*QUEUE_PROXY, METRICS, 8080, 8022, 9091):
        assert not admits(POLICY, peer, port), (peer, port)


def test_the_network_policy_is_deployed_and_the_event_policy_is_not() -> None:
    kustomization = yaml.safe_load((KNATIVE / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kustomization["resources"]
    assert "eventpolicy.yaml" not in kustomization["resources"]
    text = (KNATIVE / "eventpolicy.yaml").read_text()
    assert "authentication-oidc" in text and "not enforced" in text.lower()


# ---- the EventPolicies -----------------------------------------------------------------------


def child_name(parent: str, suffix: str) -> str:
    """knative.dev/pkg kmeta.ChildName: names past 63 characters are shortened with an md5."""
    longest, md5_len = 63, 32
    head = longest - md5_len
    if len(parent) <= longest - len(suffix):
        return parent + suffix
    if head - len(suffix) <= 0:
        digest = hashlib.md5((parent + suffix).encode()).hexdigest()
        name = parent[:head] + digest
        name += suffix[: max(0, longest - len(name))]
        return re.sub(r"[^a-zA-Z0-9]+$", "", name)
    return parent[: head - len(suffix)] + hashlib.md5(parent.encode()).hexdigest() + suffix


def oidc_subject(obj: dict[str, Any]) -> str:
    """The subject of the tokens Knative sends for a source or a Trigger (pkg/auth
    GetOIDCServiceAccountNameForResource): "<name>-oidc-<group>-<kind>", lowercase."""
    group = obj["apiVersion"].split("/")[0]
    name = child_name(obj["metadata"]["name"], f"-oidc-{group}-{obj['kind']}").lower()
    return f"system:serviceaccount:{obj['metadata']['namespace']}:{name}"


def test_the_oidc_names_follow_knatives_derivation() -> None:
    assert oidc_subject(SOURCES[0]) == (
        "system:serviceaccount:khook-system:khook-oidc-sources.knative.dev-apiserversource"
    )
    # Past 63 characters (a Trigger name over 29), the whole name becomes a hash.
    long = {**TRIGGERS[0], "metadata": {"name": "t" * 30, "namespace": "ns"}}
    digest = hashlib.md5(("t" * 30 + "-oidc-eventing.knative.dev-Trigger").encode()).hexdigest()
    # (Padded with the suffix's first character, "-", which may not end a name: dropped.)
    assert oidc_subject(long) == f"system:serviceaccount:ns:{'t' * 30}{digest}"


REF_FIELDS = ("apiVersion", "kind", "name")


def knative_validation_errors(policy: dict[str, Any]) -> list[str]:
    """eventing pkg/apis/eventing/v1alpha1/eventpolicy_validation.go, rule by rule."""
    errors = []
    spec = policy.get("spec") or {}
    for i, source in enumerate(spec.get("from") or []):
        ref, sub = source.get("ref"), source.get("sub")
        if (ref is None) == (not sub):
            errors.append(f"from[{i}]: exactly one of ref, sub")
        if ref is not None:
            errors += [
                f"from[{i}].ref.{f}" for f in ("apiVersion", "kind", "name") if not ref.get(f)
            ]
        if sub and "*" in sub[:-1]:
            errors.append(f"from[{i}].sub: '*' is only allowed as suffix")
    for i, target in enumerate(spec.get("to") or []):
        if ("ref" in target) == ("selector" in target):
            errors.append(f"to[{i}]: exactly one of ref, selector")
        if "ref" in target:
            errors += [
                f"to[{i}].ref.{f}"
                for f in ("apiVersion", "kind", "name")
                if not target["ref"].get(f)
            ]
    return errors


def test_the_event_policies_are_valid_knative_objects() -> None:
    assert [p["metadata"]["name"] for p in EVENT_POLICIES] == ["khook", "khook-broker"]
    for policy in EVENT_POLICIES:
        assert (policy["apiVersion"], policy["kind"]) == (
            "eventing.knative.dev/v1alpha1",
            "EventPolicy",
        )
        assert set(policy) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(policy["spec"]) <= {"to", "from", "filters"}
        assert policy["spec"]["to"] and policy["spec"]["from"]
        assert knative_validation_errors(policy) == []
        assert policy["metadata"]["namespace"] == SERVICE["metadata"]["namespace"]


def test_the_validation_rules_catch_what_knatives_webhook_refuses() -> None:
    bad = {"spec": {"from": [{"sub": "a*b"}, {}, {"ref": {"kind": "X"}, "sub": "s"}], "to": [{}]}}
    assert len(knative_validation_errors(bad)) == 6


def test_khooks_policy_names_exactly_the_senders_knative_uses() -> None:
    (policy,) = [p for p in EVENT_POLICIES if p["metadata"]["name"] == "khook"]
    ((target,),) = [policy["spec"]["to"]]
    assert target["ref"] == {
        "apiVersion": SERVICE["apiVersion"],
        "kind": SERVICE["kind"],
        "name": SERVICE["metadata"]["name"],
    }
    subjects = [source["sub"] for source in policy["spec"]["from"]]
    expected = {oidc_subject(s) for s in SOURCES} | {oidc_subject(t) for t in TRIGGERS}
    assert sorted(subjects) == sorted(expected)
    # What KHOOK_AUTH_SENDERS must hold: khook accepts these, and exactly these.
    allowed = SenderAllowList(subjects)
    assert all(allowed.allows(s) for s in subjects)
    assert not allowed.allows("system:serviceaccount:khook-system:khook")


def test_the_broker_admits_only_the_api_server_source() -> None:
    (policy,) = [p for p in EVENT_POLICIES if p["metadata"]["name"] == "khook-broker"]
    ((target,),) = [policy["spec"]["to"]]
    assert target["ref"] == {"apiVersion": BROKER["apiVersion"], "kind": "Broker", "name": "khook"}
    ((source,),) = [policy["spec"]["from"]]
    broker_source = SOURCES[1]
    assert broker_source["spec"]["sink"]["ref"]["name"] == BROKER["metadata"]["name"]
    assert source["ref"] == {
        "apiVersion": broker_source["apiVersion"],
        "kind": broker_source["kind"],
        "name": broker_source["metadata"]["name"],
        "namespace": broker_source["metadata"]["namespace"],
    }
