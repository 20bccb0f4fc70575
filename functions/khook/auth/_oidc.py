"""Knative's sender identity: the ServiceAccount token a source or a Trigger sends, verified
locally against the cluster's signing keys.

With ``authentication-oidc: enabled`` in Knative Eventing's ``config-features``, an
ApiServerSource sends ``Authorization: Bearer <token>``: a token of its own OIDC
ServiceAccount (``<source>-oidc-sources.knative.dev-apiserversource`` in the source's
namespace) for the audience of its sink; a Broker's Trigger sends one of the Trigger's
(``<trigger>-oidc-eventing.knative.dev-trigger``). Any pod can obtain a token for any audience,
so the audience only says the token was meant for khook; who sent it is the subject, checked
against the allow-list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from khook.auth._base import (
    InvalidToken,
    Sender,
    SenderNotAllowed,
    VerifierUnavailable,
    bearer_token,
)
from khook.auth._jwks import ALGORITHMS, ClusterKeys, KeysUnavailable
from khook.clock import Clock

LEEWAY = 60.0  # seconds of clock skew allowed on exp, nbf and iat (go-jose's default leeway)
VERIFIED_TTL = 60.0  # seconds a verified token is remembered (never past its exp)
VERIFIED_MAX = 4096  # tokens remembered at once; the least recently used go first
MAX_HEADER_SEGMENT = 4096  # characters of a token's encoded JOSE header
MAX_KID_CHARS = 256
MAX_SUBJECT_CHARS = 512

_SA = "system:serviceaccount:"
_NAMESPACE = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"  # a DNS-1123 label
_NAME = r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?"  # a DNS-1123 subdomain
_SUBJECT = re.compile(f"{_SA}{_NAMESPACE}:{_NAME}")
_PATTERN = re.compile(f"{_SA}{_NAMESPACE}:[-a-z0-9.]*\\*")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class SenderAllowList:
    """Subjects allowed to send: exact ``system:serviceaccount:<ns>:<name>`` entries, or
    ``system:serviceaccount:<ns>:<prefix>*`` (a trailing ``*`` as in an EventPolicy's
    ``from.sub``, never wider than one namespace)."""

    def __init__(self, entries: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for entry in entries:
            if _SUBJECT.fullmatch(entry):
                exact.add(entry)
            elif _PATTERN.fullmatch(entry):
                prefixes.append(entry[:-1])
            else:
                raise ValueError(
                    f"sender {entry!r} is not system:serviceaccount:<namespace>:<name> "
                    "(or :<name-prefix>* within one namespace)"
                )
        if not exact and not prefixes:
            raise ValueError("oidc auth needs at least one allowed sender (KHOOK_AUTH_SENDERS)")
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def allows(self, subject: str) -> bool:
        return subject in self._exact or any(subject.startswith(p) for p in self._prefixes)


class VerifiedTokens:
    """Tokens verified a moment ago, keyed by their SHA-256 (the token itself is not kept)."""

    def __init__(self, ttl: float = VERIFIED_TTL, size: int = VERIFIED_MAX) -> None:
        self._ttl = ttl
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[str, float, float]] = OrderedDict()

    def get(self, digest: bytes, now: float, monotonic: float) -> str | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            subject, expires, stored = entry
            if now >= expires or monotonic - stored >= self._ttl:
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return subject

    def put(self, digest: bytes, subject: str, expires: float, monotonic: float) -> None:
        with self._lock:
            self._entries[digest] = (subject, expires, monotonic)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class OIDCAuthenticator:
    mode = "oidc"

    def __init__(
        self,
        keys: ClusterKeys,
        audience: str,
        senders: SenderAllowList,
        clock: Clock,
        verified: VerifiedTokens | None = None,
    ) -> None:
        if not audience:
            raise ValueError("oidc auth needs an audience (KHOOK_AUTH_AUDIENCE)")
        self._keys = keys
        self._audience = audience
        self._senders = senders
        self._clock = clock
        self._verified = verified or VerifiedTokens()
        # Signature checks only; every claim is checked below against the injected clock.
        # PyJWT on first use: only this mode needs it.
        from jwt import PyJWS  # noqa: PLC0415

        self._jws = PyJWS(algorithms=list(ALGORITHMS))

    def authenticate(self, headers: Mapping[str, str]) -> Sender:
        token = bearer_token(headers)
        digest = hashlib.sha256(token.encode("ascii")).digest()
        now, monotonic = self._clock.now().timestamp(), self._clock.monotonic()
        subject = self._verified.get(digest, now, monotonic)
        if subject is None:
            subject, expires = self._verify(token, now)
            self._verified.put(digest, subject, expires, monotonic)
        if not self._senders.allows(subject):
            raise SenderNotAllowed(f"sender {subject} is not allowed")
        return Sender(subject, self.mode)

    def _verify(self, token: str, now: float) -> tuple[str, float]:
        """The subject and expiry of a token whose signature and claims hold."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a JWT")
        header = _header(parts[0])
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise InvalidToken("signing algorithm not allowed")
        if "crit" in header:
            raise InvalidToken("unsupported critical header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS:
            raise InvalidToken("token names no signing key")
        try:
            issuer, verifiers = self._keys.lookup(kid)
        except KeysUnavailable as exc:
            raise VerifierUnavailable(str(exc)) from None
        if verifiers is None:
            raise InvalidToken("unknown signing key")
        key = verifiers.get(algorithm)
        if key is None:
            raise InvalidToken("algorithm does not match the signing key")
        from jwt.exceptions import PyJWTError  # noqa: PLC0415 - loaded by __init__

        try:
            payload = self._jws.decode(token, key=key, algorithms=[algorithm])
            claims = json.loads(payload)
        except PyJWTError:
            raise InvalidToken("bad signature") from None
        except (ValueError, TypeError, RecursionError):
            raise InvalidToken("malformed claims") from None
        if not isinstance(claims, dict):
            raise InvalidToken("malformed claims")
        return self._check_claims(claims, issuer, now)

    def _check_claims(self, claims: dict[str, Any], issuer: str, now: float) -> tuple[str, float]:
        if claims.get("iss") != issuer:
            raise InvalidToken("wrong issuer")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or self._audience not in audiences:
            raise InvalidToken("wrong audience")
        expires = _number(claims.get("exp"))
        if expires is None:
            raise InvalidToken("token has no expiry")
        if now >= expires + LEEWAY:
            raise InvalidToken("token expired")
        not_before = _number(claims.get("nbf"), missing=-math.inf)
        issued = _number(claims.get("iat"), missing=-math.inf)
        if not_before is None or issued is None:
            raise InvalidToken("malformed time claims")
        if now + LEEWAY < not_before or now + LEEWAY < issued:
            raise InvalidToken("token not yet valid")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > MAX_SUBJECT_CHARS:
            raise InvalidToken("token names no subject")
        return subject, expires


def _header(segment: str) -> dict[str, Any]:
    """The JOSE header, read without trusting it: bounded, strict base64url, a JSON object."""
    if len(segment) > MAX_HEADER_SEGMENT:
        raise InvalidToken("token header too large")
    if not _BASE64URL.fullmatch(segment):
        raise InvalidToken("malformed token")
    try:
        raw = base64.b64decode(segment + "=" * (-len(segment) % 4), altchars=b"-_", validate=True)
        header = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def _number(value: Any, missing: float | None = None) -> float | None:
    """A NumericDate claim as seconds; ``missing`` if absent, None if not a finite number."""
    if value is None:
        return missing
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None
