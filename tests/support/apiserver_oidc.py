"""The API server double's service-account token issuer: OIDC discovery and JWKS served the way
a real kube-apiserver serves them, for keys the tests control, and tokens minted the way its
TokenRequest API mints them (what Knative's sources and Triggers send).

    with APIServer() as server:
        token = server.issuer.token("system:serviceaccount:ns:sa", "my-audience", now=clock.now())
        server.issuer.add_key("EC")            # a second key, published in the JWK set
        server.issuer.forbidden = True         # RBAC refuses the discovery paths: 403

kube-apiserver (pkg/serviceaccount/openidmetadata.go, pkg/routes/openidmetadata.go) serves
``GET /.well-known/openid-configuration`` (application/json) and ``GET /openid/v1/jwks``
(application/jwk-set+json), both ``Cache-Control: public, max-age=3600``; a key's ``kid`` is the
unpadded base64url SHA-256 of its DER public key; RBAC allows both paths to the ClusterRole
``system:service-account-issuer-discovery``, which by default is bound to every ServiceAccount.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
ISSUER_PATHS = (DISCOVERY_PATH, JWKS_PATH)
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CACHE_CONTROL = "public, max-age=3600"
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_CRV = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


@dataclass(frozen=True)
class SigningKey:
    private: PrivateKey
    algorithm: str  # RS256, ES256, ...

    @property
    def kid(self) -> str:
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return _b64(hashlib.sha256(der).digest())

    def jwk(self) -> dict[str, str]:
        """The public key as the API server publishes it (field order included)."""
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            return {
                "use": "sig",
                "kty": "RSA",
                "kid": self.kid,
                "alg": self.algorithm,
                "n": _uint(numbers.n),
                "e": _uint(numbers.e),
            }
        point = public.public_numbers()
        size = (public.curve.key_size + 7) // 8
        return {
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": _CRV[self.algorithm],
            "alg": self.algorithm,
            "x": _b64(point.x.to_bytes(size, "big")),
            "y": _b64(point.y.to_bytes(size, "big")),
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_key(algorithm: str = "RS256", bits: int = 2048) -> SigningKey:
    if algorithm in _CURVES:
        return SigningKey(ec.generate_private_key(_CURVES[algorithm]()), algorithm)
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=bits), algorithm)


class Issuer:
    """The cluster's ServiceAccount token issuer. Its first key (RSA, like a kubeadm cluster's)
    is made when first needed, so servers whose tests never ask for tokens pay nothing."""

    def __init__(self, url: str = DEFAULT_ISSUER) -> None:
        self.url = url
        self.enabled = True  # False: a server without issuer discovery (404)
        self.forbidden = False  # True: RBAC refuses the discovery paths (403)
        self.fault: int | None = None  # answer every discovery request with this status
        self._lock = threading.Lock()
        self._keys: list[SigningKey] | None = None

    # -- keys ------------------------------------------------------------------------------

    @property
    def keys(self) -> list[SigningKey]:
        with self._lock:
            if self._keys is None:
                self._keys = [generate_key("RS256")]
            return list(self._keys)

    @property
    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with: the newest one, as after a key rotation."""
        return self.keys[-1]

    def add_key(self, algorithm: str = "RS256") -> SigningKey:
        key = generate_key(algorithm)
        self.keys  # noqa: B018 - make the first key before adding the next one
        with self._lock:
            assert self._keys is not None
            self._keys.append(key)
        return key

    def remove_key(self, key: SigningKey) -> None:
        with self._lock:
            assert self._keys is not None
            self._keys = [k for k in self._keys if k.kid != key.kid]

    # -- tokens ----------------------------------------------------------------------------

    def token(
        self,
        subject: str,
        audience: str | list[str],
        *,
        now: datetime,
        lifetime: float = 3600,
        key: SigningKey | None = None,
        claims: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A token as ``TokenRequest`` issues it for a ServiceAccount (no pod binding).
        ``claims`` and ``headers`` replace or add fields (None as a value removes one)."""
        key = key or self.signing_key
        issued = int(now.timestamp())
        body: dict[str, Any] = {
            "aud": [audience] if isinstance(audience, str) else audience,
            "exp": issued + int(lifetime),
            "iat": issued,
            "iss": self.url,
            "jti": str(uuid.uuid4()),
            "nbf": issued,
            "sub": subject,
        }
        parts = subject.split(":")
        if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
            body["kubernetes.io"] = {
                "namespace": parts[2],
                "serviceaccount": {"name": parts[3], "uid": str(uuid.uuid4())},
            }
        for name, value in (claims or {}).items():
            if value is None:
                body.pop(name, None)
            else:
                body[name] = value
        header = {"kid": key.kid, **(headers or {})}
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(body, key.private, algorithm=key.algorithm, headers=header)

    # -- HTTP ------------------------------------------------------------------------------

    def discovery(self, jwks_uri: str) -> dict[str, Any]:
        algorithms = sorted({k.algorithm for k in self.keys})
        return {
            "issuer": self.url,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algorithms,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys]}

    def serve(self, method: str, path: str, host: str) -> tuple[int, str, bytes]:
        """Status, Content-Type and body of the answer to a request for ``path``."""
        if method != "GET":
            return _status(405, "MethodNotAllowed", "the server does not allow this method")
        if self.fault is not None:
            return _status(self.fault, "InternalError", "Internal error occurred: injected")
        if self.forbidden:
            message = f'forbidden: User "system:anonymous" cannot get path "{path}"'
            return _status(403, "Forbidden", message)
        if not self.enabled:
            return 404, "text/plain; charset=utf-8", b"404 page not found\n"
        if path == DISCOVERY_PATH:
            document = self.discovery(f"http://{host}{JWKS_PATH}")
            return 200, "application/json", json.dumps(document).encode()
        return 200, "application/jwk-set+json", json.dumps(self.jwks()).encode()


def _status(code: int, reason: str, message: str) -> tuple[int, str, bytes]:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {},
        "code": code,
    }
    return code, "application/json", json.dumps(body).encode()
