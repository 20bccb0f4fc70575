"""``khook serve``: check the configuration, then serve the function with gunicorn.

The app is the one functions-framework builds from khook's entry file (its public
``create_app``), each worker handing every POST straight to the function
(khook.function.direct_posts); gunicorn runs it through its documented custom-application API
(khook.serving.GunicornApp), with khook's worker, JSON logger and hooks. No private
functions-framework module is involved, so an upgrade of it cannot change how khook serves.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from functions_framework import create_app

from khook import runtime
from khook.cli._common import COMMANDS, add_control_namespace_option, add_rules_option, env_help
from khook.function import direct_posts
from khook.logs import configure
from khook.serving import GunicornApp, gunicorn_options
from khook.settings import DEFAULT_DEDUP, Settings
from khook.startup import settings_or_exit

ENTRY = Path(__file__).resolve().parent.parent / "entry" / "main.py"
# gunicorn's worker heartbeat files, kept in memory so the root filesystem can be read-only;
# gunicorn creates them with mkstemp, private to the worker.
SHM = Path("/dev/shm")  # noqa: S108


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        # A server prints JSON lines only: its usage errors too (khook.cli._common).
        json_errors=True,
        help=COMMANDS["serve"],
        description="Serve khook over HTTP. Every flag can also be set by its environment "
        "variable; flags win. With no agent URL khook runs dry: it logs the exact A2A request "
        "instead of sending it.",
    )
    p.add_argument("--host", default=None, help="address to listen on [env HOST] (0.0.0.0)")
    p.add_argument("--port", type=int, help=env_help("port", "port to listen on (8080)"))
    p.add_argument(
        "--hooks",
        action="append",
        metavar="PATH",
        help=env_help("hooks", "Hook YAML file or directory (repeatable; reloaded on change)"),
    )
    p.add_argument(
        "--hooks-from-cluster",
        action="store_true",
        default=None,
        help="read Hook resources from the API server, and write their status and Events "
        "[env KHOOK_HOOKS=cluster]",
    )
    p.add_argument(
        "--watch-namespace",
        action="append",
        metavar="NS",
        dest="watch_namespaces",
        help=env_help("watch_namespaces", "watch Hooks in this namespace only (repeatable)"),
    )
    add_rules_option(p)
    p.add_argument("--agent-url", metavar="URL", help=env_help("agent_url", "Kagent base URL"))
    p.add_argument(
        "--a2a-version",
        choices=("0.3", "1.0", "auto"),
        help=env_help("a2a_version", "A2A protocol version (0.3)"),
    )
    p.add_argument(
        "--dedup",
        metavar="STORE",
        help=env_help(
            "dedup",
            f"dedup store: memory | tinydb:PATH | lease | configmap "
            f"(lease in a cluster, else {DEFAULT_DEDUP})",
        ),
    )
    p.add_argument(
        "--state-namespace",
        metavar="NS",
        help=env_help("state_namespace", "namespace of the lease/configmap records (the pod's)"),
    )
    add_control_namespace_option(p)
    p.add_argument(
        "--auth",
        choices=("none", "token", "oidc"),
        help=env_help("auth", "who may send events (none)"),
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help=env_help("dry_run", "log A2A requests instead of sending them"),
    )
    p.set_defaults(run=run)


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=args.host,
        port=args.port,
        hooks=args.hooks,
        rules=args.rules,
        agent_url=args.agent_url,
        a2a_version=args.a2a_version,
        dedup=args.dedup,
        hooks_from_cluster=args.hooks_from_cluster,
        watch_namespaces=args.watch_namespaces,
        state_namespace=args.state_namespace,
        control_namespace=args.control_namespace,
        dry_run=args.dry_run,
        auth=args.auth,
    )


def run(args: argparse.Namespace) -> int:
    # A mistake no retry can fix stops here: one JSON line, exit 2 (khook.startup).
    settings = settings_or_exit(lambda: settings_from(args))
    configure(settings.log_level)
    rt = runtime.for_settings(settings)
    runtime.install(rt)
    # The function is ASGI: gunicorn with khook's uvicorn worker, which bounds what a slow
    # client may cost (khook.serving). Each worker hands events straight to the function,
    # past functions-framework's router (khook.function.direct_posts), as it does under the
    # functions-framework command.
    app = create_app(target="handle", source=str(ENTRY), signature_type="http")  # type: ignore[no-untyped-call]
    tmp_dir = str(SHM) if SHM.is_dir() else None
    GunicornApp(app, gunicorn_options(settings, rt, tmp_dir, wrap_app=direct_posts)).run()
    return 0
