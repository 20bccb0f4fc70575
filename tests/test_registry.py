"""Image pulls: the registry and the cause of a failing pull, from real kubelet and runtime
message shapes, and from hostile ones."""

from __future__ import annotations

from typing import Any

import pytest

from khook.core.correlation import CorrelationTable, parse_correlation
from khook.core.registry import (
    MAX_DETAIL_LENGTH,
    MAX_EXAMINED,
    MEMO_LIMIT,
    PullFailure,
    classify_pull,
    image_in,
    registry_of,
    without_reference,
)
from khook.files import builtin_correlation

TABLE = builtin_correlation()

# kubelet pkg/kubelet/images/image_manager.go EnsureImageExists: the Warning "Failed" event.
FAILED = 'Failed to pull image "{image}": {error}'
# containerd internal/cri/server/images/image_pull.go + core/remotes/docker/resolver.go, as
# the CRI's gRPC error reaches kubelet.
CONTAINERD = (
    'rpc error: code = Unknown desc = failed to pull and unpack image "{full}": failed to '
    'resolve reference "{full}": {error}'
)
# containerd core/remotes/errors/errors.go ErrUnexpectedStatus.Error().
STATUS = "unexpected status from HEAD request to https://{host}/v2/{path}/manifests/{tag}: {status}"


def containerd_status(image: str, *, full: str, host: str, path: str, tag: str, status: str) -> str:
    error = STATUS.format(host=host, path=path, tag=tag, status=status)
    return FAILED.format(image=image, error=CONTAINERD.format(full=full, error=error))


def pull(message: str, table: CorrelationTable = TABLE, image: str = "") -> PullFailure:
    failure = classify_pull(message, table, image)
    assert failure is not None, message
    return failure


# ---- the cause, per class, from the real texts --------------------------------------------

NGINX_429 = containerd_status(
    "nginx:1.27",
    full="docker.io/library/nginx:1.27",
    host="registry-1.docker.io",
    path="library/nginx",
    tag="1.27",
    status="429 Too Many Requests",
)

