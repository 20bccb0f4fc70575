"""Settings: the one place that reads the environment. Flags override the environment."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path

from khook.core.durations import DurationError, parse_duration

A2A_VERSIONS = ("0.3", "1.0", "auto")
DEFAULT_DEDUP = "tinydb:.khook/dedup"
DEFAULT_CONTROL_NAMESPACE = "khook-system"
# The identity khook presents to Kagent (X-User-Id), per tenant: {namespace} and {name} are the
# Hook's. A value without placeholders is one identity for every tenant.
DEFAULT_USER_ID = "khook:{namespace}"
AUTH_MODES = ("none", "token", "oidc")
MIB = 1024 * 1024


class SettingsError(ValueError):
    pass


# Environment variable for each setting (documented in the README's configuration table).
ENV = {
    "host": "HOST",
    "port": "PORT",
    "threads": "THREADS",
    "workers": "WORKERS",
    "hooks": "KHOOK_HOOKS",
    "rules": "KHOOK_RULES",
    "agent_url": "KAGENT_URL",
    "a2a_version": "KHOOK_A2A_VERSION",
    "dedup": "KHOOK_DEDUP",
    "control_namespace": "KHOOK_CONTROL_NAMESPACE",
    "dry_run": "KHOOK_DRY_RUN",
    "user_id": "KHOOK_USER_ID",
    "token_file": "KAGENT_TOKEN_FILE",
    "agent_timeout": "KHOOK_AGENT_TIMEOUT",
    "agent_attempts": "KHOOK_AGENT_ATTEMPTS",
    "agent_blocking": "KHOOK_AGENT_BLOCKING",
    "max_body_bytes": "KHOOK_MAX_BODY_BYTES",
    "max_signal_age": "KHOOK_MAX_SIGNAL_AGE",
    "log_level": "KHOOK_LOG_LEVEL",
    "graceful_timeout": "KHOOK_GRACEFUL_TIMEOUT",
    "cold_start_wait": "KHOOK_COLD_START_WAIT",
    "watch_namespaces": "KHOOK_WATCH_NAMESPACES",
    "state_namespace": "KHOOK_STATE_NAMESPACE",
    "pod_name": "POD_NAME",
    "pod_namespace": "POD_NAMESPACE",
    "kubeconfig": "KUBECONFIG",
    "auth": "KHOOK_AUTH",
    "auth_token_file": "KHOOK_AUTH_TOKEN_FILE",
    "auth_audience": "KHOOK_AUTH_AUDIENCE",
    "auth_senders": "KHOOK_AUTH_SENDERS",
    "agent_namespaces": "KHOOK_AGENT_NAMESPACES",
    "agent_grants": "KHOOK_AGENT_GRANTS",
    "max_hooks_per_namespace": "KHOOK_MAX_HOOKS_PER_NAMESPACE",
    "max_calls_per_event": "KHOOK_MAX_CALLS_PER_EVENT",
    "agent_concurrency": "KHOOK_AGENT_CONCURRENCY",
    "agent_max_response_bytes": "KHOOK_AGENT_MAX_RESPONSE_BYTES",
    "max_retry_after": "KHOOK_MAX_RETRY_AFTER",
    "render_timeout": "KHOOK_RENDER_TIMEOUT",
    "render_memory_bytes": "KHOOK_RENDER_MEMORY_BYTES",
    "render_workers": "KHOOK_RENDER_WORKERS",
    "request_timeout": "KHOOK_REQUEST_TIMEOUT",
    "max_sessions_per_minute": "KHOOK_MAX_SESSIONS_PER_MINUTE",
}
# The `khook serve` flag of each setting that has one: messages name both ways to set it.
FLAGS = {
    "host": "--host",
    "port": "--port",
    "hooks": "--hooks",
    "rules": "--rules",
    "agent_url": "--agent-url",
    "a2a_version": "--a2a-version",
    "dedup": "--dedup",
    "control_namespace": "--control-namespace",
    "dry_run": "--dry-run",
    "watch_namespaces": "--watch-namespace",
    "state_namespace": "--state-namespace",
    "auth": "--auth",
}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The dedup stores (khook.stores.open_store builds them; tests keep the two lists equal):
# memory | tinydb[:PATH] | lease | configmap.
DEDUP_STORES = ("memory", "tinydb", "lease", "configmap")
HOOKS_FROM_CLUSTER = "cluster"  # KHOOK_HOOKS=cluster
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
CLUSTER_STORES = ("lease", "configmap")
TOKEN_ENV = "KAGENT_TOKEN"  # noqa: S105 - the variable's name, not a secret
AUTH_TOKEN_ENV = "KHOOK_AUTH_TOKEN"  # noqa: S105 - the variable's name, not a secret


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on every interface
    port: int = 8080
    # functions-framework's default is cpu_count()*4 threads: in a pod, the node's CPUs.
    threads: int = 8
    workers: int = 1
    hooks: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    agent_url: str = ""
    a2a_version: str = "0.3"
    dedup: str = ""  # "" = lease in a cluster, else tinydb (see effective_dedup)
    control_namespace: str = DEFAULT_CONTROL_NAMESPACE
    dry_run: bool = False
    user_id: str = DEFAULT_USER_ID
    token: str = field(default="", repr=False)
    token_file: str = ""
    agent_timeout: float = 30.0
    agent_attempts: int = 4
    agent_blocking: bool = False
    max_body_bytes: int = MIB
    max_signal_age: timedelta = timedelta(minutes=15)
    log_level: str = "info"
    graceful_timeout: float = 60.0  # after SIGTERM, seconds to finish in-flight events
    cold_start_wait: float = 10.0  # how long a first event waits for the first Hook list
    hooks_from_cluster: bool = False
    watch_namespaces: tuple[str, ...] = ()  # () = all namespaces
    state_namespace: str = ""  # "" = the pod's namespace
    pod_name: str = ""
    pod_namespace: str = ""
    kubeconfig: str = ""
    in_cluster: bool = False
    # Sender authentication: none | token (a shared secret) | oidc (Knative sender identity).
    auth: str = "none"
    auth_token: str = field(default="", repr=False)
    auth_token_file: str = ""
    auth_audience: str = ""  # oidc: the audience the sender's token must carry
    auth_senders: tuple[str, ...] = ()  # oidc: allowed subjects (system:serviceaccount:ns:name)
    # Agent boundaries: a Hook may call agents in its own namespace, in these, and in the
    # namespaces its namespace is granted ("team-a=ml-agents,shared;team-b=ml-agents").
    agent_namespaces: tuple[str, ...] = ("kagent",)
    agent_grants: str = ""
    # Bounds on what one tenant can make one event cost.
    max_hooks_per_namespace: int = 50
    max_calls_per_event: int = 32
    agent_concurrency: int = 8  # agent calls of one event in flight at once
    agent_max_response_bytes: int = MIB
    max_retry_after: float = 300.0  # an agent's Retry-After passed on is capped at this
    # Prompt rendering runs in a separate process: a deadline and a memory cap per render.
    render_timeout: float = 2.0
    render_memory_bytes: int = 256 * MIB
    render_workers: int = 2
    request_timeout: float = 10.0  # reading one request's body
    # The storm breaker: agent sessions one Hook may open per minute (0: no limit); beyond,
    # new incidents join one overflow session.
    max_sessions_per_minute: int = 10

    @property
    def effective_dedup(self) -> str:
        if self.dedup:
            return self.dedup
        return "lease" if self.in_cluster else DEFAULT_DEDUP

    @property
    def uses_cluster(self) -> bool:
        """Whether khook talks to the Kubernetes API at all."""
        kind = self.effective_dedup.partition(":")[0]
        return self.hooks_from_cluster or kind in CLUSTER_STORES or self.auth == "oidc"

    @property
    def identity(self) -> str:
        """Who this replica is, in Lease holders and Event reporting instances."""
        return self.pod_name or "khook-local"

    @property
    def effective_dry_run(self) -> bool:
        """No agent URL means there is nobody to call: log the request instead."""
        return self.dry_run or not self.agent_url

    def read_token(self) -> str | None:
        """The bearer token, read fresh from its file so rotated tokens are picked up."""
        if self.token_file:
            try:
                return Path(self.token_file).read_text(encoding="utf-8").strip() or None
            except OSError:
                return None
        return self.token or None

    def read_auth_token(self) -> str | None:
        """The shared secret a sender presents to a khook with KHOOK_AUTH=token (``khook
        source`` and ``khook send``): the file's first line, else the variable."""
        if self.auth_token_file:
            try:
                lines = Path(self.auth_token_file).read_text(encoding="utf-8").split()
            except OSError:
                return None
            return lines[0] if lines else None
        return self.auth_token or None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            name = ENV.get(f.name)
            if name and env.get(name, "") != "":
                values[f.name] = env[name]
        if env.get(TOKEN_ENV):
            values["token"] = env[TOKEN_ENV]
        if env.get(AUTH_TOKEN_ENV):
            values["auth_token"] = env[AUTH_TOKEN_ENV]
        hooks = values.get("hooks")
        if isinstance(hooks, str) and hooks.strip() == HOOKS_FROM_CLUSTER:
            del values["hooks"]
            values["hooks_from_cluster"] = True
        values["in_cluster"] = bool(env.get("KUBERNETES_SERVICE_HOST"))
        if not values.get("pod_name") and env.get("HOSTNAME"):
            values["pod_name"] = env["HOSTNAME"]
        if not values.get("pod_namespace") and values["in_cluster"]:
            with contextlib.suppress(OSError):
                values["pod_namespace"] = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.coerce(values)

    @classmethod
    def coerce(cls, values: Mapping[str, object]) -> Settings:
        out: dict[str, object] = {}
        for key, value in values.items():
            try:
                out[key] = _coerce(key, value)
            except (ValueError, DurationError) as exc:
                raise SettingsError(f"{setting_name(key)}: {exc}") from None
        settings = cls(**out)  # type: ignore[arg-type]
        if settings.a2a_version not in A2A_VERSIONS:
            raise SettingsError(
                f"{setting_name('a2a_version')}: {settings.a2a_version!r} is not one of "
                f"{', '.join(A2A_VERSIONS)}"
            )
        if settings.log_level not in LOG_LEVELS:
            raise SettingsError(
                f"{setting_name('log_level')}: {settings.log_level!r} is not a log level: "
                f"use {', '.join(LOG_LEVELS)}"
            )
        if not 1 <= settings.port <= 65535:
            raise SettingsError(f"{setting_name('port')}: {settings.port} is not a TCP port")
        _check_dedup(settings.dedup)
        if settings.agent_attempts < 1 or settings.agent_timeout <= 0:
            raise SettingsError("agent_attempts must be >= 1 and agent_timeout > 0")
        if settings.hooks_from_cluster and settings.hooks:
            raise SettingsError("read Hooks from files (--hooks) or the cluster, not both")
        if settings.threads < 1 or settings.workers < 1:
            raise SettingsError("threads and workers must be >= 1")
        if settings.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes must be at least 1024")
        _check_bounds(settings)
        return settings


