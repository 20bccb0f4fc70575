"""Image pulls: which registry a failing pull went to, and why it failed.

kubelet states the cause on one event of the four it emits for a failing pull
(pkg/kubelet/images/image_manager.go, pkg/kubelet/kuberuntime/kuberuntime_container.go):

    Warning Failed   Failed to pull image "<ref>": <the runtime's error text>
    Warning Failed   Error: ErrImagePull
    Normal  BackOff  Back-off pulling image "<ref>"
    Warning Failed   Error: ImagePullBackOff

:func:`classify_pull` reads the cause from the first with the table's ``pullErrors``
(:mod:`khook.core.correlation`) and answers None for the others, whose pod inherits the cause
remembered from the first (:class:`khook.core.owners.OwnerMemory`).

The image reference is taken out of the text before it is classified: a repository path,
tag or registry host can read like an error ("denied/app:500", "toomanyrequests.example").
Nothing here raises on any input; unknown or malformed text is the terminal class
``unknown`` (one incident per workload, fires at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from khook.core.correlation import CorrelationTable, first_match, searchable

# kubelet retries a failing pull at least this often (its longest image back-off), and each
# attempt's Failed Event names the cause.
PULL_RETRY = timedelta(minutes=5)
MAX_EXAMINED = 4_096  # characters of a message that are examined (patterns.SEARCH_LIMIT)
MEMO_LIMIT = 1_024  # answers remembered per table: keys of at most ~4.3 MiB in all
MAX_IMAGE_LENGTH = 512  # a reference: name <= 255, tag <= 128, digest <= 135 (sha512)
MAX_DETAIL_LENGTH = 200  # characters of the matched phrase kept in PullFailure.detail
UNKNOWN = "unknown"
DOCKER_HUB = "docker.io"
# docker/distribution reference/normalize.go: "index.docker.io" is Docker Hub's legacy name.
_LEGACY_DOCKER_HUB = "index.docker.io"

# The characters of an image reference (distribution's reference grammar, plus the brackets
# of an IPv6 registry address); anything else means the quoted text is not a reference.
_REFERENCE = re.compile(r"[A-Za-z0-9._:/@\[\]-]+")
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class PullFailure:
    image: str  # the reference kubelet quoted ("" if none)
    registry: str  # host[:port], lower-cased; docker.io for Docker Hub's short names
    pull_class: str  # from the table's pullErrors, or "unknown"
    transient: bool  # transient classes correlate across workloads (per registry)
    detail: str  # the phrase that matched, e.g. "429 Too Many Requests" (capped, printable)
    # When no message has named the cause yet ("unknown" stands in): since when khook has
    # seen the pod fail to pull without one. None: a message named it (or since when is not
    # known; nothing then waits for it, see khook.core.correlate).
    unstated_since: datetime | None = None


def image_in(message: str) -> str:
    """The first double-quoted image reference in a kubelet message, or "": quoted text that
    is not shaped like a reference (spaces, other characters, over 512 characters) is
    skipped; a quote that is never closed ends the search."""
    if not isinstance(message, str):
        return ""
    for start, end in _quoted(message[:MAX_EXAMINED]):
        candidate = message[start + 1 : end]
        if 0 < len(candidate) <= MAX_IMAGE_LENGTH and _REFERENCE.fullmatch(candidate):
            return candidate
    return ""


def registry_of(image: str) -> str:
    """The registry host[:port] of an image reference, lower-cased: the first path component
    when it looks like a host (holds '.' or ':', is 'localhost', or has capitals, as
    docker/distribution decides), else docker.io (``nginx``, ``library/nginx``,
    ``user/app``); "" for text that is not a reference."""
    domain, _ = _split(image)
    return domain


def classify_pull(message: str, table: CorrelationTable, image: str = "") -> PullFailure | None:
    """The cause a kubelet message states about a failing pull, or None when it states none
    (``Error: ErrImagePull``, ``Back-off pulling image "x"``, ``Error: ImagePullBackOff``).

    ``image`` is the reference to assume when the message quotes none (a CRI-O waiting
    message, from the Pod's spec). Text no ``pullErrors`` entry matches is ``unknown``.
    Remembered per table (at most ``MEMO_LIMIT`` answers): the answer depends on nothing else.
    """
    examined = message[:MAX_EXAMINED] if isinstance(message, str) else ""
    # Text that is not a reference counts as none: a Pod's spec may name an image of any
    # length, and only a reference (at most MAX_IMAGE_LENGTH) may become part of a key.
    key = (examined, image if _is_reference(image) else "")
    memo = table.pull_memo
    if key in memo:
        found: PullFailure | None = memo[key]
        return found
    found = _classify_pull(examined, table, key[1])
    if len(memo) >= MEMO_LIMIT:
        memo.clear()  # a storm's few messages come back at once; nothing else is worth more
    memo[key] = found
    return found


def _classify_pull(message: str, table: CorrelationTable, image: str) -> PullFailure | None:
    text = searchable(message)
    reference = image_in(text) or (image if _is_reference(image) else "")
    registry = registry_of(reference)
    examined = without_reference(text, reference)
    if any(first_match(pattern, examined) is not None for pattern in table.pull_without_cause):
        return None
    for rule in table.pull_errors:
        match = first_match(rule.message, examined)
        if match is not None:
            return PullFailure(reference, registry, rule.pull_class, rule.transient, _detail(match))
    return PullFailure(reference, registry, UNKNOWN, False, "")


def without_reference(text: str, image: str) -> str:
    """``text`` with every double-quoted string emptied (``""``), and the reference, its
    normalized name, its repository path (in a registry URL or where it has a '/'), its tag
    where the runtimes print it, and its registry host removed where they appear unquoted
    (compared ignoring ASCII case)."""
    text = _empty_quotes(text)
    for literal, replacement in _reference_forms(image):
        text = _replace(text, literal, replacement)
    return text


# ---- the reference ---------------------------------------------------------------------


def _is_reference(image: object) -> bool:
    return (
        isinstance(image, str)
        and 0 < len(image) <= MAX_IMAGE_LENGTH
        and _REFERENCE.fullmatch(image) is not None
    )


def _split(image: str) -> tuple[str, str]:
    """(registry, remainder) as docker/distribution's splitDockerDomain does; ("", "") when
    ``image`` is not a reference."""
    if not _is_reference(image):
        return "", ""
    name = image.split("@", 1)[0]
    first, slash, rest = name.partition("/")
    if not slash or (
        "." not in first and ":" not in first and first != "localhost" and first == first.lower()
    ):
        return DOCKER_HUB, name
    host = first.lower()
    if host == _LEGACY_DOCKER_HUB:
        host = DOCKER_HUB
    return (host, rest) if _HOST.fullmatch(host) else ("", "")


def _reference_forms(image: str) -> list[tuple[str, str]]:
    """(text, replacement) for each form a runtime may print ``image`` in, in the order they
    are removed: the URL forms first (their slashes stay, so the URL's other parts still
    read as they did), then the names, longest first, then the registry host."""
    registry, remainder = _split(image)
    if not registry:
        return [(image, "")] if _is_reference(image) and len(image) >= 3 else []
    path, tag = _path_and_tag(remainder)
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"  # how containerd and CRI-O name Docker Hub's short names
    full = f"{registry}/{path}"
    digest = image.partition("@")[2]
    forms = [(f"/v2/{path}/", "/v2//")]  # a registry API URL (containerd, CRI-O)
    if tag:
        # containerd's URLs ".../manifests/<tag>"; CRI-O's "reading manifest <tag> in <name>"
        forms += [(f"/manifests/{tag}", "/manifests/"), (f"manifest {tag} in", "manifest in")]
    names = {image, full}
    if tag:
        names.add(f"{full}:{tag}")
    if digest:
        names.add(f"{full}@{digest}")
    if "/" in path:
        names.add(path)
    forms += [(name, "") for name in sorted(names, key=len, reverse=True)]
    return [*forms, (registry, "")]


def _path_and_tag(remainder: str) -> tuple[str, str]:
    """("team/app", "1.2") from "team/app:1.2" (a digest was cut off before)."""
    head, _, last = remainder.rpartition("/")
    name, colon, tag = last.partition(":")
    path = f"{head}/{name}" if head else name
    return path, tag if colon else ""


# ---- text ------------------------------------------------------------------------------


def _quoted(text: str) -> list[tuple[int, int]]:
    """(start, end) of each double-quoted string as Go's %q writes it (backslash escapes);
    linear: once a quote is never closed, no later quote can be (see the loop)."""
    spans: list[tuple[int, int]] = []
    i = text.find('"')
    while i >= 0:
        j = i + 1
        while j < len(text) and text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        if j >= len(text):
            break  # unclosed: every later quote was escaped inside it, so none closes either
        spans.append((i, j))
        i = text.find('"', j + 1)
    return spans


def _empty_quotes(text: str) -> str:
    pieces: list[str] = []
    last = 0
    for start, end in _quoted(text):
        pieces.append(text[last : start + 1])
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _replace(text: str, literal: str, replacement: str) -> str:
    """``text`` with every occurrence of ``literal`` replaced, ignoring ASCII case (a
    reference is ASCII; lower-casing only ASCII keeps every index where it was)."""
    lowered, needle = text.translate(_ASCII_LOWER), literal.translate(_ASCII_LOWER)
    pieces: list[str] = []
    last = 0
    found = lowered.find(needle)
    while found >= 0:
        pieces.append(text[last:found])
        pieces.append(replacement)
        last = found + len(needle)
        found = lowered.find(needle, last)
    pieces.append(text[last:])
    return "".join(pieces)


def _detail(match: object) -> str:
    phrase = match.group(0) if hasattr(match, "group") else ""
    phrase = phrase if isinstance(phrase, str) else ""
    phrase = "".join(ch if ch.isprintable() else " " for ch in phrase[:MAX_DETAIL_LENGTH])
    return " ".join(phrase.split())