REAL = [
    # (message, image, registry, class, transient, detail)
    (NGINX_429, "nginx:1.27", "docker.io", "rate-limited", True, "429 Too Many Requests"),
    # containerd errcode.go unexpectedResponseErr joins Docker Hub's body to the status.
    (
        NGINX_429 + "\ntoomanyrequests: You have reached your pull rate limit. You may increase "
        "the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
        "nginx:1.27",
        "docker.io",
        "rate-limited",
        True,
        "429 Too Many Requests",
    ),
    # CRI-O, containers/image docker/docker_client.go fetchManifest: "reading manifest %s in %s".
    (
        FAILED.format(
            image="docker.io/library/redis:7",
            error="rpc error: code = Unknown desc = initializing source docker://redis:7: "
            "reading manifest 7 in docker.io/library/redis: toomanyrequests: You have reached "
            "your pull rate limit.",
        ),
        "docker.io/library/redis:7",
        "docker.io",
        "rate-limited",
        True,
        "toomanyrequests",
    ),
    # containers/image docker/errors.go ErrTooManyRequests (a 429 from the token server).
    (
        FAILED.format(image="quay.io/team/app:2", error="too many requests to registry"),
        "quay.io/team/app:2",
        "quay.io",
        "rate-limited",
        True,
        "too many requests",
    ),
    (
        containerd_status(
            "quay.io/team/api:3",
            full="quay.io/team/api:3",
            host="quay.io",
            path="team/api",
            tag="3",
            status="503 Service Unavailable",
        ),
        "quay.io/team/api:3",
        "quay.io",
        "server-error",
        True,
        "503 Service Unavailable",
    ),
    (
        containerd_status(
            "ghcr.io/o/a:1",
            full="ghcr.io/o/a:1",
            host="ghcr.io",
            path="o/a",
            tag="1",
            status="502 Bad Gateway",
        ),
        "ghcr.io/o/a:1",
        "ghcr.io",
        "server-error",
        True,
        "502 Bad Gateway",
    ),
    # A registry's own reason phrase: the contextual form, after every phrase.
    (
        containerd_status(
            "reg.example:5000/a:1",
            full="reg.example:5000/a:1",
            host="reg.example:5000",
            path="a",
            tag="1",
            status="503 Backend fetch failed",
        ),
        "reg.example:5000/a:1",
        "reg.example:5000",
        "server-error",
        True,
        "unexpected status from HEAD request to https:///v2//manifests/: 503",
    ),
    # containers/image docker/distribution_error.go UnexpectedHTTPStatusError.
    (
        FAILED.format(
            image="quay.io/x/y:1",
            error="rpc error: code = Unknown desc = pinging container registry quay.io: "
            "received unexpected HTTP status: 500 Internal Server Error",
        ),
        "quay.io/x/y:1",
        "quay.io",
        "server-error",
        True,
        "500 Internal Server Error",
    ),
    # containerd resolver.go "failed to do request" around Go's url.Error; Go net dnsclient.
    (
        FAILED.format(
            image="registry.example.com/app:1",
            error=CONTAINERD.format(
                full="registry.example.com/app:1",
                error='failed to do request: Head "https://registry.example.com/v2/app/'
                'manifests/1": dial tcp: lookup registry.example.com on 10.96.0.10:53: no such '
                "host",
            ),
        ),
        "registry.example.com/app:1",
        "registry.example.com",
        "dns",
        True,
        "no such host",
    ),
    (
        FAILED.format(
            image="registry.example.com/app:1",
            error="dial tcp: lookup registry.example.com on 10.96.0.10:53: read udp "
            "10.244.1.7:41234->10.96.0.10:53: i/o timeout",
        ),
        "registry.example.com/app:1",
        "registry.example.com",
        "dns",
        True,
        "read udp 10.244.1.7:41234->10.96.0.10:53: i/o timeout",
    ),
    (
        FAILED.format(
            image="gcr.io/p/a:1",
            error="dial tcp: lookup gcr.io on 10.96.0.10:53: server misbehaving",
        ),
        "gcr.io/p/a:1",
        "gcr.io",
        "dns",
        True,
        "server misbehaving",
    ),
    # Go net: a connect that timed out.
    (
        FAILED.format(
            image="quay.io/a/b:1",
            error='failed to do request: Head "https://quay.io/v2/a/b/manifests/1": dial tcp '
            "3.216.152.103:443: i/o timeout",
        ),
        "quay.io/a/b:1",
        "quay.io",
        "timeout",
        True,
        "i/o timeout",
    ),
    # Go net/http.
    (
        FAILED.format(image="quay.io/a/b:1", error="net/http: TLS handshake timeout"),
        "quay.io/a/b:1",
        "quay.io",
        "timeout",
        True,
        "TLS handshake timeout",
    ),
    (
        FAILED.format(
            image="quay.io/a/b:1",
            error="net/http: request canceled while waiting for connection "
            "(Client.Timeout exceeded while awaiting headers)",
        ),
        "quay.io/a/b:1",
        "quay.io",
        "timeout",
        True,
        "Client.Timeout exceeded",
    ),
    (
        FAILED.format(
            image="quay.io/a/b:1",
            error="rpc error: code = DeadlineExceeded desc = context deadline exceeded",
        ),
        "quay.io/a/b:1",
        "quay.io",
        "timeout",
        True,
        "code = DeadlineExceeded",  # the leftmost phrase that matched
    ),
    # Go crypto/x509, net/http.
    (
        FAILED.format(
            image="registry.corp:5000/a:1",
            error='failed to do request: Head "https://registry.corp:5000/v2/a/manifests/1": '
            "tls: failed to verify certificate: x509: certificate signed by unknown authority",
        ),
        "registry.corp:5000/a:1",
        "registry.corp:5000",
        "tls",
        True,
        "tls:",
    ),
    (
        FAILED.format(
            image="registry.corp:5000/a:1",
            error="http: server gave HTTP response to HTTPS client",
        ),
        "registry.corp:5000/a:1",
        "registry.corp:5000",
        "tls",
        True,
        "server gave HTTP response to HTTPS client",
    ),
    # Linux errno texts through Go net.
    (
        FAILED.format(
            image="registry.corp:5000/a:1",
            error="dial tcp 10.0.0.5:5000: connect: connection refused",
        ),
        "registry.corp:5000/a:1",
        "registry.corp:5000",
        "network",
        True,
        "connection refused",
    ),
    (
        FAILED.format(
            image="docker.io/library/busybox:1.36.1",
            error="read tcp 10.2.0.49:55386->52.202.41.60:443: read: connection reset by peer",
        ),
        "docker.io/library/busybox:1.36.1",
        "docker.io",
        "network",
        True,
        "connection reset by peer",
    ),
    # CRI-O server/image_pull.go wraps ECONNREFUSED in cri-api's ErrRegistryUnavailable.
    (
        FAILED.format(
            image="quay.io/a/b:1",
            error="rpc error: code = Unknown desc = RegistryUnavailable: pinging container "
            'registry quay.io: Get "https://quay.io/v2/": dial tcp 1.2.3.4:443: connect',
        ),
        "quay.io/a/b:1",
        "quay.io",
        "network",
        True,
        "RegistryUnavailable",
    ),
    # kubelet images/helpers.go throttledImageService.
    (
        FAILED.format(image="busybox:1.36", error="pull QPS exceeded."),
        "busybox:1.36",
        "docker.io",
        "node-throttled",
        True,
        "pull QPS exceeded",
    ),
    # ---- terminal ----
    # containerd resolver.go: "%s: %w" with errdefs.ErrNotFound.
    (
        FAILED.format(
            image="nginx:1.99-nope",
            error=CONTAINERD.format(
                full="docker.io/library/nginx:1.99-nope",
                error="docker.io/library/nginx:1.99-nope: not found",
            ),
        ),
        "nginx:1.99-nope",
        "docker.io",
        "not-found",
        False,
        ": not found",
    ),
    # CRI-O: the distribution code MANIFEST_UNKNOWN.
    (
        FAILED.format(
            image="quay.io/team/app:v9",
            error="rpc error: code = Unknown desc = reading manifest v9 in quay.io/team/app: "
            "manifest unknown",
        ),
        "quay.io/team/app:v9",
        "quay.io",
        "not-found",
        False,
        "manifest unknown",
    ),
    # containerd resolver.go, for a private or missing repository on Docker Hub.
    (
        FAILED.format(
            image="acme/private:1",
            error=CONTAINERD.format(
                full="docker.io/acme/private:1",
                error="pull access denied, repository does not exist or may require "
                "authorization: server message: insufficient_scope: authorization failed",
            ),
        ),
        "acme/private:1",
        "docker.io",
        "unauthorized",
        False,
        "pull access denied",
    ),
    # containerd auth/fetch.go: the token server's status.
    (
        FAILED.format(
            image="gcr.io/p/a:1",
            error="failed to authorize: failed to fetch oauth token: unexpected status from "
            "POST request to https://gcr.io/v2/token: 401 Unauthorized",
        ),
        "gcr.io/p/a:1",
        "gcr.io",
        "unauthorized",
        False,
        "401 Unauthorized",
    ),
    (
        containerd_status(
            "gcr.io/p/a:1",
            full="gcr.io/p/a:1",
            host="gcr.io",
            path="p/a",
            tag="1",
            status="403 Forbidden",
        ),
        "gcr.io/p/a:1",
        "gcr.io",
        "unauthorized",
        False,
        "403 Forbidden",
    ),
    # CRI-O: the distribution code UNAUTHORIZED.
    (
        FAILED.format(
            image="quay.io/p/a:1",
            error="reading manifest 1 in quay.io/p/a: unauthorized: access to the requested "
            "resource is not authorized",
        ),
        "quay.io/p/a:1",
        "quay.io",
        "unauthorized",
        False,
        "unauthorized",
    ),
    # containerd authorizer.go (an ECR pull without credentials).
    (
        FAILED.format(
            image="123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1",
            error="failed to authorize: no basic auth credentials",
        ),
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1",
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "unauthorized",
        False,
        "no basic auth credentials",
    ),
    # containerd core/images/handlers.go.
    (
        FAILED.format(
            image="app:arm-only",
            error="no match for platform in manifest: not found",
        ),
        "app:arm-only",
        "docker.io",
        "platform-mismatch",
        False,
        "no match for platform in manifest",
    ),
    # kubelet image_manager.go applyDefaultImageTag (reason InspectFailed).
    (
        'Failed to apply default image tag "Nginx:Bad": couldn\'t parse image name: invalid '
        "reference format: repository name must be lowercase",
        "Nginx:Bad",
        "docker.io",
        "invalid-name",
        False,
        "couldn't parse image name",
    ),
    # kubelet kuberuntime_container.go "Error: %v" with images/types.go ErrInvalidImageName.
    ("Error: InvalidImageName", "", "", "invalid-name", False, "InvalidImageName"),
    # kubelet image_manager.go (reason ErrImageNeverPull).
    (
        'Container image "app:dev" is not present with pull policy of Never',
        "app:dev",
        "docker.io",
        "never-pull",
        False,
        "is not present with pull policy of Never",
    ),
    # kubelet image_manager.go evalCRIPullErr.
    (
        "image pull failed for quay.io/a/b:1 because the signature validation failed: no signature",
        "",
        "",
        "signature-invalid",
        False,
        "signature validation failed",
    ),
    # Kubernetes 1.32+ (kubernetes#127918): the waiting message during back-off carries the
    # last error: "Back-off pulling image %q: %s: %s".
    (
        'Back-off pulling image "nginx:1.99": ErrImagePull: rpc error: code = NotFound desc = '
        'failed to pull and unpack image "docker.io/library/nginx:1.99": failed to resolve '
        'reference "docker.io/library/nginx:1.99": docker.io/library/nginx:1.99: not found',
        "nginx:1.99",
        "docker.io",
        "not-found",
        False,
        "code = NotFound",
    ),
]


