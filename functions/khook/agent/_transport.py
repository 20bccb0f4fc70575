"""HTTP to Kagent: one bounded, keep-alive connection pool per client (safe to share between
threads), every request under the call's deadline and every answer read under a size cap.

httpcore directly rather than httpx: its network backend is a public seam, which is where the
deadline is enforced (see ``_deadline``), and the URL is assembled here from validated parts.
No proxy from the environment is used: Kagent is called directly.
"""

from __future__ import annotations

import base64
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

import httpcore

from khook import __version__
from khook.agent._deadline import DeadlineBackend, deadline
from khook.agent._protocol import AgentError, excerpt

ERROR_BODY_BYTES = 4096  # of a non-2xx answer, only this much is read (for the message)
KEEPALIVE_SECONDS = 5.0  # an idle connection is closed after this (uvicorn's default)
USER_AGENT = f"khook/{__version__}"
_PHASES: dict[type[Exception], str] = {
    httpcore.ConnectTimeout: " connecting",
    httpcore.WriteTimeout: " sending the request",
    httpcore.ReadTimeout: " waiting for or reading the answer",
    httpcore.PoolTimeout: " waiting for a free connection",
}


@dataclass(frozen=True)
class Origin:
    """Where Kagent is: scheme, host, port and an optional path prefix; never credentials in
    what is shown (a ``user:password@`` in the URL becomes Basic authentication)."""

    scheme: str
    host: str
    port: int
    prefix: str
    basic: str | None = None

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """Raises ValueError for a URL khook cannot call (checked at start-up)."""
        parts = urllib.parse.urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"agent URL must be http:// or https://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("agent URL has no host")
        if not parts.hostname.isascii():
            raise ValueError("agent URL host must be ASCII (use its punycode form)")
        if parts.query or parts.fragment:
            raise ValueError("agent URL must not have a query or fragment")
        port = parts.port or (443 if parts.scheme == "https" else 80)  # ValueError if bad
        prefix = parts.path.rstrip("/")
        if any(not "!" <= c <= "~" for c in prefix):
            raise ValueError("agent URL path must be printable ASCII without spaces")
        basic = None
        if parts.username is not None:
            pair = f"{urllib.parse.unquote(parts.username)}:"
            pair += urllib.parse.unquote(parts.password or "")
            basic = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        return cls(parts.scheme, parts.hostname, port, prefix, basic)

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def url(self, path: str) -> str:
        """The URL of ``path``, as shown in errors and logs (no credentials)."""
        return f"{self.scheme}://{self.authority}{self.prefix}{path}"


def check_agent_url(base_url: str) -> None:
    """Raise ValueError unless khook can call Kagent at ``base_url`` (for start-up checks)."""
    Origin.parse(base_url)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    complete: bool  # False: the body was over the limit and was not read further


class Transport:
    def __init__(self, origin: Origin, *, max_connections: int) -> None:
        self.origin = origin
        self._pool = httpcore.ConnectionPool(
            # Certificates as httpx finds them (certifi, or SSL_CERT_FILE / SSL_CERT_DIR).
            ssl_context=_ssl_context() if origin.scheme == "https" else None,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
            http1=True,
            http2=False,
            retries=0,  # khook's own retry loop decides, under the deadline
            network_backend=DeadlineBackend(),
        )

    def request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        until: float,
        limit: int,
    ) -> Answer:
        """One HTTP exchange that ends by ``until`` (``time.monotonic()``) whatever the peer
        does; reads at most ``limit`` bytes of a 2xx body. Raises AgentError naming the URL."""
        shown = f"{method} {self.origin.url(path)}"
        left = until - time.monotonic()
        if left <= 0:
            raise AgentError(f"{shown}: timed out (no time left)", retryable=True, kind="timeout")
        wire = [
            (b"Host", self.origin.authority.encode("ascii")),
            (b"User-Agent", USER_AGENT.encode("ascii")),
            (b"Accept-Encoding", b"identity"),  # nothing to inflate: the cap is on real bytes
        ]
        if self.origin.basic and "authorization" not in {k.lower() for k in headers}:
            wire.append((b"Authorization", self.origin.basic.encode("ascii")))
        wire += [(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()]
        target = httpcore.URL(
            scheme=self.origin.scheme.encode("ascii"),
            host=self.origin.host.encode("ascii"),
            port=self.origin.port,
            target=(self.origin.prefix + path).encode("ascii"),
        )
        timeouts = dict.fromkeys(("connect", "read", "write", "pool"), left)
        try:
            with (
                deadline(until),
                self._pool.stream(
                    method,
                    target,
                    headers=wire,
                    content=body,
                    extensions={"timeout": timeouts},
                ) as response,
            ):
                return _read(response, limit)
        except httpcore.TimeoutException as exc:
            phase = _PHASES.get(type(exc), "")
            raise AgentError(f"{shown}: timed out{phase}", retryable=True, kind="timeout") from exc
        except httpcore.ConnectError as exc:
            raise AgentError(
                f"{shown}: cannot reach the agent: {_what(exc)}", retryable=True, kind="connection"
            ) from exc
        except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
            # Includes a kept-alive connection the agent had closed: worth another attempt.
            raise AgentError(
                f"{shown}: connection failed: {_what(exc)}", retryable=True, kind="connection"
            ) from exc
        except (httpcore.LocalProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise AgentError(
                f"{shown}: cannot send: {_what(exc)}", retryable=False, kind="refused"
            ) from exc

    def close(self) -> None:
        self._pool.close()


def _ssl_context() -> ssl.SSLContext:
    """httpx's default context (its CA bundle): imported only for an https agent."""
    import httpx  # noqa: PLC0415

    return httpx.create_ssl_context()


def _read(response: httpcore.Response, limit: int) -> Answer:
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
    if not 200 <= response.status < 300:
        limit = min(limit, ERROR_BODY_BYTES)
    declared = headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        return Answer(response.status, headers, b"", complete=False)  # not one byte read
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_stream():
        size += len(chunk)
        if size > limit:
            # Leaving the stream unread closes the connection: it is not reused.
            return Answer(response.status, headers, b"".join(chunks), complete=False)
        chunks.append(chunk)
    return Answer(response.status, headers, b"".join(chunks), complete=True)


def _what(exc: Exception) -> str:
    # httpcore/h11 messages may quote what the agent sent: one bounded line.
    return excerpt(str(exc) or type(exc).__name__)
