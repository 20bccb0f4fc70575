"""The README's deploy commands make what the manifests describe, so the two cannot drift.

The ``kn`` model below builds the Service ``kn service create|update`` makes from its flags,
the way knative/client builds it (``pkg/commands/service/configuration_edit_flags.go``,
``pkg/flags/podspec.go``, ``pkg/flags/podspec_helper.go``, ``pkg/serving/config_changes.go``);
the flag names are those of its ``docs/cmd/kn_service_create.md``.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import idle
from tests.support.events import ROOT

Json = dict[str, Any]
README = (ROOT / "README.md").read_text()
SERVING = "serving.knative.dev/v1"

# `kn service create --help` (knative/client docs/cmd/kn_service_create.md), long names only.
KN_CREATE_FLAGS = {
    "annotation", "annotation-revision", "annotation-service", "arg", "cluster-local", "cmd",
    "concurrency-limit", "containers", "env", "env-file", "env-from", "env-value-from",
    "filename", "force", "help", "image", "label", "label-revision", "label-service", "limit",
    "lock-to-digest", "mount", "namespace", "no-cluster-local", "no-lock-to-digest", "no-wait",
    "node-affinity", "node-selector", "port", "probe-liveness", "probe-liveness-opts",
    "probe-readiness", "probe-readiness-opts", "profile", "pull-policy", "pull-secret",
    "request", "revision-name", "scale", "scale-activation", "scale-init", "scale-max",
    "scale-metric", "scale-min", "scale-target", "scale-utilization", "scale-window",
    "security-context", "service-account", "tag", "target", "timeout", "toleration", "user",
    "volume", "wait", "wait-timeout", "wait-window",
}  # fmt: skip
KN_SHORT = {"a": "annotation", "e": "env", "f": "filename", "l": "label", "n": "namespace"}
KN_SHORT |= {"p": "port", "h": "help"}
KN_BOOLEAN = {"cluster-local", "no-cluster-local", "force", "wait", "no-wait", "help"}
KN_BOOLEAN |= {"lock-to-digest", "no-lock-to-digest"}
# Knative's default registries-skipping-tag-resolving (knative/serving,
# config/core/configmaps/deployment.yaml and pkg/deployment/config.go).
SKIPS_TAG_RESOLUTION = {"kind.local", "ko.local", "dev.local"}


# ---- reading the README's commands -----------------------------------------------------------


def code_blocks() -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The shell commands of a block, as the shell splits them: a backslash-newline or a
    newline inside quotes continues a command, ``#`` starts a comment, ``&&``, ``|``, ``;``
    and a subshell's parentheses separate."""
    found: list[list[str]] = []
    pending = ""
    for line in re.sub(r"\\\n", " ", block).splitlines():
        pending = f"{pending}\n{line}" if pending else line
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # a quote still open: the command goes on
            continue
        pending = ""
        current: list[str] = []
        for token in [*tokens, ";"]:
            if token not in SEPARATORS:
                current.append(token)
            elif current:
                found.append(current)
                current = []
    assert not pending, f"unclosed quote in {block!r}"
    return found


SEPARATORS = {"&&", "||", "|", ";", "(", ")"}


def readme_commands() -> list[list[str]]:
    return [c for block in code_blocks() for c in commands(block)]


def the_command(*prefix: str) -> list[str]:
    (found,) = [c for c in readme_commands() if c[: len(prefix)] == list(prefix)]
    return found


def options(argv: list[str], short: dict[str, str], boolean: set[str]) -> list[tuple[str, str]]:
    """``(name, value)`` of every flag of ``argv``, long names; positionals as ``("", v)``."""
    found: list[tuple[str, str]] = []
    rest = iter(argv)
    for token in rest:
        if not token.startswith("-"):
            found.append(("", token))
            continue
        name, has_value, value = token.lstrip("-").partition("=")
        name = short.get(name, name) if not token.startswith("--") else name
        if not has_value and name not in boolean:
            value = next(rest)
        found.append((name, value))
    return found