@pytest.mark.parametrize("case", REAL)
def test_real_messages_are_classified(case: tuple[str, str, str, str, bool, str]) -> None:
    message, *expected = case
    assert pull(message) == PullFailure(*expected)


@pytest.mark.parametrize(
    "message",
    [
        # kuberuntime_container.go startContainer: "Error: %v" with the error's name.
        "Error: ErrImagePull",
        "Error: ImagePullBackOff",
        # image_manager.go: the BackOff event.
        'Back-off pulling image "nginx:1.27"',
        'Back-off pulling image "registry.example.com/team/app@sha256:' + "a" * 64 + '"',
        # The bare waiting reasons; khook.core.signals' text for a waiting container.
        "ImagePullBackOff",
        "Container app is waiting: ImagePullBackOff (restarts: 0)",
        "Container app is waiting: ErrImagePull (restarts: 12)",
    ],
)
def test_messages_without_a_cause_inherit(message: str) -> None:
    assert classify_pull(message, TABLE) is None


def test_the_four_events_of_one_failing_pull() -> None:
    """Only the first of kubelet's four states the cause."""
    sequence = [
        FAILED.format(image="nginx:1.27", error="429 Too Many Requests"),
        "Error: ErrImagePull",
        'Back-off pulling image "nginx:1.27"',
        "Error: ImagePullBackOff",
    ]
    classes = [classify_pull(m, TABLE) for m in sequence]
    assert [c.pull_class if c else None for c in classes] == ["rate-limited", None, None, None]


