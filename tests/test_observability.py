"""config/observability/: the dashboard, the alerts and the scrape config are checked against
what khook really exports (the live registry), against prometheus-operator's own CRD schemas
(vendored in tests/fixtures/prometheus-operator/, with their origin), and parsed as PromQL by
promql-parser (bindings of the Rust crate GreptimeDB maintains), as Prometheus would parse them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml

from khook import metrics
from khook.metrics._tally import CounterTally, HistogramTally
from tests.support.events import ROOT

OBSERVABILITY = ROOT / "config" / "observability"
SCHEMAS = ROOT / "tests" / "fixtures" / "prometheus-operator"
DASHBOARD = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
(RULE,) = yaml.safe_load_all((OBSERVABILITY / "prometheusrule.yaml").read_text())
(POD_MONITOR,) = yaml.safe_load_all((OBSERVABILITY / "podmonitor.yaml").read_text())
(NETWORK_POLICY,) = yaml.safe_load_all((OBSERVABILITY / "networkpolicy.yaml").read_text())
SERVICE = next(
    d
    for d in yaml.safe_load_all((ROOT / "knative" / "service.yaml").read_text())
    if d and d["kind"] == "Service"
)
README = (ROOT / "README.md").read_text()

# Labels Prometheus adds to every series it scrapes through the PodMonitor, beside khook's own.
TARGET_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}
TARGET_LABELS |= {"serving_knative_dev_revision"}
# The one metric an alert reads from outside khook (KhookNoEvents: is the source's adapter up?).
EXTERNAL = {"kube_deployment_status_replicas_available": {"namespace", "deployment"}}


def exported() -> dict[str, set[str]]:
    """Every sample name khook exports, with its labels, from the live registry's families
    (whether or not anything was counted yet)."""
    metrics.scrape()  # the families exist in this process
    families = metrics._m().f
    names: dict[str, set[str]] = {}
    for family in vars(families).values():
        # The label names a family was declared with (a tally's labelnames; prometheus-client
        # keeps its own in _labelnames).
        tally = isinstance(family, CounterTally | HistogramTally)
        labels = set(family.labelnames if tally else family._labelnames) | TARGET_LABELS
        for described in family.describe():
            suffixes = {
                "counter": ("_total",),
                "histogram": ("_bucket", "_count", "_sum"),
                "gauge": ("",),
            }[described.type]
            for suffix in suffixes:
                names[described.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


EXPORTED = exported()


def grafana_to_promql(expr: str) -> str:
    """A dashboard query as Prometheus receives it once Grafana has put in its variables."""
    expr = expr.replace("$__rate_interval", "5m")
    return re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)


def selectors(expr: Any) -> Iterator[Any]:
    """Every VectorSelector of a parsed expression, those inside range selectors included."""
    found: list[Any] = []
    promql_parser.walk(
        expr,
        lambda node: found.append(node) if isinstance(node, promql_parser.VectorSelector) else None,
    )
    return iter(found)


def aggregations(expr: Any) -> Iterator[Any]:
    found: list[Any] = []
    promql_parser.walk(
        expr,
        lambda node: found.append(node) if isinstance(node, promql_parser.AggregateExpr) else None,
    )
    return iter(found)


def check_promql(expr: str, known: dict[str, set[str]]) -> set[str]:
    """Parses ``expr`` (a syntax error raises), checks that every metric and every label it
    names exists, and returns the metrics it reads."""
    tree = promql_parser.parse(expr)
    used: set[str] = set()
    labels: set[str] = set()
    for selector in selectors(tree):
        assert selector.name in known, f"{selector.name} is not exported: {expr}"
        used.add(selector.name)
        for matcher in selector.matchers.matchers:
            assert matcher.name in known[selector.name], f"no label {matcher.name}: {expr}"
        labels |= known[selector.name]
    for aggregation in aggregations(tree):
        by = set(aggregation.modifier.labels) if aggregation.modifier else set()
        assert by <= labels, f"grouping by {by - labels}, which no metric here has: {expr}"
    assert used, f"reads no metric: {expr}"
    return used


def dashboard_queries() -> Iterator[tuple[str, str]]:
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


# ---- the dashboard --------------------------------------------------------------------------


def test_the_dashboard_reads_only_what_khook_exports() -> None:
    queries = list(dashboard_queries())
    assert len(queries) >= 20
    read: set[str] = set()
    for title, expr in queries:
        read |= check_promql(grafana_to_promql(expr), EXPORTED)
        assert title
    # Every family khook exports has a panel.
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in EXPORTED}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in read}
    assert families == shown, f"no panel for {families - shown}"
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+),", variable["query"]["query"])
            assert metric in EXPORTED


def test_the_dashboard_is_grafana_json() -> None:
    assert DASHBOARD["uid"] == "khook" and DASHBOARD["schemaVersion"] >= 36
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# ---- the alerts -----------------------------------------------------------------------------


def closed(schema: Any) -> Any:
    """The schema with no room for unknown fields: the API server would prune a misspelt one
    silently (structural schemas), so a test must refuse it instead."""
    if isinstance(schema, dict):
        schema = {k: closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [closed(v) for v in schema]
    return schema


@pytest.mark.parametrize(
    ("document", "schema"),
    [(RULE, "prometheusrules"), (POD_MONITOR, "podmonitors")],
    ids=["PrometheusRule", "PodMonitor"],
)
def test_it_validates_against_the_prometheus_operator_crd(document: Any, schema: str) -> None:
    vendored = json.loads((SCHEMAS / f"{schema}.schema.json").read_text())
    assert "prometheus-operator 0.93.0" in vendored["$comment"]
    metadata = {k: v for k, v in document["metadata"].items() if k not in ("name", "namespace")}
    assert set(metadata) <= {"labels"}
    jsonschema.Draft7Validator(closed(vendored)).validate(document)


def test_a_misspelt_field_is_refused() -> None:
    vendored = closed(json.loads((SCHEMAS / "prometheusrules.schema.json").read_text()))
    bad = json.loads(json.dumps(RULE))
    bad["spec"]["groups"][0]["rules"][0]["annotation"] = {"summary": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(vendored).validate(bad)


def alerts() -> list[dict[str, Any]]:
    return [rule for group in RULE["spec"]["groups"] for rule in group["rules"]]


def test_every_alert_parses_and_reads_what_exists() -> None:
    names = [alert["alert"] for alert in alerts()]
    assert names == [
        "KhookAgentFailing",
        "KhookAgentCircuitOpen",
        "KhookStoreErrors",
        "KhookHooksNotInForce",
        "KhookAnswering503",
        "KhookNoEvents",
    ]
    for alert in alerts():
        used = check_promql(alert["expr"], EXPORTED | EXTERNAL)
        assert used & EXPORTED.keys(), alert["alert"]
        if "for" in alert:
            promql_parser.parse_duration(alert["for"])
        assert alert["labels"]["severity"] in ("info", "warning", "critical")
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]


def test_counters_are_read_over_a_window() -> None:
    """khook's counters restart at 0 in every new pod (scale to zero): an alert reads them with
    increase() or rate(), never raw."""
    for alert in alerts():
        tree = promql_parser.parse(alert["expr"])
        raw = [
            s.name
            for s in _plain_selectors(tree)
            if s.name.endswith(("_total", "_count", "_sum", "_bucket"))
        ]
        assert not raw, f"{alert['alert']} reads counters {raw} without a window"


def _plain_selectors(tree: Any) -> list[Any]:
    """The vector selectors not inside a range selector (``x``, not ``x[5m]``)."""
    stack: list[Any] = []
    plain: list[Any] = []

    def enter(node: Any) -> None:
        windowed = bool(stack) and isinstance(stack[-1], promql_parser.MatrixSelector)
        if isinstance(node, promql_parser.VectorSelector) and not windowed:
            plain.append(node)
        stack.append(node)

    def leave(_node: Any) -> None:
        stack.pop()

    promql_parser.walk(tree, enter, leave)
    return plain


def test_the_checks_catch_what_they_look_for() -> None:
    """The checks above can fail: a raw counter, an unknown metric or label, bad syntax."""
    assert [s.name for s in _plain_selectors(promql_parser.parse("khook_events_total > 0"))]
    assert not _plain_selectors(promql_parser.parse("increase(khook_events_total[5m]) > 0"))
    for wrong in (
        "rate(khook_event_total[5m])",
        'rate(khook_events_total{outcom="fired"}[5m])',
        "sum by (hook) (rate(khook_events_total[5m]))",
        "sum(rate(khook_events_total[5m])",
    ):
        with pytest.raises((AssertionError, ValueError)):
            check_promql(wrong, EXPORTED)


# ---- the scrape config ----------------------------------------------------------------------


def test_the_pod_monitor_scrapes_khooks_pods_on_their_own_port() -> None:
    spec = POD_MONITOR["spec"]
    service = SERVICE["metadata"]
    assert spec["selector"]["matchLabels"] == {"serving.knative.dev/service": service["name"]}
    assert spec["namespaceSelector"]["matchNames"] == [service["namespace"]]
    (endpoint,) = spec["podMetricsEndpoints"]
    # Knative names the user container's port user-port; going there, not through
    # queue-proxy (8012) or the activator, is what keeps a scrape from waking khook.
    assert (endpoint["port"], endpoint["path"]) == ("user-port", "/metrics")
    assert {"queue-port", "http-usermetric", "http-autometric"}.isdisjoint(str(endpoint))


def test_the_network_policy_opens_khooks_port_to_prometheus_only() -> None:
    kubernetes_validate.validate(NETWORK_POLICY, desired_version="1.33", strict=True)
    (container,) = SERVICE["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    (rule,) = NETWORK_POLICY["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
    (source,) = rule["from"]
    assert set(source) == {"namespaceSelector", "podSelector"}, "never every pod of a namespace"
    assert NETWORK_POLICY["spec"]["podSelector"] == {
        "matchLabels": {"serving.knative.dev/service": SERVICE["metadata"]["name"]}
    }


def test_the_kustomization_ships_all_of_it() -> None:
    kustomization = yaml.safe_load((OBSERVABILITY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    listed |= {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    shipped = {p.name for p in OBSERVABILITY.iterdir() if p.name != "kustomization.yaml"}
    assert listed == shipped


# ---- the README -----------------------------------------------------------------------------


def test_the_readme_documents_every_metric_and_alert() -> None:
    section = README.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    assert README.index("\n## Metrics\n") < README.index("\n## Hooks\n")
    for name in EXPORTED:
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"`{family}`" in section, f"{family} is not in the README's Metrics section"
    for alert in alerts():
        assert f"`{alert['alert']}`" in section, alert["alert"]
    assert Path("config/observability/podmonitor.yaml").as_posix() in section
