"""Who may send khook events: nobody checked (``none``), a shared secret (``token``), or
Knative Eventing's sender identity (``oidc``: a ServiceAccount token verified against the
cluster's signing keys, then its subject against an allow-list).

    authenticator = build_authenticator(settings, api, clock)   # ValueError: cannot work
    try:
        sender = authenticator.authenticate(request_headers)
    except AuthError as exc:
        answer exc.status (401, 403, or 503 while the keys cannot be read) with exc.reason,
        and exc.www_authenticate as the WWW-Authenticate header when it is not empty

``authenticate`` may read the keys from the API server (at most once per second, each read
bounded by 5 s to connect and 10 s to answer): call it off the event loop.
"""

from khook.auth._base import (
    ANONYMOUS,
    MAX_HEADER_BYTES,
    MAX_TOKEN_BYTES,
    Authenticator,
    AuthError,
    InvalidToken,
    MissingToken,
    Sender,
    SenderNotAllowed,
    VerifierUnavailable,
)
from khook.auth._build import DISCOVERY_RBAC, build_authenticator
from khook.auth._jwks import (
    ALGORITHMS,
    DISCOVERY_PATH,
    JWKS_PATH,
    KEYS_TTL,
    MAX_STALE,
    MIN_REFRESH_INTERVAL,
)
from khook.auth._oidc import LEEWAY, VERIFIED_MAX, VERIFIED_TTL, SenderAllowList
from khook.auth._token import MAX_SECRETS, MIN_SECRET_CHARS, NoAuth, SharedToken

__all__ = [
    "ALGORITHMS",
    "ANONYMOUS",
    "DISCOVERY_PATH",
    "DISCOVERY_RBAC",
    "JWKS_PATH",
    "KEYS_TTL",
    "LEEWAY",
    "MAX_HEADER_BYTES",
    "MAX_SECRETS",
    "MAX_STALE",
    "MAX_TOKEN_BYTES",
    "MIN_REFRESH_INTERVAL",
    "MIN_SECRET_CHARS",
    "VERIFIED_MAX",
    "VERIFIED_TTL",
    "AuthError",
    "Authenticator",
    "InvalidToken",
    "MissingToken",
    "NoAuth",
    "Sender",
    "SenderAllowList",
    "SenderNotAllowed",
    "SharedToken",
    "VerifierUnavailable",
    "build_authenticator",
]
