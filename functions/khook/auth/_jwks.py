"""The cluster's token signing keys, as its API server publishes them (OIDC discovery).

The issuer comes from ``GET /.well-known/openid-configuration``; the keys from
``GET /openid/v1/jwks``, the path at which every kube-apiserver serves its own key set and the
one its discovery document names by default. (A cluster configured with
``--service-account-jwks-uri`` names a copy elsewhere, for verifiers outside the cluster; the
API server still serves the original, and khook never needs to leave the cluster for it.)
Both are read with khook's own Kubernetes client, so they carry khook's credentials: the
``system:service-account-issuer-discovery`` ClusterRole grants exactly these two paths.

Fetched key sets are cached for :data:`KEYS_TTL`; a token signed with a key the cache does not
know triggers a refresh, at most once per :data:`MIN_REFRESH_INTERVAL`, so tokens with made-up
key ids cannot turn khook into a load generator against the API server. A key id is judged
unknown only by a key set read after the token arrived: while the refresh is rate limited the
answer is "not known yet" (503, which Knative retries), so a key the cluster has just started
signing with costs a retry, never an event.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from khook.clock import Clock
from khook.kubeapi import KubeError, api_errors

if TYPE_CHECKING:
    from jwt import PyJWK

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
KEYS_TTL = 300.0  # seconds a key set is used before it is read again
MIN_REFRESH_INTERVAL = 1.0  # seconds between two reads, whatever tokens arrive
MAX_STALE = 3600.0  # seconds a key set that cannot be refreshed stays trusted (then 503)
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_KEYS = 64  # keys read from one key set; a cluster has one or two
MIN_RSA_BITS = 2048
REQUEST_TIMEOUT = (5.0, 10.0)  # (connect, read) seconds for one read

# The algorithms a Kubernetes issuer signs with (RSA keys: RS256; ECDSA keys: by curve), and
# RSA's other standard schemes. Never "none", never HMAC: a public key is no secret.
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256")
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
ALGORITHMS = (*RSA_ALGORITHMS, *EC_ALGORITHMS.values())


class KeyFetchError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}" if status else message)
        self.status = status  # the API server's answer; 0 if there was none
        self.message = message

    @property
    def misconfigured(self) -> bool:
        """An answer that waiting will not change: no permission, or no discovery at all."""
        return self.status in (401, 403, 404)


@dataclass(frozen=True)
class KeySet:
    issuer: str
    # kid -> {algorithm -> key}: each key may verify only the algorithms its type allows.
    keys: Mapping[str, Mapping[str, PyJWK]] = field(repr=False)
    fetched: float  # monotonic seconds


class KeyFetcher(Protocol):
    def fetch(self) -> tuple[str, Mapping[str, Mapping[str, PyJWK]]]:
        """The issuer and the keys by kid; raises :class:`KeyFetchError`."""
        ...


class ApiServerKeys:
    """Reads discovery and JWKS from the API server with an official client's ApiClient."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def fetch(self) -> tuple[str, Mapping[str, Mapping[str, PyJWK]]]:
        discovery = self._get(DISCOVERY_PATH, "application/json")
        issuer = discovery.get("issuer")
        if not isinstance(issuer, str) or not issuer:
            raise KeyFetchError(0, "the OIDC discovery document names no issuer")
        jwks = self._get(JWKS_PATH, "application/jwk-set+json, application/json")
        return issuer, parse_jwks(jwks)

    def _get(self, path: str, accept: str) -> dict[str, Any]:
        try:
            with api_errors():
                request = self._api.param_serialize(
                    method="GET",
                    resource_path=path,
                    header_params={"Accept": accept},
                    auth_settings=["BearerToken"],
                )
                response = self._api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
                raw = response.response
                try:
                    data = raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
                finally:
                    raw.release_conn()
        except KubeError as exc:
            raise KeyFetchError(exc.status, f"GET {path}: {exc.reason}: {exc.message}") from None
        if response.status != 200:
            raise KeyFetchError(response.status, f"GET {path}: {response.reason}")
        if len(data) > MAX_DOCUMENT_BYTES:
            raise KeyFetchError(0, f"GET {path}: larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(data)
        except (ValueError, RecursionError):
            raise KeyFetchError(0, f"GET {path}: not JSON") from None
        if not isinstance(document, dict):
            raise KeyFetchError(0, f"GET {path}: not a JSON object")
        return document


def parse_jwks(document: Mapping[str, Any]) -> dict[str, dict[str, PyJWK]]:
    """The usable signing keys of a JWK set by kid; keys khook cannot use are left out."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise KeyFetchError(0, "the JWK set has no keys list")
    keys: dict[str, dict[str, PyJWK]] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        usable = _algorithms(entry)
        if usable:
            keys[kid] = usable
    return keys


def _algorithms(jwk: dict[str, Any]) -> dict[str, PyJWK]:
    """One verifier per algorithm the key may be used with."""
    # PyJWT on first use: only sender authentication by OIDC reads keys.
    from jwt import PyJWK  # noqa: PLC0415
    from jwt.exceptions import PyJWTError  # noqa: PLC0415

    kty, declared = jwk.get("kty"), jwk.get("alg")
    if kty == "RSA":
        candidates: tuple[str, ...] = RSA_ALGORITHMS
    elif kty == "EC" and jwk.get("crv") in EC_ALGORITHMS:
        candidates = (EC_ALGORITHMS[jwk["crv"]],)
    else:
        return {}
    if declared is not None:  # a key bound to one algorithm verifies that one only
        candidates = tuple(a for a in candidates if a == declared)
    usable: dict[str, PyJWK] = {}
    for algorithm in candidates:
        try:
            key = PyJWK(jwk, algorithm)
        except (PyJWTError, ValueError, TypeError, KeyError):
            return {}
        if kty == "RSA" and getattr(key.key, "key_size", 0) < MIN_RSA_BITS:
            return {}
        usable[algorithm] = key
    return usable


class ClusterKeys:
    """The key set, cached and refreshed under a rate limit; safe for concurrent requests."""

    def __init__(
        self,
        fetcher: KeyFetcher,
        clock: Clock,
        *,
        ttl: float = KEYS_TTL,
        min_interval: float = MIN_REFRESH_INTERVAL,
        max_stale: float = MAX_STALE,
    ) -> None:
        if not (0 < min_interval <= ttl <= max_stale) or not math.isfinite(max_stale):
            raise ValueError("need 0 < min_interval <= ttl <= max_stale")
        self._fetcher = fetcher
        self._clock = clock
        self._ttl = ttl
        self._min_interval = min_interval
        self._max_stale = max_stale
        self._set: KeySet | None = None
        self._last_attempt: float | None = None
        self._fetch_lock = threading.Lock()
        self.last_error = ""  # why the last read failed; "" after a success

    def check(self) -> None:
        """Read the keys now: the start-up check. Raises :class:`KeyFetchError`."""
        with self._fetch_lock:
            now = self._clock.monotonic()
            self._last_attempt = now
            self._store(now, *self._fetcher.fetch())

    def lookup(self, kid: str) -> tuple[str, Mapping[str, PyJWK] | None]:
        """The issuer and the verifiers of key ``kid``; None when a key set read after this
        call began has no such key. Raises :class:`KeysUnavailable` when no trustworthy key
        set is at hand, or the key is unknown and the keys cannot be read again yet."""
        current, now = self._set, self._clock.monotonic()
        verdict = True  # whether the set at hand may say "no such key"
        if current is None or now - current.fetched >= self._ttl or kid not in current.keys:
            with self._fetch_lock:  # one read at a time; the others use its result
                if self._set is current:
                    verdict = self._refresh(self._clock.monotonic())
                current = self._set
            now = self._clock.monotonic()
        if current is None or now - current.fetched > self._max_stale:
            raise KeysUnavailable("signing keys unavailable")
        verifiers = current.keys.get(kid)
        if verifiers is None and not verdict:
            raise KeysUnavailable("signing key not known yet")
        return current.issuer, verifiers

    def _refresh(self, now: float) -> bool:
        """Read the keys unless rate limited; whether a fresh set was stored."""
        if self._last_attempt is not None and now - self._last_attempt < self._min_interval:
            return False
        self._last_attempt = now
        try:
            self._store(now, *self._fetcher.fetch())
        except KeyFetchError as exc:
            self.last_error = str(exc)
            return False
        return True

    def _store(self, now: float, issuer: str, keys: Mapping[str, Mapping[str, PyJWK]]) -> None:
        self._set = KeySet(issuer, keys, now)
        self.last_error = ""


class KeysUnavailable(Exception):
    """No verdict possible now; the message is fixed text, safe to return to a sender."""