def test_unknown_text_is_terminal_unknown() -> None:
    failure = pull(FAILED.format(image="nginx:1", error="something nobody has seen before"))
    assert failure == PullFailure("nginx:1", "docker.io", "unknown", False, "")


def test_an_empty_table_classifies_everything_unknown() -> None:
    failure = pull(NGINX_429, CorrelationTable())
    assert (failure.pull_class, failure.transient, failure.registry) == (
        "unknown",
        False,
        "docker.io",
    )


# ---- the image reference never reads as the cause ------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        # Repository paths, tags and hosts that read like errors; the real cause is a 404.
        ("denied/app:500", "not-found"),
        ("team/toomanyrequests:429", "not-found"),
        ("timeout/i-o:latest", "not-found"),
        ("registry.example.com/unauthorized/app:1", "not-found"),
        ("toomanyrequests.example.com/app:1", "not-found"),
        ("no-such-host.example.com/connection-refused:x509", "not-found"),
        ("app:toomanyrequests", "not-found"),
    ],
)
def test_image_reference_is_removed_before_classifying(image: str, expected: str) -> None:
    # As containerd names them: docker.io/library/<name> for Docker Hub's short names.
    host = registry_of(image)
    name, tag = image.rsplit(":", 1)
    path = name.split("/", 1)[1] if "." in name.split("/", 1)[0] else name
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    message = containerd_status(
        image,
        full=f"{host}/{path}:{tag}",
        host="registry-1.docker.io" if host == "docker.io" else host,
        path=path,
        tag=tag,
        status="404 Not Found",
    )
    assert pull(message).pull_class == expected


