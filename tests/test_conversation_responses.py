"""Responses in a conversation: its items come first, the response's are appended."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from scripted_upstream import ScriptedUpstream, Turn


def texts(messages: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(m["role"], m["content"]) for m in messages]


def test_response_appends_to_conversation(client: OpenAI, scripted: ScriptedUpstream) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}],
        metadata={"topic": "names"},
    )
    scripted.enqueue(Turn(content="Nice to meet you, Ada."), Turn(content="You are Ada."))
    first = client.responses.create(model="scripted", input="Hello!", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert texts(scripted.requests[0]["messages"]) == [
        ("user", "My name is Ada."),
        ("user", "Hello!"),
    ]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", "message", "message"]
    assert items[2].id == first.output[0].id
    # The next turn sees everything so far, given as {"id": …} this time.
    second = client.responses.create(
        model="scripted", input="Who am I?", conversation={"id": conversation.id}
    )
    assert texts(scripted.requests[1]["messages"]) == [
        ("user", "My name is Ada."),
        ("user", "Hello!"),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "Who am I?"),
    ]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert len(items) == 5
    assert items[-1].id == second.output[0].id


def test_conversation_and_previous_response_are_exclusive(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    conversation = client.conversations.create()
    earlier = client.responses.create(model="scripted", input="hi")
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model="scripted",
            input="again",
            conversation=conversation.id,
            previous_response_id=earlier.id,
        )
    assert "previous_response_id" in error.value.message
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="scripted", input="x", conversation="conv_missing")


def test_failed_response_is_not_appended(client: OpenAI, scripted: ScriptedUpstream) -> None:
    conversation = client.conversations.create()
    scripted.enqueue(Turn(error_status=500))
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="scripted", input="boom", conversation=conversation.id)
    assert client.conversations.items.list(conversation.id).data == []


def test_background_response_appends_when_done(client: OpenAI, scripted: ScriptedUpstream) -> None:
    conversation = client.conversations.create()
    scripted.enqueue(Turn(content="later", delay=0.02))
    created = client.responses.create(
        model="scripted", input="in the background", conversation=conversation.id, background=True
    )
    deadline = time.monotonic() + 30
    while client.responses.retrieve(created.id).status != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [getattr(i, "role", None) for i in items] == ["user", "assistant"]


def test_conversation_on_the_builtin_model(client: OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Remember the word apple."}]
    )
    response = client.responses.create(
        model="smollm2",
        input="What word?",
        conversation=conversation.id,
        max_output_tokens=16,
        temperature=0,
    )
    assert response.output_text
    assert len(client.conversations.items.list(conversation.id).data) == 3
