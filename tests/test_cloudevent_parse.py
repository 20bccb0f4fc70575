"""Binary-mode CloudEvents parsed by khook.core.cloudevent: the limits on attributes (64 of
them, names of at most 64 letters and digits, values of at most 4,096 characters) hold
whichever headers carry them, those an ApiServerSource sends (looked up at once) or others;
and the parse equals a plain statement of those rules on any headers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.cloudevent import CloudEventError, parse_lowercase

REQUIRED = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s", "ce-type": "t"}


def attributes(headers: dict[str, str]) -> dict[str, str]:
    return dict(parse_lowercase(headers, b"{}").attributes)


def reference(headers: dict[str, str]) -> dict[str, str] | None:
    """The rules, plainly: in the headers' order, each ce- header whose rest is a name of 1 to
    64 ASCII letters and digits is an attribute; the 65th attribute, or a value over 4,096
    characters, or a missing or unknown required one, refuses the event (None); a header whose
    name is not one (and fits) is not the event's. Content-Type is datacontenttype."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if not name.startswith("ce-"):
            continue
        if len(found) >= 64:
            return None
        attribute = name[3:]
        if not attribute or len(attribute) > 64 or not attribute.isascii():
            continue
        if not attribute.isalnum():
            continue
        if len(value) > 4096:
            return None
        found[attribute] = value
    if found.get("specversion") not in ("1.0", "0.3"):
        return None
    if not all(found.get(name) for name in ("id", "source", "type")):
        return None
    if headers.get("content-type"):
        if len(found) >= 64:
            return None
        found["datacontenttype"] = headers["content-type"]
    return found


def parsed(headers: dict[str, str]) -> dict[str, str] | None:
    try:
        return attributes(headers)
    except CloudEventError:
        return None


@pytest.mark.parametrize("known_first", [True, False])
def test_64_attributes_and_no_more(known_first: bool) -> None:
    for extra, accepted in ((60, True), (61, False)):  # 4 required + 60 = 64
        others = {f"ce-x{i}": "v" for i in range(extra)}
        headers = {**REQUIRED, **others} if known_first else {**others, **REQUIRED}
        assert (parsed(headers) is not None) is accepted, (extra, known_first)


@pytest.mark.parametrize("name", ["ce-subject", "ce-xsubject"])
def test_values_of_4096_characters_and_no_more(name: str) -> None:
    assert attributes({**REQUIRED, name: "v" * 4096})[name[3:]] == "v" * 4096
    with pytest.raises(CloudEventError, match="over 4096"):
        attributes({**REQUIRED, name: "v" * 4097})


def test_headers_that_name_no_attribute_are_not_the_events() -> None:
    headers = {**REQUIRED, "ce-a-b": "1", "ce-" + "a" * 65: "1", "ce-": "1", "ce-" + "a" * 64: "2"}
    assert attributes(headers) == {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "t",
        "a" * 64: "2",
    }


names = st.one_of(
    st.sampled_from([*REQUIRED, "ce-time", "ce-kind", "ce-datacontenttype", "content-type"]),
    st.sampled_from(["ce-", "ce-a-b", "ce-" + "a" * 65, "ce-é", "host"]),
    st.text(alphabet="abcdef1-", min_size=1, max_size=6).map(lambda t: "ce-" + t),
)
values = st.one_of(st.sampled_from(["1.0", "0.3", "x", "", "v" * 4097]), st.text(max_size=4))


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(names, values, max_size=80))
def test_the_parse_is_the_rules(headers: dict[str, Any]) -> None:
    assert parsed(headers) == reference(headers)
