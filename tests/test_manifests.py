"""The deployment manifests load, validate, and agree with the code that reads them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from khook.function import HEALTH_PATHS
from khook.settings import ENV, TOKEN_ENV, Settings
from tests.support.events import CAPTURED, ROOT, SAMPLES
from tests.support.process import KHOOK, free_port, serving
from tests.support.rbac import grants

MANIFEST_DIRS = ("config", "knative", "sources")
CORE_KINDS = {
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Namespace",
    "CustomResourceDefinition",
}
DIALECTS = {"exact", "prefix", "suffix", "all", "any", "not", "cesql"}


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for top in MANIFEST_DIRS:
        for path in sorted((ROOT / top).rglob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and "kind" in doc:
                    found.append((path, doc))
    return found


def one(kind: str, name: str, under: str = "") -> dict[str, Any]:
    (doc,) = [
        d
        for p, d in manifests()
        if d["kind"] == kind and d["metadata"]["name"] == name and under in str(p)
    ]
    return doc


def ids(value: Any) -> str:
    return f"{value[1]['kind']}/{value[1]['metadata']['name']}" if isinstance(value, tuple) else ""


@pytest.mark.parametrize("item", [m for m in manifests() if m[1]["kind"] in CORE_KINDS], ids=ids)
def test_core_resources_validate_against_the_kubernetes_schemas(item: tuple[Path, Any]) -> None:
    path, doc = item
    try:
        kubernetes_validate.validate(doc, desired_version="1.33", strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path}: {exc.message}")


def test_every_kustomization_lists_what_exists() -> None:
    for kustomization in ROOT.glob("**/kustomization.yaml"):
        if ".venv" in kustomization.parts:
            continue
        for entry in yaml.safe_load(kustomization.read_text()).get("resources", []):
            target = (kustomization.parent / entry).resolve()
            assert target.is_file() or (target / "kustomization.yaml").is_file(), (
                f"{kustomization} lists {entry}, which is missing"
            )


# ---- the Service and what khook serve reads --------------------------------------------------

SERVICE = one("Service", "khook", "knative")
CONTAINER = SERVICE["spec"]["template"]["spec"]["containers"][0]
CONFIG = one("ConfigMap", "khook-config")


def test_service_port_probes_and_account_match_the_code() -> None:
    assert CONTAINER["ports"] == [{"name": "http1", "containerPort": Settings().port}]
    assert "PORT" not in {e["name"] for e in CONTAINER.get("env", [])}, "Knative sets PORT"
    probes = {CONTAINER[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes == set(HEALTH_PATHS)
    account = one("ServiceAccount", "khook")
    spec = SERVICE["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert SERVICE["metadata"]["namespace"] == account["metadata"]["namespace"]
    assert SERVICE["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    security = CONTAINER["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]


def test_every_configured_variable_is_one_khook_reads() -> None:
    read = set(ENV.values()) | {TOKEN_ENV}
    given = set(CONFIG["data"]) | {e["name"] for e in CONTAINER["env"]}
    assert given <= read, given - read
    settings = Settings.from_env(
        {**CONFIG["data"], "KUBERNETES_SERVICE_HOST": "10.0.0.1", "POD_NAME": "khook-1"}
    )
    assert settings.hooks_from_cluster and settings.effective_dedup == "lease"
    assert settings.agent_url and not settings.effective_dry_run
    token = next(e for e in CONTAINER["env"] if e["name"] == TOKEN_ENV)
    secret = one("Secret", "khook-kagent-token")
    assert token["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert token["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
    assert token["valueFrom"]["secretKeyRef"]["optional"] is True


def test_timeouts_leave_room_for_the_worst_agent_call() -> None:
    settings = Settings.from_env(CONFIG["data"])
    timeout = SERVICE["spec"]["template"]["spec"]["timeoutSeconds"]
    assert timeout > 2 * settings.agent_timeout
    assert settings.graceful_timeout <= timeout  # SIGTERM grace is timeoutSeconds in Knative
    for trigger in (d for _, d in manifests() if d["kind"] == "Trigger"):
        attempt = trigger["spec"]["delivery"]["timeout"]
        assert int(re.fullmatch(r"PT(\d+)S", attempt).group(1)) >= timeout  # type: ignore[union-attr]


def test_scale_to_zero_and_the_always_on_variant() -> None:
    annotations = SERVICE["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    variant = yaml.safe_load((ROOT / "knative" / "always-on" / "kustomization.yaml").read_text())
    (op,) = yaml.safe_load(variant["patches"][0]["patch"])
    path = op["path"].split("/")[1:]
    assert [p.replace("~1", "/") for p in path] == [
        "spec",
        "template",
        "metadata",
        "annotations",
        "autoscaling.knative.dev/min-scale",
    ]
    assert (op["op"], op["value"]) == ("replace", "1")


# ---- Triggers and the ApiServerSource -------------------------------------------------------


def apiserversource_attributes() -> set[str]:
    """The attributes a real ApiServerSource sets, read off the captured requests."""
    names = {"datacontenttype"}
    for path in CAPTURED.glob("*.json"):
        names |= {
            h.lower()[3:]
            for h in json.loads(path.read_text())["headers"]
            if h.lower().startswith("ce-")
        }
    return names


def filter_attributes(entry: dict[str, Any]) -> set[str]:
    assert len(entry) == 1, f"a filter entry holds exactly one dialect: {entry}"
    ((dialect, body),) = entry.items()
    assert dialect in DIALECTS
    if dialect in ("exact", "prefix", "suffix"):
        assert isinstance(body, dict) and len(body) == 1, f"{dialect} names one attribute"
        return set(body)
    if dialect in ("all", "any"):
        return set().union(*(filter_attributes(e) for e in body))
    if dialect == "not":
        return filter_attributes(body)
    return set()


def test_trigger_filters_are_valid_and_name_real_attributes() -> None:
    triggers = [d for _, d in manifests() if d["kind"] == "Trigger"]
    assert triggers
    known = apiserversource_attributes()
    assert {"type", "kind", "namespace", "subject", "apiversion"} <= known
    for trigger in triggers:
        spec = trigger["spec"]
        assert "filter" not in spec, "use the filters list, not the legacy filter"
        used = set().union(*(filter_attributes(e) for e in spec["filters"]))
        assert used <= known, used - known
        assert spec["broker"] == one("Broker", "khook")["metadata"]["name"]
        assert spec["subscriber"]["ref"]["name"] == SERVICE["metadata"]["name"]
        dead = spec["delivery"]["deadLetterSink"]["ref"]
        assert one(dead["kind"], dead["name"])


@pytest.mark.parametrize("variant", ["direct", "broker"])
def test_apiserversources_are_resource_mode_and_their_rbac_covers_what_they_watch(
    variant: str,
) -> None:
    source = one("ApiServerSource", "khook", f"sources/{variant}")
    spec = source["spec"]
    assert spec["mode"] == "Resource"
    kinds = {(r["apiVersion"], r["kind"]) for r in spec["resources"]}
    assert kinds == {("v1", "Event"), ("v1", "Pod"), ("v1", "Node")}
    account = one("ServiceAccount", spec["serviceAccountName"], "sources")
    granted = {
        (g.api_group, g.resource, g.verb)
        for g in grants(
            ROOT / "sources" / "base",
            (account["metadata"]["namespace"], account["metadata"]["name"]),
        )
    }
    for _, kind in kinds:
        for verb in ("get", "list", "watch"):
            assert ("", kind.lower() + "s", verb) in granted, (kind, verb)
    if "namespaceSelector" in spec:
        assert ("", "namespaces", "watch") in granted
    sink = spec["sink"]["ref"]
    assert one(sink["kind"], sink["name"])


def test_direct_source_explains_503() -> None:
    text = (ROOT / "sources" / "direct" / "apiserversource.yaml").read_text()
    assert "503" in text and "500" in text


# ---- the image ----------------------------------------------------------------------------

CONTAINERFILE = (ROOT / "Containerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", CONTAINERFILE)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_the_image_copies_only_files_that_exist_and_runs_unprivileged() -> None:
    steps = instructions()
    stages = [arg for op, arg in steps if op == "FROM"]
    assert all(s.startswith("python:3.11-slim") for s in stages) and len(stages) == 2
    for op, arg in steps:
        if op == "COPY" and "--from" not in arg:
            *sources, _ = arg.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file"
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] != "0" and users[-1] != "root"
    final = CONTAINERFILE.rsplit("FROM", 1)[1]
    assert "gcc" not in final and "build-essential" not in final


def test_the_image_entrypoint_serves_from_a_read_only_directory(tmp_path: Path) -> None:
    """The image's command and environment, run here: it must serve and write nothing."""
    steps = instructions()
    (entry,) = [json.loads(arg) for op, arg in steps if op == "ENTRYPOINT"]
    env_line = " ".join(arg for op, arg in steps if op == "ENV")
    env = dict(pair.split("=", 1) for pair in shlex.split(env_line))
    assert env["THREADS"] and env["WORKERS"], "threads are set explicitly"
    port = free_port()
    workdir, logs = tmp_path / "ro", tmp_path / "logs"
    workdir.mkdir()
    logs.mkdir()
    shutil.copytree(ROOT / "config" / "samples" / "hooks", workdir / "hooks")
    workdir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    run_env = {
        **os.environ,
        **{k: v for k, v in env.items() if k != "PATH"},
        "PORT": str(port),
        "KHOOK_DEDUP": "memory",
        "KHOOK_HOOKS": "hooks",
    }
    # The image puts its virtualenv first on PATH; this one's is where pytest runs from.
    program = str(Path(KHOOK).with_name(entry[0]))
    try:
        with serving([program, *entry[1:]], port, logs, run_env, cwd=workdir) as served:
            sample = json.loads((SAMPLES / "oom-kill-pod-status.json").read_text())
            r = httpx.post(
                served.url, headers=sample["headers"], content=json.dumps(sample["body"]).encode()
            )
            assert r.status_code == 202 and "fired=1" in r.headers["X-Khook-Outcome"]
    finally:
        workdir.chmod(stat.S_IRWXU)
    assert sorted(p.name for p in workdir.iterdir()) == ["hooks"], "nothing was written"
