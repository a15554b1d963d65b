"""The checks themselves: the SDK fixtures validate what they receive, and a Response or
stream that breaks the contract is caught."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from openai import AsyncOpenAI, OpenAI

from responsed.testing import assert_valid_event_stream
from scripted_upstream import ScriptedUpstream, Turn
from wire import check_response, check_stream, checked


def test_sdk_fixture_validates_replies_and_streams(
    client: OpenAI, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content="one"), Turn(content="two words"))
    replies, streams = checked["replies"], checked["streams"]
    response = client.responses.create(model="scripted", input="x")
    client.responses.input_items.list(response.id)
    with client.responses.stream(model="scripted", input="y") as stream:
        stream.get_final_response()
    assert checked["replies"] == replies + 2
    assert checked["streams"] == streams + 1


async def test_async_fixture_validates_streams(
    aclient: AsyncOpenAI, scripted: ScriptedUpstream
) -> None:
    scripted.enqueue(Turn(content="async words"))
    streams = checked["streams"]
    stream = await aclient.responses.create(model="scripted", input="x", stream=True)
    async for _ in stream:
        pass
    assert checked["streams"] == streams + 1


def test_broken_objects_are_caught(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="fine"))
    raw = client.responses.with_raw_response.create(model="scripted", input="x")
    good = raw.http_response.json()
    missing = {k: v for k, v in good.items() if k != "completed_at"}
    with pytest.raises(jsonschema.ValidationError):
        check_response(missing)
    wrong = copy.deepcopy(good)
    wrong["usage"]["input_tokens"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        check_response(wrong)


def test_broken_streams_are_caught() -> None:
    response = {"id": "resp_1", "output": []}
    created = {"type": "response.created", "sequence_number": 0, "response": response}
    progress = {"type": "response.in_progress", "sequence_number": 1, "response": response}
    done = {"type": "response.completed", "sequence_number": 2, "response": response}
    assert assert_valid_event_stream([created, progress, done]) == response
    with pytest.raises(AssertionError, match="sequence_number"):
        assert_valid_event_stream([created, {**progress, "sequence_number": 5}, done])
    with pytest.raises(AssertionError, match="terminal"):
        assert_valid_event_stream([created, progress])
    delta = {
        "type": "response.output_text.delta",
        "sequence_number": 2,
        "item_id": "m",
        "output_index": 0,
        "content_index": 0,
        "delta": "x",
        "logprobs": [],
    }
    with pytest.raises(AssertionError, match="outside an open content part"):
        assert_valid_event_stream([created, progress, delta, {**done, "sequence_number": 3}])
    with pytest.raises(jsonschema.ValidationError):  # schemas first: a bare response fails
        check_stream([created, progress, done])
