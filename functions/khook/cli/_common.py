from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from khook.core import cloudevent
from khook.core.cloudevent import CloudEventError
from khook.logs import fatal
from khook.settings import DEFAULT_CONTROL_NAMESPACE, ENV

if TYPE_CHECKING:
    from _typeshed import SupportsWrite
    from cloudevents.http import CloudEvent

# Every command, and the line `khook --help` shows for it. A command's module is imported only
# when it runs (khook.cli.parser): what one needs (a server, an HTTP client, a cluster
# connection) costs the others nothing.
COMMANDS = {
    "serve": "serve the function (the same app functions-framework serves)",
    "send": "post sample CloudEvents to a khook function",
    "validate": "check Hook and rules files",
    "render": "show the prompt and A2A request a Hook makes for an event",
    "source": "watch a cluster and post ApiServerSource-shaped CloudEvents (no Knative needed)",
    "replay": "play recorded storms through khook on the recording's clock",
}

# Hop-by-hop and transport headers in captured requests; the HTTP client sets its own.
_TRANSPORT_HEADERS = {"host", "content-length", "accept-encoding", "user-agent", "connection"}


class SampleError(ValueError):
    pass


USAGE_ERROR = 2


class KhookParser(argparse.ArgumentParser):
    """argparse, its mistakes said in one line: ``khook send: error: ... (see khook send
    --help)``, or, for a parser made with ``json_errors=True`` (``khook serve``, whose every
    line is JSON), one JSON line like its other refusals to start."""

    def __init__(self, *args: Any, json_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.json_errors = json_errors

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse ignores a write that fails (--help, --version): a reader that went away
        # must reach khook.cli.main, which ends the command as `| head` expects.
        if message:
            (file or sys.stderr).write(message)

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            fatal("khook cannot start", error=f"{self.prog}: {message}")
        else:
            sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(USAGE_ERROR)


def env_help(setting: str, text: str) -> str:
    return f"{text} [env {ENV[setting]}]"


def add_rules_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        action="append",
        metavar="FILE",
        help=env_help("rules", "extra classification rules file (repeatable)"),
    )


def add_control_namespace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control-namespace",
        metavar="NS",
        help=env_help(
            "control_namespace",
            f"namespace whose Hooks may watch other namespaces and Nodes "
            f"(default {DEFAULT_CONTROL_NAMESPACE})",
        ),
    )


def load_sample(path: Path, *, structured: bool = False) -> tuple[dict[str, str], bytes]:
    """A sample file as an HTTP request (headers, body).

    Accepted: a captured request ``{"headers": {...}, "body": ...}`` (sent as captured, binary
    mode), a structured CloudEvent ``{"specversion": ...}``, or a bare Kubernetes object, which
    is wrapped the way an ApiServerSource in Resource mode would wrap it.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SampleError(f"{path}: cannot read a JSON sample: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise SampleError(f"{path}: a sample is a JSON object")
    if isinstance(doc.get("headers"), Mapping) and "body" in doc:
        headers = {
            str(k): str(v) for k, v in doc["headers"].items() if k.lower() not in _TRANSPORT_HEADERS
        }
        body = _compact(doc["body"])
        if not structured:
            return headers, body
        try:
            envelope = cloudevent.parse(headers, body)
        except CloudEventError as exc:
            raise SampleError(f"{path}: {exc}") from exc
        from cloudevents.http import CloudEvent  # noqa: PLC0415 - the SDK on first use

        return _to_http(CloudEvent(dict(envelope.attributes), envelope.data), structured)
    if "specversion" in doc:
        body = _compact(doc)
        return {"Content-Type": "application/cloudevents+json"}, body
    if "apiVersion" in doc and "kind" in doc:
        return _to_http(wrap_object(doc), structured)
    raise SampleError(f"{path}: neither a captured request, a CloudEvent nor a Kubernetes object")


def wrap_object(obj: Mapping[str, Any], action: str = "update") -> CloudEvent:
    from cloudevents.http import CloudEvent  # noqa: PLC0415 - the SDK on first use

    raw_meta = obj.get("metadata")
    meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
    namespace = str(meta.get("namespace", ""))
    name = str(meta.get("name", ""))
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    plural = kind.lower() + "s"
    scope = f"namespaces/{namespace}/" if namespace else ""
    attributes = {
        "type": f"dev.knative.apiserver.resource.{action}",
        "source": "khook-send",
        "subject": f"/apis/{api_version}/{scope}{plural}/{name}",
        "datacontenttype": "application/json",
        "kind": kind,
        "name": name,
        "namespace": namespace,
        "apiversion": api_version,
    }
    return CloudEvent(attributes, dict(obj))


def _to_http(event: CloudEvent, structured: bool) -> tuple[dict[str, str], bytes]:
    from cloudevents.conversion import to_binary, to_structured  # noqa: PLC0415

    headers, body = to_structured(event) if structured else to_binary(event)
    return {str(k): str(v) for k, v in headers.items()}, body if isinstance(body, bytes) else b""


def _compact(value: Any) -> bytes:
    # Captured bodies were written by Go's encoder: compact JSON, keys in the stored order.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
