"""Fail fast on configuration, retry on weather.

What no retry can fix stops khook before it serves, with one line naming the setting: a bad
flag or environment value, a rules file that does not parse, an unknown dedup store, a Hook
path that does not exist or cannot be read, a Kagent or sender token file that cannot be read,
token auth without a usable secret, cluster mode without credentials (no kubeconfig outside a
pod, no service account in one). ``khook serve`` and the functions-framework source file run
:func:`check` before serving, and exit 2 when it raises.

What a retry can fix is not checked here: an API server or an agent that cannot be reached
right now. khook serves meanwhile, and ``/readyz`` answers 503 with the reason until it can work.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from khook.admission import policy_from_settings
from khook.agent import check_agent_url, check_user_id_template
from khook.auth import SenderAllowList, build_authenticator
from khook.clock import SystemClock
from khook.core.tenancy import PolicyError
from khook.files import load_correlation, load_rules
from khook.logs import fatal
from khook.settings import CLUSTER_STORES, Settings, SettingsError, setting_name

EXIT_CONFIGURATION = 2  # like a usage error: nothing a restart alone would change
FLAG_AND_ENV_AUTH = "--auth / KHOOK_AUTH"


def preflight(settings: Settings) -> None:
    """Configuration mistakes that need no I/O to find: a SettingsError names the setting.
    (Also run when the pipeline is built, whoever builds it.)"""
    try:
        check_user_id_template(settings.user_id)
    except ValueError as exc:
        raise SettingsError(f"user_id (KHOOK_USER_ID): {exc}") from None
    if not settings.effective_dry_run:
        try:
            check_agent_url(settings.agent_url)
        except ValueError as exc:
            raise SettingsError(f"{setting_name('agent_url')}: {exc}") from None
    try:
        policy_from_settings(settings)
    except PolicyError as exc:
        raise SettingsError(f"KHOOK_AGENT_NAMESPACES / KHOOK_AGENT_GRANTS: {exc}") from None


def check(settings: Settings) -> None:
    """Everything about ``settings`` that can be known before serving; raises SettingsError
    with one line. Reads files, never the network."""
    preflight(settings)
    try:
        load_rules(settings.rules)
        load_correlation(settings.rules)
    except ValueError as exc:  # FileError, or a rule or correlation entry that does not parse
        raise SettingsError(f"{setting_name('rules')}: {exc}") from None
    for path in settings.hooks:
        _check_readable(Path(path), setting_name("hooks"))
    if settings.token_file:
        _check_readable(Path(settings.token_file), "KAGENT_TOKEN_FILE")
    _check_auth(settings)
    if settings.uses_cluster:
        _check_credentials(settings)


def settings_or_exit(make: Callable[[], Settings]) -> Settings:
    """The settings ``make`` reads, checked; on a mistake, one JSON line on stderr
    (``"msg": "khook cannot start"``, the reason in ``error``) and exit 2, no traceback."""
    try:
        settings = make()
        check(settings)
    except SettingsError as exc:
        fatal("khook cannot start", error=str(exc))
        raise SystemExit(EXIT_CONFIGURATION) from None
    return settings


def shown_url(url: str) -> str:
    """``url`` as logs and messages show it: without ``user:password@``."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return urllib.parse.urlunsplit((parts.scheme, host + port, parts.path, parts.query, ""))


def _check_readable(path: Path, what: str) -> None:
    """A file that can be opened, or a directory that can be listed (files inside that cannot
    be read are reported when they are loaded, like a file that is not valid YAML)."""
    try:
        if path.is_dir():
            with os.scandir(path):
                return
        with path.open("rb"):
            return
    except FileNotFoundError:
        raise SettingsError(f"{what}: {path}: no such file or directory") from None
    except OSError as exc:
        raise SettingsError(f"{what}: {path}: cannot read: {exc.strerror or exc}") from None


def _check_auth(settings: Settings) -> None:
    if settings.auth == "token":
        try:
            build_authenticator(settings, None, SystemClock())  # reads and checks the secret
        except ValueError as exc:
            raise SettingsError(f"auth=token ({FLAG_AND_ENV_AUTH}): {exc}") from None
    elif settings.auth == "oidc":
        if not settings.auth_audience:
            raise SettingsError(
                f"auth=oidc ({FLAG_AND_ENV_AUTH}) needs KHOOK_AUTH_AUDIENCE: the audience Knative "
                "requests tokens for (the source's spec.sink.audience)"
            )
        try:
            SenderAllowList(settings.auth_senders)
        except ValueError as exc:
            raise SettingsError(f"KHOOK_AUTH_SENDERS: {exc}") from None


def _check_credentials(settings: Settings) -> None:
    """Cluster mode needs credentials: the pod's service account, or a kubeconfig with a
    current context. Loading them reads files only; whether the API server answers is
    weather (``/readyz`` says so until it does)."""
    why = _why_cluster(settings)
    # Only a mode that talks to the cluster comes here: local mode never imports the client.
    from kubernetes import client, config  # noqa: PLC0415

    try:
        if settings.in_cluster:
            config.load_incluster_config(client_configuration=client.Configuration())  # type: ignore[no-untyped-call]
            return
        _, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=settings.kubeconfig or None
        )
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        where = settings.kubeconfig or "~/.kube/config"
        detail = str(exc)
        if "No configuration found" in detail:
            detail = f"no kubeconfig at {where} (KUBECONFIG), and not in a pod"
        elif settings.in_cluster:
            detail = f"no usable service account in this pod: {detail}"
        raise SettingsError(f"{why} needs Kubernetes credentials: {detail}") from None
    if not current:
        raise SettingsError(f"{why} needs Kubernetes credentials: the kubeconfig has no context")


def _why_cluster(settings: Settings) -> str:
    if settings.hooks_from_cluster:
        return "Hooks from the cluster (--hooks-from-cluster / KHOOK_HOOKS=cluster)"
    store = settings.effective_dedup.partition(":")[0]
    if store in CLUSTER_STORES:
        default = "" if settings.dedup else ", the default in a pod"
        return f"the {store} dedup store (--dedup / KHOOK_DEDUP{default})"
    return f"auth=oidc ({FLAG_AND_ENV_AUTH})"
