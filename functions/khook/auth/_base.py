"""What every authenticator shares: who sent a request, why one was refused, and the bounded
reading of the ``Authorization`` header (RFC 6750 section 2.1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

MAX_TOKEN_BYTES = 16 * 1024  # a Kubernetes ServiceAccount token is about 1 KiB
# The whole header: "Bearer", the spaces around the token and the token itself.
MAX_HEADER_BYTES = MAX_TOKEN_BYTES + 64
# RFC 6750 b64token: what a bearer token may consist of. Linear: one class, then padding.
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_HEADER_NAMES = ("authorization", "Authorization", "AUTHORIZATION")
_MAX_SCANNED_HEADERS = 256  # a plain dict with odd casing is scanned, but not without end


@dataclass(frozen=True)
class Sender:
    """Who sent a request: ``system:serviceaccount:<ns>:<name>`` in oidc mode."""

    subject: str
    mode: str  # "none" | "token" | "oidc"


ANONYMOUS = Sender("anonymous", "none")


class AuthError(Exception):
    """A request that khook refuses. ``reason`` is short, safe to return to the sender and to
    log: it never contains the token or a claim the sender chose."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.status} {reason}")
        self.reason = reason

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` value for the answer (RFC 6750 section 3), "" for none."""
        return f'Bearer error="invalid_token", error_description="{self.reason}"'


class MissingToken(AuthError):
    """401: no credentials at all (RFC 6750: the challenge names no error)."""

    @property
    def www_authenticate(self) -> str:
        return 'Bearer realm="khook"'


class InvalidToken(AuthError):
    """401: credentials that are malformed, forged, expired or meant for someone else."""


class SenderNotAllowed(AuthError):
    """403: a valid identity that is not on the sender allow-list."""

    status = 403

    @property
    def www_authenticate(self) -> str:
        return 'Bearer error="insufficient_scope"'


class VerifierUnavailable(AuthError):
    """503: the cluster's signing keys cannot be read right now (the API server is down), so a
    token can be neither accepted nor refused. Knative retries a 503; it drops a 401."""

    status = 503

    @property
    def www_authenticate(self) -> str:
        return ""


class Authenticator(Protocol):
    mode: str

    def authenticate(self, headers: Mapping[str, str]) -> Sender:
        """The sender of a request with these headers; raises :class:`AuthError`."""
        ...


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of ``Authorization: Bearer <token>``, or :class:`AuthError`."""
    value = _authorization(headers)
    if value is None or not value.strip():
        raise MissingToken("missing bearer token")
    if len(value) > MAX_HEADER_BYTES:
        raise InvalidToken(f"authorization header longer than {MAX_HEADER_BYTES} bytes")
    scheme, _, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        raise MissingToken("authorization is not a bearer token")
    token = rest.strip(" \t")
    if not token:
        raise MissingToken("missing bearer token")
    if len(token) > MAX_TOKEN_BYTES:
        raise InvalidToken(f"token longer than {MAX_TOKEN_BYTES} bytes")
    if not B64TOKEN.fullmatch(token):
        raise InvalidToken("malformed bearer token")
    return token


def _authorization(headers: Mapping[str, str]) -> str | None:
    """The header, whatever the mapping: Starlette's (case-insensitive) or a plain dict."""
    for name in _HEADER_NAMES:
        value = headers.get(name)
        if value is not None:
            return value if isinstance(value, str) else None
    for index, (name, value) in enumerate(headers.items()):
        if index >= _MAX_SCANNED_HEADERS:
            break
        if isinstance(name, str) and name.lower() == "authorization":
            return value if isinstance(value, str) else None
    return None
