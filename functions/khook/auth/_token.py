"""The two simple modes: no authentication, and a shared secret for clusters without Knative's
sender identity (the sender must be configured to add ``Authorization: Bearer <secret>``)."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping
from pathlib import Path

from khook.auth._base import ANONYMOUS, B64TOKEN, InvalidToken, Sender, bearer_token

MIN_SECRET_CHARS = 16  # a shorter shared secret can be guessed
MAX_SECRETS = 8  # accepted at once from the file, one per line (old and new while rotating)
_MAX_FILE_BYTES = 64 * 1024
TOKEN_SUBJECT = "token"  # noqa: S105 - the Sender's subject in token mode, not a secret


class NoAuth:
    """Everyone is ``anonymous``: for a khook that only trusted senders can reach."""

    mode = "none"

    def authenticate(self, headers: Mapping[str, str]) -> Sender:
        return ANONYMOUS


class SharedToken:
    """``Authorization: Bearer <secret>``, compared in constant time.

    The secret comes from the environment or from a file that is read again on every request,
    so a rotated Secret volume takes effect without a restart. The file may hold several
    secrets, one per line: during a rotation both the old and the new one are accepted. If the
    file becomes unreadable or empty, the last secrets read stay in force (a Secret volume is
    swapped atomically; a half-written file must not lock every sender out).
    """

    mode = "token"

    def __init__(self, secret: str = "", path: str = "") -> None:
        self._path = Path(path) if path else None
        self._lock = threading.Lock()
        self._digests: tuple[bytes, ...] = ()
        secrets = _load(self._path) if self._path is not None else _split(secret)
        if not secrets:
            raise ValueError("token auth needs KHOOK_AUTH_TOKEN or KHOOK_AUTH_TOKEN_FILE")
        self._digests = _digests(secrets)

    def authenticate(self, headers: Mapping[str, str]) -> Sender:
        given = _digest(bearer_token(headers))
        # Every accepted secret is compared, so the time taken says nothing about which one
        # (or how much of one) matched.
        matched = False
        for digest in self._current():
            matched |= hmac.compare_digest(given, digest)
        if not matched:
            raise InvalidToken("wrong token")
        return Sender(TOKEN_SUBJECT, self.mode)

    def _current(self) -> tuple[bytes, ...]:
        if self._path is None:
            return self._digests
        secrets = _read_secrets(self._path)
        with self._lock:
            if secrets is not None:
                self._digests = _digests(secrets)
            return self._digests


def _read_secrets(path: Path) -> tuple[str, ...] | None:
    """The secrets in the file now, or None if it cannot be used as it is."""
    try:
        return _load(path) or None
    except ValueError:
        return None


def _load(path: Path) -> tuple[str, ...]:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the auth token file {path}: {exc.strerror}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"the auth token file {path} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        return _split(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"the auth token file {path} is not UTF-8") from None


def _split(text: str) -> tuple[str, ...]:
    secrets = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(secrets) > MAX_SECRETS:
        raise ValueError(f"at most {MAX_SECRETS} auth tokens at once")
    for secret in secrets:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"an auth token must have at least {MIN_SECRET_CHARS} characters")
        if not B64TOKEN.fullmatch(secret):
            # A header carrying it would be refused as malformed before any comparison.
            raise ValueError("an auth token may hold only letters, digits and -._~+/ (then =)")
    return secrets


def _digests(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(_digest(s) for s in secrets)


def _digest(secret: str) -> bytes:
    # Hashing first makes the comparison independent of the secret's length too.
    return hashlib.sha256(secret.encode("utf-8")).digest()
