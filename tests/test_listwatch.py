"""ListWatch's recovery paths, driven through the official client against the API double.

Each test makes the double end a watch the way a real kube-apiserver does (410 at the start
of a watch, an ERROR event mid-stream, its own timeout, a cut connection, a throttled flow)
and then checks exactly what the ListWatch handed to ``on_list``/``on_event`` and which
requests it made, with the resourceVersion each watch resumed from.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from khook.listwatch import ListWatch
from tests.support.apiserver import APIServer
from tests.support.apiserver_checks import G, V, cm, hook, pod, raw_events, rv
from tests.support.cluster import wait_until

NS = "team-a"
# Longer than any test: a watch ends only the way the test under way makes it end.
LONG_WATCH = 60
# The double's bookmarks, when a test does not want them: never within a test.
NO_BOOKMARKS = 600.0
EXPIRED = "The resourceVersion for the provided watch is too old."  # the real server's words

Delivery = tuple[Any, ...]
Asked = tuple[str, str, int]


class Delivered:
    """What a ListWatch handed over, in order: ``("LIST", ((name, rv), ...))`` for a list,
    ``(type, name, rv)`` for an event."""

    def __init__(self) -> None:
        self.log: list[Delivery] = []

    def on_list(self, items: list[Mapping[str, Any]]) -> None:
        self.log.append(("LIST", tuple(_named(item) for item in items)))

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        self.log.append((kind, *_named(obj)))

    def lists(self) -> int:
        return sum(1 for entry in self.log if entry[0] == "LIST")


def _named(obj: Mapping[str, Any]) -> tuple[str, int]:
    return obj["metadata"]["name"], rv(obj)


def asked(server: APIServer, resource: str) -> list[Asked]:
    """The lists and watches the server answered for ``resource``: (verb, the
    resourceVersion asked for, HTTP status), in order."""
    return [
        (r.verb, parse_qs(r.query).get("resourceVersion", [""])[0], r.status)
        for r in server.calls(resource=resource)
        if r.verb in ("list", "watch")
    ]


def watches(server: APIServer, resource: str = "hooks", status: int = 200) -> int:
    return sum(1 for verb, _, code in asked(server, resource) if verb == "watch" and code == status)


Follow = Callable[..., tuple[ListWatch, Delivered]]


@pytest.fixture
def server() -> Iterator[APIServer]:
    with APIServer(bookmark_interval=NO_BOOKMARKS) as running:
        yield running


@pytest.fixture
def custom(server: APIServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(server.api_client())


@pytest.fixture
def follow(server: APIServer, custom: client.CustomObjectsApi) -> Iterator[Follow]:
    """Start a ListWatch (by default on the Hooks of one namespace, as khook's HookStore
    does); every one started is closed at the end."""
    started: list[ListWatch] = []

    def start(
        call: Callable[..., Any] | None = None, **options: Any
    ) -> tuple[ListWatch, Delivered]:
        delivered = Delivered()
        watcher = ListWatch(
            f"test-listwatch-{len(started)}",
            call or partial(custom.list_namespaced_custom_object, G, V, NS, "hooks"),
            on_list=delivered.on_list,
            on_event=delivered.on_event,
            **({"watch_timeout": LONG_WATCH, "max_backoff": 0.2} | options),
        )
        started.append(watcher)
        watcher.start()
        return watcher, delivered

    yield start
    for watcher in started:
        watcher.close()


def create_hook(custom: client.CustomObjectsApi, name: str) -> int:
    return rv(custom.create_namespaced_custom_object(G, V, NS, "hooks", hook(name)))


def label_hook(custom: client.CustomObjectsApi, name: str) -> int:
    labels = {"metadata": {"labels": {"touched": "yes"}}}
    return rv(custom.patch_namespaced_custom_object(G, V, NS, "hooks", name, labels))


def delete_hook(custom: client.CustomObjectsApi, name: str) -> int:
    return rv(custom.delete_namespaced_custom_object(G, V, NS, "hooks", name))


def unrelated_write(server: APIServer) -> int:
    """A write that moves the global resourceVersion without touching what is watched."""
    core = client.CoreV1Api(server.api_client())
    return rv(core.create_namespaced_config_map(NS, cm(f"other-{time.monotonic_ns()}")))


def close_promptly(watcher: ListWatch, within: float) -> None:
    started = time.monotonic()
    watcher.close()
    took = time.monotonic() - started
    alive = [t.name for t in threading.enumerate() if t.name == watcher.name]
    assert took < within and not alive, f"close() took {took:.1f} s; still running: {alive}"


# -- the paths --------------------------------------------------------------------------------


def test_lists_then_watches_from_the_lists_version(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a = create_hook(custom, "h1")
    watcher, delivered = follow()
    wait_until(lambda: watches(server) == 1, what="the first watch")
    b = create_hook(custom, "h2")
    c = label_hook(custom, "h1")
    wait_until(lambda: len(delivered.log) == 3, what="two events")
    close_promptly(watcher, within=5)
    assert delivered.log == [("LIST", (("h1", a),)), ("ADDED", "h2", b), ("MODIFIED", "h1", c)]
    assert asked(server, "hooks") == [("list", "", 200), ("watch", str(a), 200)]
    [watch] = server.calls(verb="watch")
    query = parse_qs(watch.query)
    assert query["allowWatchBookmarks"] == ["true"]
    assert query["timeoutSeconds"] == [str(LONG_WATCH)]


def test_gone_when_a_watch_starts_lists_again_once(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a = create_hook(custom, "h1")
    _, delivered = follow()
    wait_until(lambda: watches(server) == 1, what="the first watch")
    b = create_hook(custom, "h2")
    wait_until(lambda: len(delivered.log) == 2, what="h2")
    c = unrelated_write(server)  # the history moves on past what the watcher has seen...
    server.compact()  # ...and is forgotten: resuming from b is now 410 Expired
    assert server.end_watches() == 1  # ends cleanly, as at the server's timeout
    wait_until(lambda: watches(server) == 3, what="the watch after the new list")
    assert asked(server, "hooks") == [
        ("list", "", 200),
        ("watch", str(a), 200),
        ("watch", str(b), 200),  # answered with a 410 ERROR event
        ("list", "", 200),
        ("watch", str(c), 200),
    ]
    assert delivered.log == [
        ("LIST", (("h1", a),)),
        ("ADDED", "h2", b),
        ("LIST", (("h1", a), ("h2", b))),
    ]


def test_error_410_mid_stream_lists_again(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a = create_hook(custom, "h1")
    _, delivered = follow()
    wait_until(lambda: watches(server) == 1, what="the first watch")
    b = create_hook(custom, "h2")
    wait_until(lambda: len(delivered.log) == 2, what="h2")
    assert server.end_watches(410, "Expired", EXPIRED) == 1
    wait_until(lambda: watches(server) == 2, what="the watch after the new list")
    assert asked(server, "hooks") == [
        ("list", "", 200),
        ("watch", str(a), 200),
        ("list", "", 200),
        ("watch", str(b), 200),
    ]
    assert delivered.log == [
        ("LIST", (("h1", a),)),
        ("ADDED", "h2", b),
        ("LIST", (("h1", a), ("h2", b))),
    ]


@pytest.mark.parametrize(
    "error",
    [
        (500, "InternalError", "Internal error occurred: etcdserver: request timed out"),
        (429, "TooManyRequests", "Too many requests, please try again later."),
    ],
    ids=["500", "429"],
)
def test_other_error_events_back_off_and_resume_from_the_last_version(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow, error: tuple[int, str, str]
) -> None:
    a = create_hook(custom, "h1")
    _, delivered = follow(max_backoff=1.0)
    wait_until(lambda: watches(server) == 1, what="the first watch")
    b = create_hook(custom, "h2")
    wait_until(lambda: len(delivered.log) == 2, what="h2")
    failed = time.monotonic()
    assert server.end_watches(*error) == 1
    wait_until(lambda: watches(server) == 2, what="the resumed watch")
    waited = time.monotonic() - failed
    c = create_hook(custom, "h3")
    wait_until(lambda: len(delivered.log) >= 3, what="h3")
    # Resumed from h2's version: nothing listed again, nothing delivered twice.
    assert asked(server, "hooks") == [
        ("list", "", 200),
        ("watch", str(a), 200),
        ("watch", str(b), 200),
    ]
    assert delivered.log == [("LIST", (("h1", a),)), ("ADDED", "h2", b), ("ADDED", "h3", c)]
    assert waited >= 0.5, f"retried after {waited:.2f} s: no backoff"


def test_server_timeout_resumes_from_the_newest_version_bookmarks_included(
    follow: Follow,
) -> None:
    # Pods in all namespaces, as khook's event source watches them.
    with APIServer(bookmark_interval=0.1) as server:
        core = client.CoreV1Api(server.api_client())
        a = rv(core.create_namespaced_pod(NS, pod("p1")))
        watcher, delivered = follow(core.list_pod_for_all_namespaces, watch_timeout=2)
        wait_until(lambda: watches(server, "pods") == 1, what="the first watch")
        b = rv(core.create_namespaced_pod("team-b", pod("p2")))
        wait_until(lambda: len(delivered.log) == 2, what="p2")
        c = unrelated_write(server)  # only a bookmark tells the watcher about this version
        wait_until(lambda: watches(server, "pods") == 2, what="the watch after the timeout")
        close_promptly(watcher, within=5)
        assert asked(server, "pods")[:3] == [
            ("list", "", 200),
            ("watch", str(a), 200),
            ("watch", str(c), 200),
        ]
        assert delivered.log == [("LIST", (("p1", a),)), ("ADDED", "p2", b)]
        assert all(parse_qs(r.query)["timeoutSeconds"] == ["2"] for r in server.calls(verb="watch"))


def test_dropped_connection_resumes_and_loses_nothing_changed_meanwhile(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a = create_hook(custom, "h1")
    _, delivered = follow()
    wait_until(lambda: watches(server) == 1, what="the first watch")
    b = create_hook(custom, "h2")
    wait_until(lambda: len(delivered.log) == 2, what="h2")
    with server.refusing("watch"):  # keeps the watcher away while the test writes
        assert server.drop_watches() == 1
        wait_until(lambda: watches(server, status=429), what="a refused reconnect")
        c = label_hook(custom, "h1")
        d = create_hook(custom, "h3")
        e = delete_hook(custom, "h2")
    wait_until(lambda: len(delivered.log) >= 5, what="the changes made meanwhile")
    calls = asked(server, "hooks")
    refused = calls[2:-1]
    assert calls[:2] == [("list", "", 200), ("watch", str(a), 200)]
    assert refused and set(refused) == {("watch", str(b), 429)}
    assert calls[-1] == ("watch", str(b), 200)
    assert delivered.log == [
        ("LIST", (("h1", a),)),
        ("ADDED", "h2", b),
        ("MODIFIED", "h1", c),
        ("ADDED", "h3", d),
        ("DELETED", "h2", e),
    ]


def test_history_forgotten_while_disconnected_lists_the_current_objects(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a, b = create_hook(custom, "h1"), create_hook(custom, "h2")
    _, delivered = follow()
    wait_until(lambda: watches(server) == 1, what="the first watch")
    with server.refusing("watch"):
        assert server.drop_watches() == 1
        wait_until(lambda: watches(server, status=429), what="a refused reconnect")
        delete_hook(custom, "h1")
        d = create_hook(custom, "h3")
        server.compact()
    wait_until(lambda: delivered.lists() == 2, what="the new list")
    wait_until(lambda: watches(server) == 3, what="the watch after the new list")
    calls = asked(server, "hooks")
    assert calls[:2] == [("list", "", 200), ("watch", str(b), 200)]
    assert set(calls[2:-3]) == {("watch", str(b), 429)}
    assert calls[-3:] == [
        ("watch", str(b), 200),  # answered with a 410 ERROR event
        ("list", "", 200),
        ("watch", str(d), 200),
    ]
    assert delivered.log == [
        ("LIST", (("h1", a), ("h2", b))),
        ("LIST", (("h2", b), ("h3", d))),
    ]


def test_a_failed_list_is_retried_before_anything_is_delivered(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    a = create_hook(custom, "h1")
    with server.refusing("list"):
        _, delivered = follow()
        wait_until(lambda: asked(server, "hooks"), what="a refused list")
        assert delivered.log == []
    wait_until(lambda: watches(server) == 1, what="the watch after the list")
    calls = asked(server, "hooks")
    assert set(calls[:-2]) == {("list", "", 429)}
    assert calls[-2:] == [("list", "", 200), ("watch", str(a), 200)]
    assert delivered.log == [("LIST", (("h1", a),))]


# -- closing ----------------------------------------------------------------------------------


def test_close_mid_watch_stops_at_once(
    server: APIServer, custom: client.CustomObjectsApi, follow: Follow
) -> None:
    create_hook(custom, "h1")
    watcher, delivered = follow()
    wait_until(lambda: watches(server) == 1 and delivered.log, what="an idle watch")
    # The stream stays silent (no bookmarks, 60 s timeout): only close() can end it.
    close_promptly(watcher, within=5)
    create_hook(custom, "h2")
    assert len(asked(server, "hooks")) == 2 and len(delivered.log) == 1


def test_close_mid_backoff_stops_at_once(server: APIServer, follow: Follow) -> None:
    with server.refusing("list"):
        watcher, delivered = follow(max_backoff=30.0)
        # Backoff doubles from about 1 s: after the third refusal the wait is 3.2 s or more.
        wait_until(lambda: len(asked(server, "hooks")) == 3, what="three refused lists")
        close_promptly(watcher, within=2)
    assert asked(server, "hooks") == [("list", "", 429)] * 3 and delivered.log == []


# -- the double's faults, as the official client sees them ------------------------------------


def test_the_doubles_watch_faults(server: APIServer) -> None:
    core = client.CoreV1Api(server.api_client())
    a = rv(core.create_namespaced_config_map(NS, cm("a")))

    def open_watch(opened: int) -> Any:
        response = core.list_namespaced_config_map(
            NS, watch=True, resource_version=str(a - 1), _preload_content=False
        )
        wait_until(lambda: watches(server, "configmaps") == opened, what="the watch")
        return response

    response = open_watch(1)
    assert server.end_watches(500, "InternalError", "boom") == 1
    core.create_namespaced_config_map(NS, cm("later"))  # after the end: not on this stream
    assert [(e["type"], e["object"].get("code")) for e in raw_events(response)] == [
        ("ADDED", None),
        ("ERROR", 500),
    ]
    response = open_watch(2)
    assert server.drop_watches() == 1 and server.end_watches() == 0
    with pytest.raises(ProtocolError):
        response.read()  # no final chunk: the stream was cut
    with server.refusing("watch", "list"), pytest.raises(ApiException) as refused:
        core.list_namespaced_config_map(NS)
    assert refused.value.status == 429
    assert json.loads(refused.value.body)["reason"] == "TooManyRequests"
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == ["a", "later"]