def test_a_real_429_behind_an_alarming_reference() -> None:
    image = "unauthorized/not-found:404"
    message = containerd_status(
        image,
        full=f"docker.io/{image}",
        host="registry-1.docker.io",
        path="unauthorized/not-found",
        tag="404",
        status="429 Too Many Requests",
    )
    assert pull(message).pull_class == "rate-limited"


def test_unquoted_reference_is_removed_when_given() -> None:
    """CRI-O names the image unquoted; the Pod's spec says which it is."""
    message = "reading manifest 429 in quay.io/toomanyrequests/app: manifest unknown"
    failure = pull(message, image="quay.io/toomanyrequests/app:429")
    assert (failure.pull_class, failure.image, failure.registry) == (
        "not-found",
        "quay.io/toomanyrequests/app:429",
        "quay.io",
    )
    # Without the image, the path is taken for what it says, and the 404 still comes first:
    # terminal classes are tried before transient ones.
    assert pull(message).pull_class == "not-found"


def test_quoted_text_is_not_read() -> None:
    """Go's url.Error quotes the URL: a registry's redirect to its storage carries a signed
    query the registry chose, which is no cause (containerd fetcher.go, Go net/http)."""
    message = FAILED.format(
        image="quay.io/a/b:1",
        error="failed to copy: httpReadSeeker: failed open: failed to do request: Get "
        '"https://cdn.example.net/blobs/sha256/ab?denied=unauthorized&x=404+Not+Found": '
        "dial tcp 1.2.3.4:443: i/o timeout",
    )
    assert pull(message).pull_class == "timeout"


def test_without_reference_keeps_the_url_shape() -> None:
    text = without_reference(NGINX_429, "nginx:1.27")
    assert "nginx" not in text
    assert "https://registry-1./v2//manifests/: 429 Too Many Requests" in text


# ---- hostile input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "",
        '"',
        '""""""',
        '"unterminated ' + "x" * 10_000,
        '\\"\\"\\"' * 2_000,
        "\x00\x01\x02\x7f\ud800\udfff" * 500,
        "é" * 100_000,
        '"' + "a" * 100_000 + '"',
        "Failed to pull image " + '"\\"' * 3_000,
    ],
)
def test_hostile_messages_never_raise(message: str) -> None:
    failure = pull(message)
    assert failure.pull_class == "unknown"
    assert failure.detail == ""


@pytest.mark.parametrize("message", [None, b"429 Too Many Requests", 429, ["x"], {"m": 1}])
def test_messages_that_are_not_text(message: Any) -> None:
    assert pull(message) == PullFailure("", "", "unknown", False, "")


def test_only_the_first_4096_characters_are_examined() -> None:
    late = "x" * MAX_EXAMINED + " 429 Too Many Requests"
    assert pull(late).pull_class == "unknown"
    early = "429 Too Many Requests " + "x" * 1_000_000
    assert pull(early).pull_class == "rate-limited"