# ---- what kn makes of its flags --------------------------------------------------------------

STRICT = {  # pkg/flags/podspec_helper.go DefaultStrictSecCon
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
PROBE_OPTIONS = {
    "initialdelayseconds": "initialDelaySeconds",
    "timeoutseconds": "timeoutSeconds",
    "periodseconds": "periodSeconds",
    "successthreshold": "successThreshold",
    "failurethreshold": "failureThreshold",
}
SCALE_ANNOTATIONS = {
    "scale-min": "autoscaling.knative.dev/min-scale",
    "scale-max": "autoscaling.knative.dev/max-scale",
    "scale-target": "autoscaling.knative.dev/target",
    "scale-metric": "autoscaling.knative.dev/metric",
    "scale-utilization": "autoscaling.knative.dev/target-utilization-percentage",
    "scale-window": "autoscaling.knative.dev/window",
}


def _source(kind: str, name: str) -> Json:
    if kind in ("cm", "config-map"):
        return {"configMapRef": {"name": name}}
    if kind in ("secret", "sc"):
        return {"secretRef": {"name": name}}
    raise AssertionError(f"kn takes cm:, config-map:, secret: or sc:, not {kind}:")


def _probe(spec: str) -> Json:
    kind, host, port, path = spec.split(":")
    assert kind in ("http", "https"), "only HTTP probes are modelled"
    get: Json = {"path": path}
    if host:
        get["host"] = host
    if port:
        get["port"] = int(port) if port.isdigit() else port
    if kind == "https":
        get["scheme"] = "HTTPS"
    return {"httpGet": get}


def kn_service(argv: list[str], service: Json | None = None) -> Json:  # noqa: PLR0912 - a branch per flag
    """The Service ``kn service create ...`` makes, or ``kn service update ...`` makes of
    ``service``."""
    assert argv[:2] == ["kn", "service"] and argv[2] in ("create", "update"), argv
    svc: Json = copy.deepcopy(service) if service else {"apiVersion": SERVING, "kind": "Service"}
    meta = svc.setdefault("metadata", {})
    template = svc.setdefault("spec", {}).setdefault("template", {})
    spec = template.setdefault("spec", {})
    container = (spec.setdefault("containers", [{}]))[0]
    for name, value in options(argv[3:], KN_SHORT, KN_BOOLEAN):
        assert name == "" or name in KN_CREATE_FLAGS, f"kn service has no flag --{name}"
        if name == "":
            meta["name"] = value
        elif name == "namespace":
            meta["namespace"] = value
        elif name == "image":
            container["image"] = value
        elif name in SCALE_ANNOTATIONS:
            template.setdefault("metadata", {}).setdefault("annotations", {})
            template["metadata"]["annotations"][SCALE_ANNOTATIONS[name]] = value
        elif name == "concurrency-limit":
            spec["containerConcurrency"] = int(value)
        elif name == "timeout":
            spec["timeoutSeconds"] = int(value)
        elif name == "service-account":
            spec["serviceAccountName"] = value
        elif name == "cluster-local":
            meta.setdefault("labels", {})["networking.knative.dev/visibility"] = "cluster-local"
        elif name == "label":  # the Service's and the revision's
            key, _, label = value.partition("=")
            meta.setdefault("labels", {})[key] = label
            template.setdefault("metadata", {}).setdefault("labels", {})[key] = label
        elif name == "env":
            key, _, text = value.partition("=")
            container.setdefault("env", []).append({"name": key, "value": text})
        elif name == "env-from":
            kind, _, source = value.partition(":")
            container.setdefault("envFrom", []).append(_source(kind, source))
        elif name == "env-value-from":
            key, _, ref = value.partition("=")
            kind, source, item = ref.split(":")
            selector = {"name": source, "key": item}
            secret = "secretRef" in _source(kind, source)
            value_from = {"secretKeyRef" if secret else "configMapKeyRef": selector}
            env = [e for e in container.get("env", []) if e["name"] != key]
            container["env"] = [*env, {"name": key, "valueFrom": value_from}]
        elif name in ("request", "limit"):
            section = "requests" if name == "request" else "limits"
            resources = container.setdefault("resources", {}).setdefault(section, {})
            for pair in value.split(","):
                key, _, amount = pair.partition("=")
                resources[key] = amount
        elif name == "port":
            port_name, _, number = value.rpartition(":")
            port: Json = {"containerPort": int(number)}
            if port_name:
                port = {"name": port_name, **port}
            container["ports"] = [port]
        elif name in ("probe-readiness", "probe-liveness"):
            probe = container.setdefault(name.replace("probe-", "") + "Probe", {})
            probe.update(_probe(value))
        elif name in ("probe-readiness-opts", "probe-liveness-opts"):
            probe = container.setdefault(name.split("-")[1] + "Probe", {})
            for pair in value.split(","):
                key, _, number = pair.partition("=")
                probe[PROBE_OPTIONS[key.strip().lower()]] = int(number)
        elif name == "security-context":
            assert value == "strict", "only --security-context strict is modelled"
            container["securityContext"] = copy.deepcopy(STRICT)
        else:
            raise AssertionError(f"--{name} is a kn flag this model does not know yet")
    return svc


# ---- the manifests ---------------------------------------------------------------------------


def documents(path: Path) -> list[Json]:
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and "kind" in d]


