"""The Responses API end to end over a scripted upstream: exact tool loops and states."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from conftest import RunningServer
from scripted_upstream import ScriptedUpstream, Turn
from wire import assert_error, check_response, raw_stream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def create(server: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    """Non-streaming create over plain HTTP; validates the Response."""
    reply = httpx.post(f"{server.base_url}/responses", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()
    check_response(data)
    return data


@pytest.mark.parametrize("stream", [False, True])
def test_plain_text(server: RunningServer, scripted: ScriptedUpstream, stream: bool) -> None:
    scripted.enqueue(
        Turn(content="Four, as you asked.", prompt_tokens=19, completion_tokens=9, cached_tokens=4)
    )
    body = {"model": "scripted", "input": "What is 2+2?", "instructions": "Be brief."}
    final = raw_stream(server.base_url, body)[-1]["response"] if stream else create(server, body)
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Four, as you asked."
    assert final["output"][0]["id"].startswith("msg_")
    assert final["id"].startswith("resp_")
    assert final["instructions"] == "Be brief."
    assert final["usage"] == {
        "input_tokens": 19,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 9,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 28,
    }
    assert final["completed_at"] >= final["created_at"]
    sent = scripted.requests[-1]
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
    ]
    assert sent["model"] == "scripted"


def test_sdk_create_retrieve_delete(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="Hello!"))
    response = client.responses.create(model="scripted", input="Hi", metadata={"k": "v"})
    assert response.output_text == "Hello!"
    assert response.metadata == {"k": "v"}
    again = client.responses.retrieve(response.id)
    assert again.model_dump() == response.model_dump()
    items = client.responses.input_items.list(response.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "Hi"  # type: ignore[union-attr]
    deleted = client.responses.delete(response.id)
    assert deleted is None  # the SDK returns None for this endpoint
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_delete_body(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="x"))
    created = create(server, {"model": "scripted", "input": "x"})
    reply = httpx.delete(f"{server.base_url}/responses/{created['id']}")
    assert reply.json() == {"id": created["id"], "object": "response", "deleted": True}


def test_store_false_is_not_kept(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="secret"))
    response = client.responses.create(model="scripted", input="x", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    scripted.enqueue(Turn(content="y"))
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="scripted", input="y", previous_response_id=response.id)
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_previous_response_chain(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="A1"), Turn(content="A2"), Turn(content="A3"))
    first = client.responses.create(model="scripted", input="Q1", instructions="first rules")
    second = client.responses.create(model="scripted", input="Q2", previous_response_id=first.id)
    third = client.responses.create(
        model="scripted",
        input=[{"role": "user", "content": "Q3"}],
        previous_response_id=second.id,
        instructions="third rules",
    )
    assert third.previous_response_id == second.id
    # Instructions do not carry over; all items of the chain do.
    assert scripted.requests[-1]["messages"] == [
        {"role": "system", "content": "third rules"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": "Q3"},
    ]
    assert scripted.requests[1]["messages"][0] == {"role": "user", "content": "Q1"}


def test_manual_chaining_with_output_items(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="Paris"), Turn(content="About 2 million"))
    history: list[Any] = [{"role": "user", "content": "Capital of France?"}]
    first = client.responses.create(model="scripted", input=history, store=False)
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "Population?"})
    second = client.responses.create(model="scripted", input=history)
    assert second.output_text == "About 2 million"
    assert scripted.requests[-1]["messages"][1] == {"role": "assistant", "content": "Paris"}
    listed = client.responses.input_items.list(second.id, order="asc")
    assert listed.data[1].id == first.output[0].id  # passed back verbatim, id kept


@pytest.mark.parametrize("stream", [False, True])
def test_function_call_round_trip(
    server: RunningServer, client: OpenAI, scripted: ScriptedUpstream, stream: bool
) -> None:
    scripted.enqueue(
        Turn(tool_calls=[("call_abc", "get_weather", '{"city": "Paris"}')]),
        Turn(content="It is sunny in Paris."),
    )
    body = {"model": "scripted", "input": "Weather in Paris?", "tools": [WEATHER]}
    if stream:
        events = raw_stream(server.base_url, body)
        kinds = [e["type"] for e in events]
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
        first = events[-1]["response"]
    else:
        first = create(server, body)
    call = first["output"][0]
    assert call["type"] == "function_call"
    assert call["id"].startswith("fc_")
    assert (call["call_id"], call["name"]) == ("call_abc", "get_weather")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert first["tools"][0]["name"] == "get_weather"
    sent = scripted.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    second = client.responses.create(
        model="scripted",
        previous_response_id=first["id"],
        input=[{"type": "function_call_output", "call_id": "call_abc", "output": '{"t": 21}'}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "It is sunny in Paris."
    messages = scripted.requests[-1]["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == "call_abc"
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_abc", "content": '{"t": 21}'}


def test_parallel_calls_and_tool_choice(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(
        Turn(
            tool_calls=[
                ("c1", "get_weather", '{"city":"A"}'),
                ("c2", "get_weather", '{"city":"B"}'),
            ]
        )
    )
    events = raw_stream(
        server.base_url,
        {
            "model": "scripted",
            "input": "A and B",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_weather"},
        },
    )
    final = events[-1]["response"]
    assert [o["call_id"] for o in final["output"]] == ["c1", "c2"]
    assert final["tool_choice"] == {"type": "function", "name": "get_weather"}
    sent = scripted.requests[-1]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


def test_tool_choice_none_offers_no_tools(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="no tools"))
    client.responses.create(model="scripted", input="x", tools=[WEATHER], tool_choice="none")  # type: ignore[list-item]
    assert "tools" not in scripted.requests[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_max_output_tokens_incomplete(
    server: RunningServer, scripted: ScriptedUpstream, stream: bool
) -> None:
    scripted.enqueue(Turn(content="a long story cut", finish_reason="length"))
    body = {"model": "scripted", "input": "story", "max_output_tokens": 16}
    final = raw_stream(server.base_url, body)[-1]["response"] if stream else create(server, body)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"
    assert scripted.requests[-1]["max_tokens"] == 16


def test_refusal_and_reasoning(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(reasoning="think think", refusal="I can't help with that."))
    events = raw_stream(server.base_url, {"model": "scripted", "input": "bad"})
    final = events[-1]["response"]
    assert [o["type"] for o in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"][0]["text"] == "think think"
    assert final["output"][1]["content"] == [
        {"type": "refusal", "refusal": "I can't help with that."}
    ]


def test_upstream_failure_non_streaming(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(error_status=500, error_message="upstream exploded"))
    reply = httpx.post(f"{server.base_url}/responses", json={"model": "scripted", "input": "x"})
    error = assert_error(reply, 502)
    assert "upstream exploded" in error["message"]
    assert error["type"] == "server_error"


def test_upstream_failure_streaming(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="partial answer here", fail_after_chunks=2))
    events = raw_stream(server.base_url, {"model": "scripted", "input": "x"})
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.failed"
    assert final["status"] == "failed"
    assert final["error"]["message"]
    stored = httpx.get(f"{server.base_url}/responses/{final['id']}").json()
    assert stored["status"] == "failed"


def test_unreachable_upstream(server: RunningServer) -> None:
    reply = httpx.post(f"{server.base_url}/responses", json={"model": "unreachable", "input": "x"})
    error = assert_error(reply, 502)
    assert "unreachable" in error["message"]
    events = raw_stream(server.base_url, {"model": "unreachable", "input": "x"})
    assert events[-1]["type"] == "response.failed"
    assert "unreachable" in events[-1]["response"]["error"]["message"]


def test_sdk_stream_helper(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="streamed words arrive"))
    with client.responses.stream(model="scripted", input="go") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed words arrive"
    assert final.output_text == "streamed words arrive"


async def test_async_sdk(aclient: AsyncOpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="async hello"), Turn(content="async stream"))
    response = await aclient.responses.create(model="scripted", input="hi")
    assert response.output_text == "async hello"
    stream = await aclient.responses.create(model="scripted", input="hi", stream=True)
    events = [event.model_dump() async for event in stream]
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "async stream"


def test_input_items_pagination(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="ok"))
    items = [{"role": "user", "content": f"m{n}"} for n in range(5)]
    response = client.responses.create(model="scripted", input=items)  # type: ignore[arg-type]
    page = client.responses.input_items.list(response.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["m0", "m1"]  # type: ignore[union-attr]
    assert page.has_more is True and page.first_id == page.data[0].id
    rest = client.responses.input_items.list(response.id, limit=10, order="asc", after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["m2", "m3", "m4"]  # type: ignore[union-attr]
    assert rest.has_more is False
    newest = client.responses.input_items.list(response.id, limit=1)
    assert newest.data[0].content[0].text == "m4"  # type: ignore[union-attr]
    everything = list(client.responses.input_items.list(response.id, limit=2, order="asc"))
    assert len(everything) == 5


def test_cancel_synchronous_is_400(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="done"))
    response = client.responses.create(model="scripted", input="x")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_missing")


def test_models_endpoints(client: OpenAI) -> None:
    names = [m.id for m in client.models.list()]
    assert {"smollm2", "scripted", "unreachable"} <= set(names)
    assert client.models.retrieve("scripted").id == "scripted"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("nope")
    assert err.value.code == "model_not_found"


def test_echoed_fields(server: RunningServer, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="ok"))
    body = {
        "model": "scripted",
        "input": "x",
        "temperature": 0.2,
        "top_p": 0.5,
        "user": "u1",
        "safety_identifier": "s1",
        "prompt_cache_key": "k1",
        "service_tier": "flex",
        "parallel_tool_calls": False,
        "truncation": "auto",
        "max_tool_calls": 3,
        "reasoning": {"effort": "low"},
        "text": {"verbosity": "low"},
        "stream_options": {"include_obfuscation": False},
    }
    final = create(server, body)
    for key in (
        "temperature",
        "top_p",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "service_tier",
        "parallel_tool_calls",
        "truncation",
        "max_tool_calls",
    ):
        assert final[key] == body[key], key
    assert final["reasoning"] == {"effort": "low", "summary": None}
    assert final["text"] == {"format": {"type": "text"}, "verbosity": "low"}
    sent = scripted.requests[-1]
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.5)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_is_429(
    server: RunningServer, scripted: ScriptedUpstream, stream: bool
) -> None:
    scripted.enqueue(Turn(error_status=429, error_message="slow down"))
    body = {"model": "scripted", "input": "x", "stream": stream}
    reply = httpx.post(f"{server.base_url}/responses", json=body)
    error = assert_error(reply, 429, code="rate_limit_exceeded")
    assert error["type"] == "rate_limit_error"
    assert int(reply.headers["retry-after"]) >= 1


def test_stream_disconnect_stores_cancelled(
    server: RunningServer, scripted: ScriptedUpstream
) -> None:
    import time

    words = " ".join(f"w{n}" for n in range(200))
    scripted.enqueue(Turn(content=words, delay=0.02))
    body = {"model": "scripted", "input": "go", "stream": True}
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", f"{server.base_url}/responses", json=body) as reply,
    ):
        lines = reply.iter_lines()
        created = next(line for line in lines if line.startswith("data: "))
        response_id = json.loads(created[6:])["response"]["id"]
        for line in lines:
            if '"response.output_text.delta"' in line:
                break
    deadline = time.monotonic() + 10
    while True:
        got = httpx.get(f"{server.base_url}/responses/{response_id}")
        if got.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stored = got.json()
    check_response(stored)
    assert stored["status"] == "cancelled"
    text = stored["output"][0]["content"][0]["text"]
    assert text.startswith("w0") and len(text) < len(words)
    assert scripted.disconnects >= 1


def test_image_input_to_vision_model(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="A red square."))
    image = "data:image/png;base64,iVBORw0KGgo="
    response = client.responses.create(
        model="scripted-vision",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": image, "detail": "low"},
                ],
            }
        ],
    )
    assert response.output_text == "A red square."
    assert scripted.requests[-1]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
            ],
        }
    ]
    items = client.responses.input_items.list(response.id)
    assert items.data[0].content[1].type == "input_image"  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(
            model="scripted",
            input=[{"role": "user", "content": [{"type": "input_image", "image_url": image}]}],
        )
    assert "does not accept image inputs" in err.value.message


def test_deleted_turn_leaves_the_chain(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="A1"), Turn(content="A2"), Turn(content="A3"))
    one = client.responses.create(model="scripted", input="Q1")
    two = client.responses.create(model="scripted", input="Q2", previous_response_id=one.id)
    client.responses.delete(one.id)
    client.responses.create(model="scripted", input="Q3", previous_response_id=two.id)
    assert scripted.requests[-1]["messages"] == [
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"},
        {"role": "user", "content": "Q3"},
    ]
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="scripted", input="x", previous_response_id=one.id)


def test_retrieve_with_stream_needs_background(client: OpenAI, scripted: ScriptedUpstream) -> None:
    scripted.enqueue(Turn(content="done"))
    response = client.responses.create(model="scripted", input="x")
    reply = httpx.get(f"{client.base_url}responses/{response.id}", params={"stream": "true"})
    assert_error(reply, 400, param="stream")
    with pytest.raises(openai.BadRequestError):
        client.responses.retrieve(response.id, stream=True)
    reply = httpx.get(f"{client.base_url}responses/resp_missing", params={"stream": "true"})
    assert_error(reply, 404)


def test_interleaved_call_fragments_fail_clearly() -> None:
    from responsed.engines.base import EngineError, ToolCallDelta
    from responsed.runtime.translator import Translator

    translator = Translator({"id": "resp_1", "output": []})
    translator.feed(ToolCallDelta(0, "c0", "f", '{"a":'))
    translator.feed(ToolCallDelta(1, "c1", "f", "{}"))
    with pytest.raises(EngineError, match="interleaved"):
        translator.feed(ToolCallDelta(0, arguments="1}"))
