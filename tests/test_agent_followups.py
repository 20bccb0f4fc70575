"""Follow-up messages: khook keeps an investigating agent informed in the same A2A conversation.

Against the real a2a-sdk server, A2A 0.3 and 1.0, through real sockets: a first message opens a
context; a follow-up carrying its context and task continues the task; a follow-up for a task
that has ended is refused by the agent and sent again, at once and within the same deadline, as
a new task in the same context; a follow-up's failed task is an answer, not an error."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest
from google.protobuf.json_format import ParseDict

from khook.agent import (
    TASK_STATES,
    TERMINAL_STATES,
    A2AClient,
    A2AVersion,
    AgentError,
    AgentRequest,
    AgentResult,
    DryRunClient,
    is_terminal,
)
from khook.core.hooks import AgentRef
from tests.support.agent import A2AAgentServer, Fault, RawRequest
from tests.support.clock import FakeClock

VERSIONS = [A2AVersion.V0_3, A2AVersion.V1_0]
ENDED = sorted(TERMINAL_STATES)
FIRST = AgentRequest(
    agent=AgentRef("kagent", "k8s-agent"),
    prompt="Pod web-1 was OOM-killed",
    message_id="7b2f0c1e-0000-4000-8000-000000000001",
    metadata={"khook.dev/hook": "shop/h"},
    hook_namespace="shop",
    hook_name="h",
)
JSON = {"Content-Type": "application/json"}


def client(agent: A2AAgentServer, clock: FakeClock, version: A2AVersion, **kw: Any) -> A2AClient:
    return A2AClient(agent.url, clock=clock, version=version, **kw)


def followup(first: AgentResult, n: int, *, task: bool = True) -> AgentRequest:
    """The n-th follow-up into ``first``'s conversation (the lead derives message ids from
    the incident and the follow-up number)."""
    return replace(
        FIRST,
        prompt=f"follow-up {n}: the incident grew",
        message_id=f"7b2f0c1e-0000-4000-8000-00000000010{n}",
        context_id=first.context_id,
        task_id=first.task_id if task else "",
        followup=True,
    )


def sent(raw: RawRequest) -> dict[str, Any]:
    message: dict[str, Any] = raw.body["params"]["message"]
    return message


def parsed_by_the_sdk(raw: RawRequest, version: A2AVersion) -> tuple[str, str]:
    """contextId and taskId as the SDK's own request models read the body khook sent."""
    if version is A2AVersion.V1_0:
        from a2a.types import a2a_pb2 as pb

        request = ParseDict(raw.body["params"], pb.SendMessageRequest())
        return request.message.context_id, request.message.task_id
    from a2a.compat.v0_3 import types as v03

    legacy = v03.SendMessageRequest.model_validate(raw.body)
    return legacy.params.message.context_id or "", legacy.params.message.task_id or ""


def rpc(**fields: object) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": "x", **fields})