def manifest_files() -> list[Path]:
    skip = {".venv", ".git", "storms", "node_modules"}
    return [p for p in sorted(ROOT.rglob("*.yaml")) if not skip & set(p.relative_to(ROOT).parts)]


def applied(kustomization_dir: Path) -> list[Path]:
    """The files ``kubectl apply -k`` applies, in order, kustomization bases resolved."""
    doc = yaml.safe_load((kustomization_dir / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in doc.get("resources", []):
        target = (kustomization_dir / entry).resolve()
        files += applied(target) if target.is_dir() else [target]
    return files


SERVICE_FILE = ROOT / "knative" / "service.yaml"
(SERVICE,) = [d for d in documents(SERVICE_FILE) if d["kind"] == "Service"]


def yaml_service_as_kn_makes_it() -> Json:
    """knative/service.yaml without what kn cannot set (the README's list), its image as the
    README's ``kustomize edit set image`` sets it."""
    svc = copy.deepcopy(SERVICE)
    container = svc["spec"]["template"]["spec"]["containers"][0]
    assert container.pop("name") == "khook"  # kn sets none: Knative says user-container
    assert container["securityContext"].pop("readOnlyRootFilesystem") is True
    downward = {e["name"] for e in container["env"] if "fieldRef" in e.get("valueFrom", {})}
    assert downward == {"POD_NAME", "POD_NAMESPACE"}
    optional = [
        e["name"]
        for e in container["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("optional")
    ]
    assert optional == ["KAGENT_TOKEN"]
    container["env"] = [e for e in container["env"] if e["name"] not in downward | set(optional)]
    if not container["env"]:
        del container["env"]
    image = _flag(the_command("kn", "service", "create"), "--image")
    edits = [c[4] for c in readme_commands() if c[:4] == ["kustomize", "edit", "set", "image"]]
    old = container["image"].rsplit(":", 1)[0]
    assert f"{old}={image}" in edits, "the README sets the YAML's image to the kn line's"
    container["image"] = image
    return svc


# ---- the tests -------------------------------------------------------------------------------


def test_kn_service_create_makes_the_yaml_service() -> None:
    made = kn_service(the_command("kn", "service", "create"))
    assert made == yaml_service_as_kn_makes_it()


def test_what_kn_cannot_express_is_said_in_the_readme() -> None:
    section = README.split("## Deploy on Knative", 1)[1].split("\n## ", 1)[0]
    section = " ".join(section.split())
    for gap in ("user-container", "readOnlyRootFilesystem", "POD_NAME", "POD_NAMESPACE"):
        assert gap in section, gap
    assert "optional" in section and "kn source apiserver create` cannot" in section


def test_kn_service_update_adds_the_token_as_the_yaml_reads_it() -> None:
    created = kn_service(the_command("kn", "service", "create"))
    (update,) = [c for c in readme_commands() if c[:3] == ["kn", "service", "update"]]
    updated = kn_service(update, created)
    (token,) = [
        e
        for e in updated["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "KAGENT_TOKEN"
    ]
    (wanted,) = [
        e
        for e in SERVICE["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "KAGENT_TOKEN"
    ]
    wanted_ref = dict(wanted["valueFrom"]["secretKeyRef"])
    assert wanted_ref.pop("optional") is True
    assert token["valueFrom"]["secretKeyRef"] == wanted_ref


def test_the_kn_model_refuses_what_kn_refuses() -> None:
    """The checks above can fail: an unknown flag, a form kn rejects, a changed value."""
    with pytest.raises(AssertionError, match="no flag --scale-minimum"):
        kn_service(["kn", "service", "create", "khook", "--scale-minimum", "0"])
    with pytest.raises(AssertionError, match="not configmap:"):
        kn_service(["kn", "service", "create", "khook", "--env-from", "configmap:khook-config"])
    argv = the_command("kn", "service", "create")
    assert kn_service([*argv, "--scale-target", "20"]) != yaml_service_as_kn_makes_it()
    assert kn_service([*argv, "--port", "8081"]) != yaml_service_as_kn_makes_it()


def knative_services() -> list[tuple[str, Json]]:
    """Every Knative Service the repository describes: the manifests, each kustomization's
    patched copy of them, and the README's ``kn`` line."""
    found = [
        (str(p.relative_to(ROOT)), d)
        for p in manifest_files()
        for d in documents(p)
        if d["kind"] == "Service" and d["apiVersion"] == SERVING
    ]
    for kustomization in (p for p in manifest_files() if p.name == "kustomization.yaml"):
        for patch in yaml.safe_load(kustomization.read_text()).get("patches") or []:
            target = patch.get("target", {})
            if target.get("kind") != "Service":
                continue
            for path in applied(kustomization.parent):
                for doc in documents(path):
                    if doc["kind"] == "Service" and doc["metadata"]["name"] == target["name"]:
                        found.append((str(kustomization.relative_to(ROOT)), _patched(doc, patch)))
    found.append(("README: kn service create", kn_service(the_command("kn", "service", "create"))))
    return found


def _patched(doc: Json, patch: Json) -> Json:
    doc = copy.deepcopy(doc)
    for op in yaml.safe_load(patch["patch"]):
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]
        ]
        node = doc
        for part in parents:
            node = node[part]
        assert op["op"] in ("add", "replace"), op
        node[last] = op["value"]
    return doc


def test_autoscaling_target_is_at_most_container_concurrency() -> None:
    """Knative caps a concurrency target at containerConcurrency: a higher one does nothing."""
    checked = 0
    for where, svc in knative_services():
        annotations = svc["spec"]["template"].get("metadata", {}).get("annotations", {})
        limit = svc["spec"]["template"]["spec"].get("containerConcurrency", 0)
        target = annotations.get("autoscaling.knative.dev/target")
        if target is None or not limit:
            continue
        assert annotations.get("autoscaling.knative.dev/metric", "concurrency") == "concurrency"
        assert float(target) <= limit, f"{where}: target {target} > containerConcurrency {limit}"
        checked += 1
    assert checked >= 3, "the Service, its always-on variant and the kn line"


def _container_name(namespace: str, service: str) -> str:
    for path in manifest_files():
        for doc in documents(path):
            meta = doc["metadata"]
            knative = doc["kind"] == "Service" and doc["apiVersion"] == SERVING
            if knative and (meta.get("namespace"), meta["name"]) == (namespace, service):
                container = doc["spec"]["template"]["spec"]["containers"][0]
                return str(container.get("name", "user-container"))  # Knative's default
    raise AssertionError(f"no Knative Service {namespace}/{service}")


def _flag(argv: list[str], *names: str) -> str:
    for i, token in enumerate(argv):
        for name in names:
            if token == name:
                return argv[i + 1]
            if token.startswith(name + "="):
                return token.split("=", 1)[1]
    return ""


KINDS = {"ksvc": ("Service", SERVING), "apiserversource": ("ApiServerSource", "")}
KINDS |= {"hook": ("Hook", ""), "trigger": ("Trigger", ""), "broker": ("Broker", "")}
KINDS |= {"eventpolicy": ("EventPolicy", "")}


def manifest_commands() -> list[list[str]]:
    """Commands written in the manifests' comments (``#   kubectl ...``)."""
    found = []
    for path in manifest_files():
        comments = [m.group(1) for m in re.finditer(r"^\s*#\s?(.*)$", path.read_text(), re.M)]
        text = re.sub(r"\\\n\s*", " ", "\n".join(comments))
        for line in text.splitlines():
            if re.match(r"\s*(kubectl|kn) ", line):
                found += commands(line.strip())
    return found


def test_every_kubectl_command_names_what_the_manifests_make() -> None:
    seen = {"logs": 0, "get": 0, "apply": 0}
    objects = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])
        for p in manifest_files()
        for d in documents(p)
    }
    for argv in readme_commands() + manifest_commands():
        if argv[0] != "kubectl":
            continue
        namespace = _flag(argv, "-n", "--namespace")
        verb = next(a for a in argv[1:] if not a.startswith("-") and a != namespace)
        if verb == "apply":
            for flag in ("-k", "-f"):
                for i, token in enumerate(argv):
                    if token == flag:
                        assert (ROOT / argv[i + 1]).exists(), f"{argv}: no {argv[i + 1]}"
            seen["apply"] += 1
        elif verb == "logs":
            selector = _flag(argv, "-l")
            if selector.startswith("serving.knative.dev/service="):
                service = selector.split("=", 1)[1]
                assert _flag(argv, "-c") == _container_name(namespace, service), argv
                seen["logs"] += 1
        elif verb in ("get", "describe"):
            words = [a for a in argv[argv.index(verb) + 1 :] if not a.startswith("-")]
            if len(words) >= 2 and words[0] in KINDS and words[1] != namespace:
                assert namespace, f"{argv}: say the namespace"
                kind = KINDS[words[0]][0]
                assert (kind, namespace, words[1]) in objects, f"{argv}: no {kind} there"
                seen["get"] += 1
    assert all(seen.values()), seen


