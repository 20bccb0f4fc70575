from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from khook.cli._common import COMMANDS
from khook.emitter import COMPONENT, KINDS, Emitter, Sender
from khook.kubeapi import KubeError, connect
from khook.logs import configure, log
from khook.settings import Settings


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "source",
        help=COMMANDS["source"],
        description="List then watch Events, Pods and Nodes and post each change to the sink "
        "as a CloudEvent shaped exactly like a Knative ApiServerSource in Resource mode, "
        "retrying like its adapter. Objects that exist at start are not replayed. Uses the "
        "in-cluster service account in a pod, else KUBECONFIG or ~/.kube/config. For a khook "
        "with KHOOK_AUTH=token it sends the secret in KHOOK_AUTH_TOKEN(_FILE).",
    )
    p.add_argument("--sink", required=True, metavar="URL", help="where to post (khook's URL)")
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        action="append",
        metavar="NS",
        dest="namespaces",
        help="watch this namespace (repeatable); Nodes are cluster-scoped",
    )
    scope.add_argument(
        "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    p.add_argument(
        "--kind",
        default="Event,Pod,Node",
        metavar="KINDS",
        help=f"comma-separated kinds to watch, of {', '.join(KINDS)} (all)",
    )
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file [env KUBECONFIG]")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    kinds = [k.strip() for k in args.kind.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        print(f"khook source: unknown kind(s) {unknown}; use {', '.join(KINDS)}", file=sys.stderr)
        return 2
    settings = Settings.from_env(kubeconfig=args.kubeconfig)
    configure(settings.log_level)
    try:
        api = connect(
            in_cluster=settings.in_cluster, kubeconfig=settings.kubeconfig, component=COMPONENT
        )
    except KubeError as exc:
        print(f"khook source: {exc}", file=sys.stderr)
        return 2
    sender = Sender(args.sink, token=settings.read_auth_token)
    emitter = Emitter(api, sender, kinds=kinds, namespaces=args.namespaces or ())
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log(
        logging.getLogger("khook.source"),
        logging.INFO,
        "watching",
        source=emitter.source,
        sink=args.sink,
        kinds=kinds,
        namespaces=args.namespaces or "all",
    )
    emitter.start()
    stop.wait()
    emitter.close()
    return 0