def setting_name(key: str) -> str:
    """How a message names a setting: ``dedup (--dedup / KHOOK_DEDUP)``."""
    ways = [w for w in (FLAGS.get(key), ENV.get(key)) if w]
    return f"{key} ({' / '.join(ways)})" if ways else key


def _check_dedup(spec: str) -> None:
    if not spec:
        return  # the default: lease in a pod, else tinydb
    kind, colon, arg = spec.partition(":")
    if kind not in DEDUP_STORES:
        raise SettingsError(
            f"{setting_name('dedup')}: unknown dedup store {spec!r}: use memory, tinydb:PATH, "
            "lease or configmap"
        )
    if colon and (kind != "tinydb" or not arg):
        raise SettingsError(
            f"{setting_name('dedup')}: {spec!r}: only tinydb takes a PATH (tinydb:PATH)"
        )


def _check_bounds(settings: Settings) -> None:
    if settings.auth not in AUTH_MODES:
        raise SettingsError(f"auth (KHOOK_AUTH) must be one of {', '.join(AUTH_MODES)}")
    positive = (
        "max_hooks_per_namespace",
        "max_calls_per_event",
        "agent_concurrency",
        "agent_max_response_bytes",
        "render_workers",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise SettingsError(f"{name} ({ENV[name]}) must be at least 1")
    if settings.max_sessions_per_minute < 0:
        raise SettingsError("max_sessions_per_minute (KHOOK_MAX_SESSIONS_PER_MINUTE) >= 0")
    for name in ("render_timeout", "request_timeout", "max_retry_after"):
        if getattr(settings, name) <= 0:
            raise SettingsError(f"{name} ({ENV[name]}) must be above zero")


_INTEGERS = frozenset(
    {
        "port",
        "threads",
        "workers",
        "agent_attempts",
        "max_body_bytes",
        "max_hooks_per_namespace",
        "max_calls_per_event",
        "agent_concurrency",
        "agent_max_response_bytes",
        "render_memory_bytes",
        "render_workers",
        "max_sessions_per_minute",
    }
)
_SECONDS = frozenset(
    {
        "agent_timeout",
        "graceful_timeout",
        "cold_start_wait",
        "max_retry_after",
        "render_timeout",
        "request_timeout",
    }
)


def _coerce(key: str, value: object) -> object:
    if key in ("hooks", "rules", "watch_namespaces", "auth_senders", "agent_namespaces"):
        if isinstance(value, str):
            return tuple(p.strip() for p in value.split(",") if p.strip())
        return tuple(str(v) for v in value)  # type: ignore[attr-defined]
    if key in _INTEGERS:
        text = str(value).strip()
        if not re.fullmatch(r"-?[0-9]+", text):
            raise ValueError(f"expected a whole number, not {value!r}")
        return int(text)
    if key in _SECONDS:
        if isinstance(value, int | float):
            return float(value)
        return parse_duration(str(value)).total_seconds()
    if key in ("dry_run", "agent_blocking", "hooks_from_cluster", "in_cluster"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"expected true or false, not {value!r}")
    if key == "max_signal_age":
        return value if isinstance(value, timedelta) else parse_duration(str(value))
    if key == "log_level":
        return str(value).strip().lower()
    return value