def test_the_samples_apply_on_a_fresh_cluster_after_the_crd() -> None:
    """Wherever the README applies the sample Hooks, what comes before it in the same block
    has installed the Hook CRD, waited for it, and made every namespace the samples use."""
    crd = (ROOT / "config" / "crd" / "hooks.kagent.dev.yaml").resolve()
    (crd_doc,) = documents(crd)
    samples = ROOT / "config" / "samples" / "hooks"
    blocks = [b for b in code_blocks() if "kubectl apply -f config/samples/hooks/" in b]
    assert len(blocks) >= 3, "Run against a cluster, Deploy on Knative, Without Knative"
    for block in blocks:
        installed: list[Path] = []
        waited = False
        for argv in commands(block):
            if argv[:3] == ["kubectl", "apply", "-k"]:
                installed += applied(ROOT / argv[3])
            elif argv[:2] == ["kubectl", "wait"]:
                waited = waited or (
                    crd in installed
                    and _flag(argv, "--for").lower() == "condition=established"
                    and f"crd/{crd_doc['metadata']['name']}" in argv
                )
            elif argv[:4] == ["kubectl", "apply", "-f", "config/samples/hooks/"]:
                assert crd in installed and waited, block
                namespaces = {"default"} | {
                    d["metadata"]["name"]
                    for p in installed
                    for d in documents(p)
                    if d["kind"] == "Namespace"
                }
                # kubectl applies a directory's files in name order, each file's documents in
                # order: a Namespace made by the samples must come before its Hooks.
                for path in sorted(samples.glob("*.yaml")):
                    for doc in documents(path):
                        if doc["kind"] == "Namespace":
                            namespaces.add(doc["metadata"]["name"])
                        else:
                            assert doc["metadata"]["namespace"] in namespaces, (path, block)
                break


