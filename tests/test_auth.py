"""Sender authentication with real signed tokens: the API double publishes the cluster's OIDC
discovery and JWKS for keys these tests generate, khook reads them with the official client,
and every token here is signed (or forged) for real. Time is the FakeClock's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import kubernetes.client
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from khook.auth import (
    Authenticator,
    AuthError,
    Sender,
    build_authenticator,
)
from khook.auth._oidc import VerifiedTokens
from khook.settings import Settings
from tests.support.apiserver import APIServer
from tests.support.apiserver_oidc import JWKS_PATH, generate_key
from tests.support.clock import FakeClock

AUDIENCE = "serving.knative.dev/service/khook-system/khook"
SOURCE = "system:serviceaccount:khook-system:khook-oidc-sources.knative.dev-apiserversource"
TRIGGER = "system:serviceaccount:khook-system:khook-workloads-oidc-eventing.knative.dev-trigger"
SECRET = "s3cr3t-0123456789abcdef"
# The documented limits, as numbers: a change to one of them must change these tests too.
LEEWAY = 60  # seconds of clock skew on exp, nbf and iat
VERIFIED_TTL = 60  # seconds a verified token is remembered
KEYS_TTL = 300  # seconds a key set is used before it is read again
MIN_REFRESH_INTERVAL = 1  # seconds between two reads of the keys
MAX_STALE = 3600  # seconds a key set that cannot be refreshed stays trusted
MAX_TOKEN_BYTES = 16 * 1024


@pytest.fixture
def server() -> Iterator[APIServer]:
    with APIServer() as running:
        yield running


def oidc(server: APIServer, clock: FakeClock, **overrides: Any) -> Authenticator:
    values: dict[str, Any] = {"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": SOURCE}
    values.update(overrides)
    return build_authenticator(Settings.coerce(values), server.api_client(), clock)


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def refused(auth: Authenticator, headers: dict[str, str]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.authenticate(headers)
    return caught.value


def jwks_reads(server: APIServer) -> int:
    return len(server.calls(path=JWKS_PATH))


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---- the API double serves discovery and keys like kube-apiserver ------------------------------


def test_the_double_serves_discovery_and_jwks_through_the_official_client(
    server: APIServer,
) -> None:
    api = server.api_client()
    # (The client's "str" answers are str() of the parsed JSON: read the raw body instead.)
    discovery = json.loads(
        kubernetes.client.WellKnownApi(api)
        .get_service_account_issuer_open_id_configuration(_preload_content=False)
        .data
    )
    assert discovery["issuer"] == server.issuer.url
    assert discovery["jwks_uri"] == f"{server.url}{JWKS_PATH}"
    assert discovery["id_token_signing_alg_values_supported"] == ["RS256"]
    raw = kubernetes.client.OpenidApi(api).get_service_account_issuer_open_id_keyset(
        _preload_content=False
    )
    assert raw.headers["Content-Type"] == "application/jwk-set+json"
    assert raw.headers["Cache-Control"] == "public, max-age=3600"
    (key,) = json.loads(raw.data)["keys"]
    assert (key["use"], key["kty"], key["alg"], key["e"]) == ("sig", "RSA", "RS256", "AQAB")
    # kid: the unpadded base64url SHA-256 of the DER public key, as kube-apiserver derives it.
    der = server.issuer.signing_key.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key["kid"] == b64(hashlib.sha256(der).digest())
    assert [(r.verb, r.resource, r.status) for r in server.requests] == [("get", "", 200)] * 2


def test_the_double_answers_like_rbac_and_like_a_server_without_discovery(
    server: APIServer,
) -> None:
    well_known = kubernetes.client.WellKnownApi(server.api_client())
    server.issuer.forbidden = True
    with pytest.raises(kubernetes.client.ApiException) as forbidden:
        well_known.get_service_account_issuer_open_id_configuration()
    assert forbidden.value.status == 403
    assert json.loads(forbidden.value.body)["reason"] == "Forbidden"
    server.issuer.forbidden, server.issuer.enabled = False, False
    with pytest.raises(kubernetes.client.ApiException) as missing:
        well_known.get_service_account_issuer_open_id_configuration()
    assert missing.value.status == 404


# ---- oidc: tokens that must pass -------------------------------------------------------------


def test_a_source_token_is_accepted_and_the_keys_are_read_once(
    server: APIServer, clock: FakeClock
) -> None:
    auth = oidc(server, clock)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now())
    assert auth.authenticate(bearer(token)) == Sender(SOURCE, "oidc")
    assert auth.authenticate({"Authorization": f"bearer  {token}"}) == Sender(SOURCE, "oidc")
    clock.advance(VERIFIED_TTL + 1)  # no longer remembered: verified again, same keys
    assert auth.authenticate(bearer(token)).subject == SOURCE
    paths = [r.path for r in server.requests]
    assert paths == ["/.well-known/openid-configuration", JWKS_PATH]


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256", "ES256", "ES384", "ES512"])
def test_every_algorithm_a_cluster_may_sign_with(
    server: APIServer, clock: FakeClock, algorithm: str
) -> None:
    key = server.issuer.add_key(algorithm)
    auth = oidc(server, clock)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=key)
    assert auth.authenticate(bearer(token)).subject == SOURCE


def test_the_broker_path_sends_the_triggers_identity_and_a_prefix_may_allow_both_triggers(
    server: APIServer, clock: FakeClock
) -> None:
    auth = oidc(server, clock, auth_senders="system:serviceaccount:khook-system:khook-*")
    nodes = TRIGGER.replace("khook-workloads", "khook-nodes")
    for subject in (TRIGGER, nodes):
        token = server.issuer.token(subject, ["other", AUDIENCE], now=clock.now())
        assert auth.authenticate(bearer(token)).subject == subject
    stranger = server.issuer.token(
        "system:serviceaccount:team-a:khook-x", AUDIENCE, now=clock.now()
    )
    error = refused(auth, bearer(stranger))
    assert error.status == 403


def test_clock_skew_within_the_leeway_is_tolerated(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    issuer_ahead = clock.now() + timedelta(seconds=LEEWAY - 1)
    ahead = server.issuer.token(SOURCE, AUDIENCE, now=issuer_ahead)
    assert auth.authenticate(bearer(ahead)).subject == SOURCE
    too_far = server.issuer.token(SOURCE, AUDIENCE, now=issuer_ahead + timedelta(seconds=2))
    assert refused(auth, bearer(too_far)).reason == "token not yet valid"
    clock.advance(LEEWAY - 1 + 3600 + LEEWAY - 1)  # just inside exp + leeway
    assert auth.authenticate(bearer(ahead)).subject == SOURCE


# ---- oidc: tokens that must fail -------------------------------------------------------------


def test_an_expired_token_is_refused(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), lifetime=600)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    clock.advance(600 + LEEWAY - 1)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    clock.advance(1)
    error = refused(auth, bearer(token))
    assert (error.status, error.reason) == (401, "token expired")
    assert (
        error.www_authenticate == 'Bearer error="invalid_token", error_description="token expired"'
    )


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_not_valid_yet_is_refused(server: APIServer, clock: FakeClock, claim: str) -> None:
    auth = oidc(server, clock)
    later = int(clock.now().timestamp() + LEEWAY + 5)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), claims={claim: later})
    assert refused(auth, bearer(token)).reason == "token not yet valid"
    clock.advance(5)
    assert auth.authenticate(bearer(token)).subject == SOURCE


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": ["khook"]}, "wrong audience"),
        ({"aud": None}, "wrong audience"),
        ({"aud": AUDIENCE.upper()}, "wrong audience"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"iss": "kubernetes/serviceaccount", "exp": None}, "wrong issuer"),  # a legacy token
        ({"exp": None}, "token has no expiry"),
        ({"exp": "2099-01-01"}, "token has no expiry"),
        ({"exp": float("inf")}, "token has no expiry"),
        ({"exp": True}, "token has no expiry"),
        ({"nbf": "now"}, "malformed time claims"),
        ({"sub": None}, "token names no subject"),
        ({"sub": ""}, "token names no subject"),
    ],
)
def test_claims_that_do_not_hold_are_refused(
    server: APIServer, clock: FakeClock, claims: dict[str, Any], reason: str
) -> None:
    auth = oidc(server, clock)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), claims=claims)
    error = refused(auth, bearer(token))
    assert (error.status, error.reason) == (401, reason)


def test_a_token_signed_by_another_key_is_refused(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    published = server.issuer.signing_key
    impostor = generate_key("RS256")
    token = server.issuer.token(
        SOURCE, AUDIENCE, now=clock.now(), key=impostor, headers={"kid": published.kid}
    )
    assert refused(auth, bearer(token)).reason == "bad signature"
    clock.advance(MIN_REFRESH_INTERVAL)
    own_kid = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=impostor)
    assert refused(auth, bearer(own_kid)).reason == "unknown signing key"


def test_an_unsigned_token_is_refused(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    genuine = server.issuer.token(SOURCE, AUDIENCE, now=clock.now())
    payload = genuine.split(".")[1]
    for alg in ("none", "None", "NONE", ""):
        header = b64({"alg": alg, "kid": server.issuer.signing_key.kid})
        for signature in ("", genuine.split(".")[2]):
            error = refused(auth, bearer(f"{header}.{payload}.{signature}"))
            assert error.status == 401
            assert error.reason in ("signing algorithm not allowed", "malformed bearer token")
    library_made = jwt.encode({"sub": SOURCE}, None, algorithm="none", headers={"kid": "x"})
    assert refused(auth, bearer(library_made)).status == 401


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_public_key_is_refused(
    server: APIServer, clock: FakeClock, alg: str
) -> None:
    """Algorithm confusion: the public key (PEM or its JWK) used as the HMAC secret."""
    auth = oidc(server, clock)
    key = server.issuer.signing_key
    now = int(clock.now().timestamp())
    claims = {"aud": [AUDIENCE], "exp": now + 600, "iat": now, "iss": server.issuer.url}
    claims["sub"] = SOURCE
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    for secret in (key.public_pem(), json.dumps(key.jwk()).encode()):
        signing_input = f"{b64({'alg': alg, 'kid': key.kid})}.{b64(claims)}"
        signature = hmac.new(secret, signing_input.encode(), digest).digest()
        error = refused(auth, bearer(f"{signing_input}.{b64(signature)}"))
        assert (error.status, error.reason) == (401, "signing algorithm not allowed")


def test_an_algorithm_that_does_not_fit_the_key_is_refused(
    server: APIServer, clock: FakeClock
) -> None:
    auth = oidc(server, clock)
    ec = server.issuer.add_key("ES256")
    clock.advance(MIN_REFRESH_INTERVAL)
    # An ES256 key named in an RS256 header (and the RSA key, published as RS256, for PS256).
    mismatched = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=ec)
    _, payload, signature = mismatched.split(".")
    relabelled = b64({"alg": "ES384", "kid": ec.kid})
    assert refused(auth, bearer(f"{relabelled}.{payload}.{signature}")).reason == (
        "algorithm does not match the signing key"
    )
    rsa = server.issuer.keys[0]
    token = jwt.encode({"sub": SOURCE}, rsa.private, algorithm="PS256", headers={"kid": rsa.kid})
    assert refused(auth, bearer(token)).reason == "algorithm does not match the signing key"


def test_critical_header_extensions_are_refused(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    token = server.issuer.token(
        SOURCE, AUDIENCE, now=clock.now(), headers={"crit": ["exp"], "exp": 1}
    )
    assert refused(auth, bearer(token)).reason == "unsupported critical header"


def test_a_sender_not_on_the_allow_list_is_forbidden(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    for subject in (TRIGGER, "system:serviceaccount:team-a:default", SOURCE + "x"):
        token = server.issuer.token(subject, AUDIENCE, now=clock.now())
        error = refused(auth, bearer(token))
        assert (error.status, error.reason) == (403, f"sender {subject} is not allowed")
        assert error.www_authenticate == 'Bearer error="insufficient_scope"'


# ---- oidc: keys, rotation, refresh and its rate limit ----------------------------------------


def test_a_new_signing_key_is_fetched_on_first_sight(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    assert jwks_reads(server) == 1
    rotated = server.issuer.add_key("RS256")
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=rotated)
    # The keys were read a moment ago: no verdict yet, but a status Knative retries.
    error = refused(auth, bearer(token))
    assert (error.status, error.reason) == (503, "signing key not known yet")
    assert error.www_authenticate == ""
    assert jwks_reads(server) == 1
    clock.advance(MIN_REFRESH_INTERVAL)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    assert jwks_reads(server) == 2


def test_made_up_key_ids_cannot_hammer_the_api_server(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    forger = generate_key("ES256")
    statuses: list[int] = []
    for second in range(5):
        clock.advance(MIN_REFRESH_INTERVAL)
        for n in range(40):
            token = server.issuer.token(
                SOURCE, AUDIENCE, now=clock.now(), key=forger, headers={"kid": f"k{second}-{n}"}
            )
            statuses.append(refused(auth, bearer(token)).status)
    assert jwks_reads(server) == 1 + 5  # start-up, then one per interval
    assert statuses.count(401) == 5 and set(statuses) == {401, 503}


def test_concurrent_requests_share_one_refresh(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    rotated = server.issuer.add_key("ES384")
    clock.advance(MIN_REFRESH_INTERVAL)
    tokens = [server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=rotated)] * 16
    results: list[object] = []

    def send(token: str) -> None:
        try:
            results.append(auth.authenticate(bearer(token)))
        except AuthError as exc:
            results.append(exc)

    threads = [threading.Thread(target=send, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [Sender(SOURCE, "oidc")] * 16
    assert jwks_reads(server) == 2


def test_a_removed_key_is_refused_once_the_key_set_is_read_again(
    server: APIServer, clock: FakeClock
) -> None:
    auth = oidc(server, clock)
    old = server.issuer.signing_key
    new = server.issuer.add_key("RS256")
    clock.advance(MIN_REFRESH_INTERVAL)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=old)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    server.issuer.remove_key(old)
    clock.advance(VERIFIED_TTL)  # cached keys still trust it
    assert auth.authenticate(bearer(token)).subject == SOURCE
    clock.advance(KEYS_TTL)  # read again: gone
    assert refused(auth, bearer(token)).reason == "unknown signing key"
    fresh = server.issuer.token(SOURCE, AUDIENCE, now=clock.now(), key=new)
    assert auth.authenticate(bearer(fresh)).subject == SOURCE


def test_an_api_server_that_cannot_answer_gets_503_never_401(
    server: APIServer, clock: FakeClock
) -> None:
    server.issuer.fault = 503
    auth = oidc(server, clock)  # starts: the keys are read later
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now())
    error = refused(auth, bearer(token))
    assert (error.status, error.reason) == (503, "signing keys unavailable")
    server.issuer.fault = None
    clock.advance(MIN_REFRESH_INTERVAL)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    # Down again: the last key set stays trusted for MAX_STALE, then 503.
    server.issuer.fault = 500
    clock.advance(KEYS_TTL)
    assert auth.authenticate(bearer(token)).subject == SOURCE
    clock.advance(MAX_STALE - KEYS_TTL + 1)
    late = server.issuer.token(SOURCE, AUDIENCE, now=clock.now())
    assert refused(auth, bearer(late)).status == 503


def test_an_unreachable_api_server_gets_503(clock: FakeClock) -> None:
    with APIServer() as down:
        api = down.api_client()
        issuer = down.issuer
    settings = Settings.coerce({"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": SOURCE})
    auth = build_authenticator(settings, api, clock)
    error = refused(auth, bearer(issuer.token(SOURCE, AUDIENCE, now=clock.now())))
    assert (error.status, error.reason) == (503, "signing keys unavailable")


# ---- headers: malformed, oversized, hostile --------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({}, 401, "missing bearer token"),
        ({"authorization": ""}, 401, "missing bearer token"),
        ({"authorization": "Bearer"}, 401, "missing bearer token"),
        ({"authorization": "Bearer    "}, 401, "missing bearer token"),
        ({"authorization": "Basic a2hvb2s6cGFzcw=="}, 401, "authorization is not a bearer token"),
        ({"authorization": "Bearer a b"}, 401, "malformed bearer token"),
        ({"authorization": "Bearer ü.ü.ü"}, 401, "malformed bearer token"),
        ({"authorization": "Bearer a.b"}, 401, "not a JWT"),
        ({"authorization": "Bearer a.b.c.d"}, 401, "not a JWT"),
        ({"authorization": "Bearer !!!.b.c"}, 401, "malformed bearer token"),
        ({"authorization": "Bearer e30+.b.c"}, 401, "malformed token"),
        ({"authorization": f"Bearer {b64(b'[1]')}.b.c"}, 401, "malformed token"),
        ({"authorization": f"Bearer {b64(b'{')}.b.c"}, 401, "malformed token"),
        ({"authorization": f"Bearer {b64(b'[' * 2000)}.b.c"}, 401, "malformed token"),
        ({"authorization": f"Bearer {'a' * 5000}.b.c"}, 401, "token header too large"),
        (
            {"authorization": f"Bearer {b64({'alg': 'RS256'})}.b.c"},
            401,
            "token names no signing key",
        ),
        (
            {"authorization": f"Bearer {b64({'alg': 'RS256', 'kid': 7})}.b.c"},
            401,
            "token names no signing key",
        ),
        (
            {"authorization": "Bearer " + "a" * (MAX_TOKEN_BYTES + 1)},
            401,
            f"token longer than {MAX_TOKEN_BYTES} bytes",
        ),
        ({"authorization": "Bearer " + "a" * 100_000}, 401, "authorization header longer than"),
    ],
)
def test_malformed_and_oversized_headers_are_401(
    server: APIServer, clock: FakeClock, headers: dict[str, str], status: int, reason: str
) -> None:
    auth = oidc(server, clock)
    error = refused(auth, headers)
    assert error.status == status and error.reason.startswith(reason)
    assert len(error.reason) < 100


def test_any_header_casing_of_a_plain_mapping(server: APIServer, clock: FakeClock) -> None:
    auth = oidc(server, clock)
    token = server.issuer.token(SOURCE, AUDIENCE, now=clock.now())
    for name in ("authorization", "Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"):
        assert auth.authenticate({"x-other": "1", name: f"Bearer {token}"}).subject == SOURCE


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[Authenticator]:
    with APIServer() as server:
        yield oidc(server, FakeClock())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
_HEADER = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "ES256", "HS256", "none", ""]) | _JSON,
        "kid": st.text(max_size=40) | _JSON,
        "crit": _JSON,
    },
)
_JWT_SHAPED = st.builds(
    lambda header, claims, signature: f"Bearer {b64(header)}.{b64(claims)}.{b64(signature)}",
    _HEADER | _JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["aud", "exp", "iss", "sub", "nbf"]), _JSON),
    st.binary(max_size=300),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.text(max_size=300)
    | st.from_regex(r"Bearer [A-Za-z0-9_\-.=+/]{0,300}", fullmatch=True)
    | _JWT_SHAPED
)
def test_no_header_value_raises_anything_but_auth_error(fuzzed: Authenticator, value: str) -> None:
    with pytest.raises(AuthError) as caught:
        fuzzed.authenticate({"authorization": value})
    assert caught.value.status in (401, 503)
    assert len(value) < 10 or value.strip() not in caught.value.reason


# ---- the verified-token cache ----------------------------------------------------------------


def test_verified_tokens_are_remembered_briefly_never_past_exp_and_bounded() -> None:
    cache = VerifiedTokens(ttl=60, size=2)
    cache.put(b"a", "sa-a", expires=1000.0, monotonic=0.0)
    assert cache.get(b"a", now=999.0, monotonic=59.0) == "sa-a"
    assert cache.get(b"a", now=1000.0, monotonic=1.0) is None  # its exp
    cache.put(b"b", "sa-b", expires=5000.0, monotonic=0.0)
    assert cache.get(b"b", now=0.0, monotonic=60.0) is None  # its ttl
    for key in (b"c", b"d", b"e"):
        cache.put(key, key.decode(), expires=5000.0, monotonic=0.0)
    assert len(cache) == 2 and cache.get(b"c", now=0.0, monotonic=0.0) is None


# ---- none and token modes --------------------------------------------------------------------


def test_none_lets_everyone_in_as_anonymous(clock: FakeClock) -> None:
    auth = build_authenticator(Settings(), None, clock)
    assert auth.authenticate({}) == Sender("anonymous", "none")
    assert auth.authenticate({"authorization": "Bearer garbage"}).subject == "anonymous"


def test_token_mode_right_wrong_and_missing(clock: FakeClock) -> None:
    settings = Settings.from_env({"KHOOK_AUTH": "token", "KHOOK_AUTH_TOKEN": SECRET})
    auth = build_authenticator(settings, None, clock)
    assert auth.authenticate(bearer(SECRET)) == Sender("token", "token")
    wrong = refused(auth, bearer(SECRET[:-1] + "0"))
    assert (wrong.status, wrong.reason) == (401, "wrong token")
    assert refused(auth, bearer(SECRET + "0")).reason == "wrong token"
    missing = refused(auth, {})
    assert (missing.status, missing.www_authenticate) == (401, 'Bearer realm="khook"')


def test_token_mode_rereads_the_file_so_rotation_works(tmp_path: Path, clock: FakeClock) -> None:
    old, new = "old-secret-0123456789", "new-secret-0123456789"
    path = tmp_path / "token"
    path.write_text(old + "\n")
    settings = Settings.coerce({"auth": "token", "auth_token_file": str(path)})
    auth = build_authenticator(settings, None, clock)
    assert auth.authenticate(bearer(old)).subject == "token"
    path.write_text(f"{old}\n{new}\n")  # rotation: both for a while
    assert auth.authenticate(bearer(old)) == auth.authenticate(bearer(new))
    path.write_text(new)
    assert refused(auth, bearer(old)).status == 401
    assert auth.authenticate(bearer(new)).subject == "token"
    for broken in ("", "short", "x" * 70_000):
        path.write_text(broken)  # unusable: the last secrets read stay in force
        assert auth.authenticate(bearer(new)).subject == "token"
    path.unlink()
    assert auth.authenticate(bearer(new)).subject == "token"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": "token"}, "KHOOK_AUTH_TOKEN"),
        ({"auth": "token", "auth_token": "short"}, "at least 16"),
        ({"auth": "token", "auth_token": "has spaces in it, 16+"}, "only letters"),
        ({"auth": "token", "auth_token_file": "/nonexistent/token"}, "cannot read"),
        ({"auth": "oidc", "auth_senders": SOURCE}, "KHOOK_AUTH_AUDIENCE"),
        ({"auth": "oidc", "auth_audience": AUDIENCE}, "KHOOK_AUTH_SENDERS"),
        ({"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": "*"}, "system:service"),
        (
            {"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": "system:serviceaccount:*"},
            "within one namespace",
        ),
        (
            {"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": "system:serviceaccounts"},
            "system:serviceaccount:<namespace>:<name>",
        ),
        (
            {"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": SOURCE + "*x"},
            "within one namespace",
        ),
    ],
)
def test_configurations_that_cannot_work_fail_at_start(
    clock: FakeClock, values: dict[str, Any], message: str
) -> None:
    with APIServer() as server, pytest.raises(ValueError, match=message.replace("*", r"\*")):
        build_authenticator(Settings.coerce(values), server.api_client(), clock)


def test_oidc_needs_a_cluster_and_permission_to_read_its_keys(
    server: APIServer, clock: FakeClock
) -> None:
    settings = Settings.coerce({"auth": "oidc", "auth_audience": AUDIENCE, "auth_senders": SOURCE})
    with pytest.raises(ValueError, match="connection to the Kubernetes API"):
        build_authenticator(settings, None, clock)
    server.issuer.forbidden = True
    with pytest.raises(ValueError, match="system:service-account-issuer-discovery"):
        build_authenticator(settings, server.api_client(), clock)
    server.issuer.forbidden, server.issuer.enabled = False, False
    with pytest.raises(ValueError, match="404"):
        build_authenticator(settings, server.api_client(), clock)


def test_unknown_mode_is_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="unknown auth mode"):
        build_authenticator(Settings(auth="ldap"), None, clock)


# ---- secrecy ---------------------------------------------------------------------------------


@pytest.fixture
def khook_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of khook's loggers, even after khook.logs.configure() stopped them
    propagating to the root logger (where caplog listens)."""
    logger = logging.getLogger("khook")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG, logger="khook")
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def test_no_token_reaches_a_reason_or_a_log(
    server: APIServer, clock: FakeClock, khook_logs: pytest.LogCaptureFixture
) -> None:
    caplog = khook_logs
    server.issuer.fault = 503
    auth = oidc(server, clock)  # logs that the keys cannot be read yet
    tokens = [
        server.issuer.token(SOURCE, AUDIENCE, now=clock.now()),
        server.issuer.token(SOURCE, "elsewhere", now=clock.now()),
    ]
    server.issuer.fault = None
    reasons = []
    for token in tokens:
        clock.advance(MIN_REFRESH_INTERVAL)
        try:
            auth.authenticate(bearer(token))
        except AuthError as exc:
            reasons += [exc.reason, str(exc), exc.www_authenticate]
    shared = build_authenticator(Settings(auth="token", auth_token=SECRET), None, clock)
    for value in (SECRET + "1", SECRET[:20]):
        tokens.append(value)
        try:
            shared.authenticate(bearer(value))
        except AuthError as exc:
            reasons += [exc.reason, str(exc)]
    assert reasons and caplog.records
    for token in (*tokens, SECRET):
        for text in (*reasons, caplog.text):
            assert token not in text and token.split(".")[-1] not in text
    assert SECRET not in repr(Settings(auth="token", auth_token=SECRET))
