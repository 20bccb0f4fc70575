"""From settings to an authenticator, refusing at start-up what cannot work."""

from __future__ import annotations

import logging
from typing import Any

from khook.auth._base import Authenticator
from khook.auth._jwks import ApiServerKeys, ClusterKeys, KeyFetchError
from khook.auth._oidc import OIDCAuthenticator, SenderAllowList
from khook.auth._token import NoAuth, SharedToken
from khook.clock import Clock
from khook.logs import log
from khook.settings import Settings

logger = logging.getLogger("khook.auth")

DISCOVERY_RBAC = (
    "khook's ServiceAccount needs GET on /.well-known/openid-configuration and "
    "/openid/v1/jwks (ClusterRole system:service-account-issuer-discovery)"
)


def build_authenticator(settings: Settings, api: Any | None, clock: Clock) -> Authenticator:
    """The authenticator ``settings.auth`` asks for. ``api`` is a ``kubernetes.client.ApiClient``
    (oidc mode reads the cluster's signing keys through it). Raises ValueError for a
    configuration that cannot work; oidc mode reads the keys once here, so missing RBAC or a
    cluster without OIDC discovery stops khook at start-up instead of refusing every event."""
    if settings.auth == "none":
        return NoAuth()
    if settings.auth == "token":
        # The file wins over the variable, as for the Kagent token: it is the one that rotates.
        if settings.auth_token_file:
            return SharedToken(path=settings.auth_token_file)
        return SharedToken(secret=settings.auth_token)
    if settings.auth == "oidc":
        return _oidc(settings, api, clock)
    raise ValueError(f"unknown auth mode {settings.auth!r}: none, token or oidc")


def _oidc(settings: Settings, api: Any | None, clock: Clock) -> OIDCAuthenticator:
    if not settings.auth_audience:
        raise ValueError(
            "oidc auth needs the audience Knative requests tokens for (KHOOK_AUTH_AUDIENCE; "
            "the same value as the source's spec.sink.audience and the Triggers' "
            "spec.subscriber.audience)"
        )
    senders = SenderAllowList(settings.auth_senders)
    if api is None:
        raise ValueError(
            "oidc auth verifies tokens against the cluster's signing keys: it needs a "
            "connection to the Kubernetes API (in a pod, or KUBECONFIG)"
        )
    keys = ClusterKeys(ApiServerKeys(api), clock)
    try:
        keys.check()
    except KeyFetchError as exc:
        if exc.misconfigured:
            message = f"cannot read the cluster's OIDC discovery ({exc}): {DISCOVERY_RBAC}"
            raise ValueError(message) from None
        # The API server may just be slow to answer: tokens get 503 (retried) until it does.
        log(logger, logging.WARNING, "cannot read the cluster's signing keys yet", error=str(exc))
    return OIDCAuthenticator(keys, settings.auth_audience, senders, clock)