def test_binary_around_a_cause() -> None:
    message = "\x00\ud800 " + FAILED.format(image="quay.io/a/b:1", error="503 Service Unavailable")
    assert pull(message).pull_class == "server-error"


def test_detail_is_capped_and_printable() -> None:
    table = parse_correlation(
        {"correlation": {"pullErrors": [{"class": "odd", "transient": True, "message": "odd.*"}]}},
        "test",
    )
    failure = pull("odd\x00\x1b[31m\u202e" + "y" * 5_000, table)
    assert failure.pull_class == "odd"
    assert len(failure.detail) <= MAX_DETAIL_LENGTH
    assert failure.detail.isprintable()
    assert "\x1b" not in failure.detail


def test_multiple_quotes_first_reference_wins() -> None:
    message = (
        'Failed to pull image "quay.io/a/b:1": failed to pull and unpack image '
        '"quay.io/a/b:1": "gcr.io/other/image:2" 503 Service Unavailable'
    )
    assert pull(message).registry == "quay.io"


# ---- image_in, registry_of ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('Failed to pull image "nginx:1.27": boom', "nginx:1.27"),
        ('Back-off pulling image "quay.io/a/b@sha256:abc"', "quay.io/a/b@sha256:abc"),
        ("Error: ErrImagePull", ""),
        ("Failed to pull image nginx:1.27", ""),  # unquoted: no reference
        ('StatusCode: 404, "404 page not found" then "quay.io/a:1"', "quay.io/a:1"),
        ('"' + "a" * 600 + '" "b:1"', "b:1"),  # over 512 characters: not a reference
        ('"unterminated quay.io/a:1', ""),
        ('"with \\"escape\\"" "c:2"', "c:2"),
        ('""', ""),
    ],
)
def test_image_in(message: str, expected: str) -> None:
    assert image_in(message) == expected


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("nginx", "docker.io"),
        ("nginx:1.27", "docker.io"),
        ("library/nginx", "docker.io"),
        ("user/app:1", "docker.io"),
        ("nginx@sha256:" + "a" * 64, "docker.io"),
        ("index.docker.io/library/nginx", "docker.io"),
        ("docker.io/library/nginx:1", "docker.io"),
        ("quay.io/team/app:1", "quay.io"),
        ("Quay.IO/team/app:1", "quay.io"),
        ("my.registry:5000/app", "my.registry:5000"),
        ("localhost:5000/app:1", "localhost:5000"),
        ("localhost/app", "localhost"),
        ("[::1]:5000/app:1", "[::1]:5000"),
        ("registry.example.com/a/b/c@sha256:" + "b" * 64, "registry.example.com"),
        ("", ""),
        ("with space/app", ""),
        ("https://quay.io/app", ""),
        ('"quoted"', ""),
        ("a" * 600, ""),
    ],
)
def test_registry_of(image: str, registry: str) -> None:
    assert registry_of(image) == registry


def test_what_is_remembered_of_pull_causes_is_bounded() -> None:
    """A storm repeats its messages, so answers are remembered per table; a tenant's Pods can
    name images and messages of any size, and none of that may grow without a bound."""
    table = parse_correlation({"correlation": {}}, "test")
    huge_image = "registry.example.com/" + "x" * 1_000_000
    message = 'Back-off pulling image "{}"'
    first = classify_pull(message.format("a"), table, huge_image)
    assert classify_pull(message.format("a"), table, "") == first, "a non-reference is none"
    for i in range(3 * MEMO_LIMIT):
        classify_pull(message.format(i) + "y" * 10_000, table, huge_image + str(i))
    memo = table.pull_memo
    assert len(memo) <= MEMO_LIMIT
    assert sum(len(m) + len(i) for m, i in memo) <= MEMO_LIMIT * (MAX_EXAMINED + 512)
    assert classify_pull(message.format(7), table) == classify_pull(message.format(7), table)