# --- One conversation ------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_a_first_message_opens_a_context(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    first = client(agent, clock, version).send(FIRST)
    (raw,) = agent.posts()
    assert "contextId" not in sent(raw) and "taskId" not in sent(raw)
    (got,) = agent.messages()
    assert first.context_id and got.context_id == first.context_id
    assert got.task_id == first.task_id and not got.continued
    assert (first.state, first.resent_as_new_task, first.context_changed) == (
        "submitted",
        False,
        False,
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_a_followup_continues_the_task(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    c = client(agent, clock, version)
    first = c.send(FIRST)
    answer = c.send(followup(first, 1))
    raw = agent.posts()[1]
    assert sent(raw)["contextId"] == first.context_id and sent(raw)["taskId"] == first.task_id
    assert parsed_by_the_sdk(raw, version) == (first.context_id, first.task_id)
    got = agent.messages()[1]
    assert (got.context_id, got.task_id, got.continued) == (first.context_id, first.task_id, True)
    assert (answer.task_id, answer.context_id, answer.state) == (
        first.task_id,
        first.context_id,
        "working",
    )
    assert not answer.resent_as_new_task and not answer.context_changed
    assert len(agent.posts()) == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_a_followup_with_the_context_only_is_a_new_task_in_it(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    c = client(agent, clock, version)
    first = c.send(FIRST)
    answer = c.send(followup(first, 1, task=False))
    raw = agent.posts()[1]
    assert sent(raw)["contextId"] == first.context_id and "taskId" not in sent(raw)
    assert parsed_by_the_sdk(raw, version) == (first.context_id, "")
    assert answer.context_id == first.context_id and answer.task_id != first.task_id
    assert not agent.messages()[1].continued and not answer.resent_as_new_task


# --- A task that has ended ---------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("state", ENDED)
def test_a_followup_for_an_ended_task_goes_as_a_new_task_in_the_same_context(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion, state: str
) -> None:
    c = client(agent, clock, version)
    first = c.send(FIRST)
    agent.finish(first.task_id, state)  # the agent's investigation is over
    assert agent.task_state(first.task_id) == state

    answer = c.send(followup(first, 1))

    refused, resent = agent.posts()[1:]
    assert sent(refused)["taskId"] == first.task_id
    assert sent(resent)["contextId"] == first.context_id and "taskId" not in sent(resent)
    # The same message: the same id and identity, sent again at once (no backoff).
    assert sent(resent)["messageId"] == sent(refused)["messageId"] == followup(first, 1).message_id
    assert resent.body["id"] == refused.body["id"]
    assert resent.headers["x-user-id"] == refused.headers["x-user-id"] == "khook:shop"
    assert clock.sleeps == []
    assert answer.resent_as_new_task and answer.state == "submitted"
    assert answer.context_id == first.context_id and answer.task_id not in ("", first.task_id)
    got = agent.messages()[-1]
    assert (got.context_id, got.task_id, got.continued) == (first.context_id, answer.task_id, False)

    # The next follow-up continues the new task: three messages, one conversation.
    nxt = c.send(replace(followup(first, 2), task_id=answer.task_id))
    assert nxt.task_id == answer.task_id and not nxt.resent_as_new_task
    conversation = agent.conversation(first.context_id)
    assert [m.message_id for m in conversation] == [
        FIRST.message_id,
        followup(first, 1).message_id,
        followup(first, 2).message_id,
    ]
    assert [m.continued for m in conversation] == [False, False, True]
    assert len(agent.posts()) == 4


@pytest.mark.parametrize("version", VERSIONS)
def test_a_caller_that_knows_the_task_ended_sends_the_context_only(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    c = client(agent, clock, version)
    agent.end_next_tasks("completed")
    first = c.send(FIRST)
    assert first.state == "completed" and is_terminal(first.state)
    answer = c.send(followup(first, 1, task=not is_terminal(first.state)))
    assert len(agent.posts()) == 2, "no refusal: one message, one request"
    assert "taskId" not in sent(agent.posts()[1])
    assert answer.context_id == first.context_id and not answer.resent_as_new_task
    assert [m.context_id for m in agent.messages()] == [first.context_id] * 2


@pytest.mark.parametrize("version", VERSIONS)
def test_other_refusals_of_a_followup_are_not_resent(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    c = client(agent, clock, version)
    first = c.send(FIRST)
    other = c.send(replace(FIRST, message_id="other-incident"))
    cases = [
        # The task belongs to another context: -32602, "Context ... does not match ...".
        (replace(followup(first, 1), task_id=other.task_id), "does not match"),
        # An unknown task: -32001.
        (replace(followup(first, 2), task_id="no-such-task"), "-32001"),
    ]
    for request, says in cases:
        before = len(agent.posts())
        with pytest.raises(AgentError) as err:
            c.send(request)
        assert says in str(err.value) and not err.value.retryable
        assert not err.value.task_ended
        assert len(agent.posts()) == before + 1, "not sent again"


# What other A2A servers answer for a message to an ended task (read from their code), and
# errors that look alike but are not that refusal.
ENDED_ANSWERS = {
    "a2a-sdk-0.3": {"code": -32602, "message": "Task t-1 is in terminal state: completed"},
    "a2a-sdk-1.x": {
        "code": -32004,
        "message": "Task t-1 is in terminal state: TASK_STATE_FAILED",
        "data": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo"}],
    },
    "a2a-go-0.3": {
        "code": -32602,
        "message": "invalid params",
        "data": {"error": 'task in a terminal state "completed": invalid params'},
    },
    "a2a-go-2.x": {
        "code": -32602,
        "message": 'task in a terminal state "TASK_STATE_CANCELED": invalid params',
    },
}
NOT_ENDED_ANSWERS = {
    "context-mismatch": {"code": -32602, "message": "Context c does not match context d"},
    "unsupported": {"code": -32004, "message": "Streaming is not supported by the agent"},
    "not-found": {"code": -32001, "message": "Task t-1 not found"},
    "other-code": {"code": -32600, "message": "Task t-1 is in terminal state: completed"},
    "words-elsewhere": {"code": -32602, "message": "bad", "data": {"hint": "terminal state"}},
}


@pytest.mark.parametrize("server", sorted(ENDED_ANSWERS))
def test_each_servers_ended_task_refusal_is_recognised(
    agent: A2AAgentServer, clock: FakeClock, server: str
) -> None:
    c = client(agent, clock, A2AVersion.V0_3)
    first = c.send(FIRST)
    agent.fail_next(Fault(200, JSON, body=rpc(error=ENDED_ANSWERS[server])))
    answer = c.send(followup(first, 1))
    assert answer.resent_as_new_task and answer.context_id == first.context_id
    assert "taskId" not in sent(agent.posts()[-1])


@pytest.mark.parametrize("case", sorted(NOT_ENDED_ANSWERS))
def test_look_alike_errors_are_not_an_ended_task(
    agent: A2AAgentServer, clock: FakeClock, case: str
) -> None:
    c = client(agent, clock, A2AVersion.V0_3)
    first = c.send(FIRST)
    agent.fail_next(Fault(200, JSON, body=rpc(error=NOT_ENDED_ANSWERS[case])))
    with pytest.raises(AgentError) as err:
        c.send(followup(first, 1))
    assert not err.value.task_ended and len(agent.posts()) == 2


def test_a_first_message_refused_that_way_is_not_resent(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    agent.fail_next(Fault(200, JSON, body=rpc(error=ENDED_ANSWERS["a2a-sdk-1.x"])))
    with pytest.raises(AgentError) as err:
        client(agent, clock, A2AVersion.V0_3).send(FIRST)
    assert err.value.task_ended and not err.value.retryable
    assert len(agent.posts()) == 1, "no task id to drop: nothing else to send"


# --- The resend and the deadline --------------------------------------------------------------


def test_the_resend_is_retried_like_any_call(agent: A2AAgentServer, clock: FakeClock) -> None:
    c = client(agent, clock, A2AVersion.V1_0, backoff=0.5)
    first = c.send(FIRST)
    agent.finish(first.task_id)
    agent.fail_next(Fault(0), Fault(503))  # the refusal passes; the resend meets a 503 first
    answer = c.send(followup(first, 1))
    assert answer.resent_as_new_task
    assert [("taskId" in sent(p)) for p in agent.posts()[1:]] == [True, False, False]
    assert len(clock.sleeps) == 1, "one backoff, for the 503"


def test_no_resend_once_the_deadline_has_passed(agent: A2AAgentServer, clock: FakeClock) -> None:
    c = client(agent, clock, A2AVersion.V0_3, timeout=30.0)
    first = c.send(FIRST)
    agent.finish(first.task_id)
    # The refusal comes back after the call's 30 s are spent.
    agent.fail_next(Fault(0, on_arrival=lambda: clock.advance(31)))
    with pytest.raises(AgentError) as err:
        c.send(followup(first, 1))
    assert err.value.retryable, "not delivered: worth a redelivery"
    assert "terminal state" in str(err.value) and "no time left within 30s" in str(err.value)
    assert len(agent.posts()) == 2, "the resend was not sent"


def test_the_resend_has_only_what_is_left_of_the_deadline(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    c = client(agent, clock, A2AVersion.V1_0, timeout=30.0, attempts=1)
    first = c.send(FIRST)
    agent.finish(first.task_id)
    # 29 of the 30 s pass before the refusal; the resend's answer would take 4 s, well within
    # a fresh 30 s deadline, but not within the 1 s left.
    agent.fail_next(Fault(0, on_arrival=lambda: clock.advance(29)), Fault(0, delay=4.0))
    with pytest.raises(AgentError) as err:
        c.send(followup(first, 1))
    assert err.value.retryable and "timed out" in str(err.value)
    assert f"task {first.task_id} had ended" in str(err.value)
    assert "taskId" not in sent(agent.posts()[-1]), "the resend was sent, and cut short"


# --- What a follow-up's answer says ------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("state", ["failed", "rejected", "canceled"])
def test_a_followups_failed_task_is_its_answer_not_an_error(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion, state: str
) -> None:
    c = client(agent, clock, version)
    first = c.send(FIRST)
    agent.end_next_tasks(state)
    answer = c.send(followup(first, 1))
    assert (answer.task_id, answer.state) == (first.task_id, state)
    assert is_terminal(answer.state) and len(agent.posts()) == 2, "not retried"
    # The same answer to a first message is the incident's call failing, as before.
    agent.end_next_tasks(state)
    with pytest.raises(AgentError, match=f"agent {state} the task"):
        c.send(replace(FIRST, message_id="another-incident"))


def test_an_answer_in_another_context_says_so(agent: A2AAgentServer, clock: FakeClock) -> None:
    c = client(agent, clock, A2AVersion.V0_3)
    first = c.send(FIRST)
    moved = {"kind": "task", "id": "t-9", "contextId": "c-new", "status": {"state": "working"}}
    agent.fail_next(Fault(200, JSON, body=rpc(result=moved)))
    answer = c.send(followup(first, 1))
    assert answer.context_changed and answer.context_id == "c-new" and answer.task_id == "t-9"


def test_an_answer_without_a_context_stays_in_the_one_sent(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    c = client(agent, clock, A2AVersion.V1_0)
    first = c.send(FIRST)
    reply = {"message": {"messageId": "r", "role": "ROLE_AGENT", "parts": [{"text": "ok"}]}}
    agent.fail_next(Fault(200, JSON, body=rpc(result=reply)))
    answer = c.send(followup(first, 1))
    assert (answer.kind, answer.task_id, answer.state) == ("message", "", "unknown")
    assert answer.context_id == first.context_id and not answer.context_changed


@pytest.mark.parametrize(
    ("given", "state"),
    [
        ("TASK_STATE_INPUT_REQUIRED", "input-required"),
        ("auth-required", "auth-required"),
        ("TASK_STATE_UNSPECIFIED", "unknown"),
        ("thinking", "unknown"),
        (7, "unknown"),
        (None, "unknown"),
    ],
)
def test_task_states_are_normalised(
    agent: A2AAgentServer, clock: FakeClock, given: object, state: str
) -> None:
    task = {"kind": "task", "id": "t-1", "contextId": "c-1", "status": {"state": given}}
    agent.fail_next(Fault(200, JSON, body=rpc(result=task)))
    assert client(agent, clock, A2AVersion.V0_3).send(FIRST).state == state


def test_is_terminal() -> None:
    assert [s for s in TASK_STATES if is_terminal(s)] == [
        "completed",
        "canceled",
        "failed",
        "rejected",
    ]
    assert is_terminal("TASK_STATE_COMPLETED") and is_terminal("TASK_STATE_REJECTED")
    for state in ("TASK_STATE_WORKING", "input-required", "unknown", "dry-run", "", "cancelled"):
        assert not is_terminal(state)


# --- Ids khook cannot have been given ---------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "task", "says"),
    [
        ("", "t-1", "names a task but not its context"),
        ("c" * 257, "", "contextId"),
        ("c-1", "t" * 257, "taskId"),
        ("c-1\r\nX-Admin: yes", "", "contextId"),
        ("c-1", "t\x00", "taskId"),
    ],
)
def test_ids_no_agent_gave_are_refused_before_anything_is_sent(
    agent: A2AAgentServer, clock: FakeClock, context: str, task: str, says: str
) -> None:
    request = replace(FIRST, context_id=context, task_id=task, followup=True)
    with pytest.raises(AgentError) as err:
        client(agent, clock, A2AVersion.V0_3).send(request)
    assert not err.value.retryable and says in str(err.value)
    with pytest.raises(AgentError):
        DryRunClient(out=io.StringIO()).send(request)
    assert agent.raw == []


def test_an_agents_id_with_control_characters_is_not_kept(
    agent: A2AAgentServer, clock: FakeClock
) -> None:
    # Kept, it could never be sent back: every follow-up would be refused.
    task = {"kind": "task", "id": "t-1\n", "contextId": "c\x001", "status": {"state": "working"}}
    agent.fail_next(Fault(200, JSON, body=rpc(result=task)))
    first = client(agent, clock, A2AVersion.V0_3).send(FIRST)
    assert (first.task_id, first.context_id) == ("", "")


# --- The dry run --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_dry_run_prints_followups_as_they_would_be_sent(
    agent: A2AAgentServer, clock: FakeClock, version: A2AVersion
) -> None:
    out = io.StringIO()
    dry = DryRunClient(out=out, version=version)
    first = dry.send(FIRST)
    assert first.context_id.startswith("dry-run-") and first.task_id.startswith("dry-run-")
    answer = dry.send(followup(first, 1))
    assert (answer.context_id, answer.task_id) == (first.context_id, first.task_id)
    new_task = dry.send(followup(first, 2, task=False))
    assert new_task.context_id == first.context_id and new_task.task_id != first.task_id
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    messages = [line["body"]["params"]["message"] for line in lines]
    assert [(m.get("contextId"), m.get("taskId")) for m in messages] == [
        (None, None),
        (first.context_id, first.task_id),
        (first.context_id, None),
    ]
    # Exactly what the real client sends for the same follow-up.
    real = client(agent, clock, version).http_request(followup(first, 1))
    assert lines[1]["body"] == real.body
    assert lines[1]["headers"]["X-User-Id"] == real.headers["X-User-Id"] == "khook:shop"