def test_the_kind_recipe_names_an_image_knative_does_not_resolve() -> None:
    (load,) = [c for c in readme_commands() if c[:3] == ["kind", "load", "docker-image"]]
    image = load[3]
    registry = image.split("/", 1)[0]
    assert registry in SKIPS_TAG_RESOLUTION, image
    (block,) = [b for b in code_blocks() if "kind load docker-image" in b]
    built = [c for c in commands(block) if c[:2] == ["docker", "build"]]
    assert built and _flag(built[0], "-t") == image
    (edit,) = [c for c in commands(block) if c[:4] == ["kustomize", "edit", "set", "image"]]
    old, new = edit[4].split("=")
    assert new == image
    assert SERVICE["spec"]["template"]["spec"]["containers"][0]["image"].startswith(old + ":")
    assert image.rsplit(":", 1)[1] != "latest", "a latest tag is pulled Always"


def test_the_readme_idle_tables_are_what_the_script_prints() -> None:
    match = re.search(r"<!-- idle-tables:[^\n]*-->\n(.*?)<!-- /idle-tables -->", README, re.DOTALL)
    assert match, "the README's idle tables are marked"
    assert match.group(1) == idle.tables(), "run python -m tests.support.idle, paste its output"


def test_the_idle_routes_filter_as_knative_does() -> None:
    """The filters behind the idle tables, on requests whose fate is known."""
    direct, broker, _, no_deletes, no_nodes, events_only = idle.routes()

    def request(kind: str, namespace: str, action: str = "update") -> Json:
        headers = {
            "Ce-Kind": kind,
            "Ce-Apiversion": "v1",
            "Ce-Namespace": namespace,
            "Ce-Type": f"dev.knative.apiserver.resource.{action}",
        }
        return {"headers": headers, "body": {"metadata": {"namespace": namespace}}}

    assert direct.deliveries(request("Pod", "team-a")) == 1
    assert direct.deliveries(request("Pod", "kube-system")) == 0
    assert direct.deliveries(request("Event", "khook-system")) == 0
    assert direct.deliveries(request("Node", "")) == 1  # cluster-scoped: no namespaceSelector
    assert direct.deliveries(request("Secret", "team-a")) == 0
    assert direct.deliveries(request("Pod", "team-a", "delete")) == 1
    assert broker.deliveries(request("Pod", "team-a", "delete")) == 0
    assert broker.deliveries(request("Node", "")) == 1  # the khook-nodes Trigger alone
    assert no_deletes.deliveries(request("Pod", "team-a", "delete")) == 0
    assert no_nodes.deliveries(request("Node", "")) == 0
    assert events_only.deliveries(request("Pod", "team-a")) == 0
    unselected = copy.deepcopy(direct.source)
    del unselected["spec"]["namespaceSelector"]  # then only the source's own namespace
    bare = idle.Route("bare", unselected)
    assert bare.deliveries(request("Pod", "team-a")) == 0
    assert bare.deliveries(request("Pod", "khook-system")) == 1
