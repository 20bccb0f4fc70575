"""khook.core.ids: the text of a name-based UUID, as ``str(uuid.uuid5(...))`` gives it (message
ids and dry-run task ids are these: a replay of the same events must give the same ids)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from khook.core.ids import uuid5_text

NAMESPACES = (
    st.sampled_from([uuid.NAMESPACE_URL, uuid.UUID("6f1c1f8e-3f0e-4d5e-9a5e-6b686f6f6b21")])
    | st.uuids()
)


@settings(max_examples=5000)
@given(NAMESPACES, st.text())
def test_uuid5_text_is_uuid5s_text(namespace: uuid.UUID, name: str) -> None:
    assert uuid5_text(namespace, name) == str(uuid.uuid5(namespace, name))


def test_a_known_message_id() -> None:
    # Fixed: ids already sent to agents (and written in replay files) stay what they were.
    namespace = uuid.UUID("6f1c1f8e-3f0e-4d5e-9a5e-6b686f6f6b21")
    name = "default/pod-incidents|oom-kill|default|Deployment/web@2026-12-05 21:34:00+00:00"
    assert uuid5_text(namespace, name) == "74aad203-30cb-5348-86f8-23149e46d0b9"
