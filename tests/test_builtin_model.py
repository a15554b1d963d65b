"""The built-in model (SmolLM2-135M through llama-cpp-python) end to end via the SDK."""

from __future__ import annotations

import json

import jsonschema
import pytest
from openai import AsyncOpenAI, OpenAI

from conftest import RunningServer
from wire import check_sdk_response, raw_stream

WEATHER_PARAMS = {
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a location",
    "parameters": WEATHER_PARAMS,
    "strict": True,
}


def test_plain_text(client: OpenAI) -> None:
    response = client.responses.create(
        model="smollm2", input="Say hello.", max_output_tokens=16, temperature=0
    )
    check_sdk_response(response)
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


def test_streaming_and_chain(server: RunningServer, client: OpenAI) -> None:
    events = raw_stream(
        server.base_url,
        {
            "model": "smollm2",
            "input": "Name a colour.",
            "instructions": "Answer in one word.",
            "max_output_tokens": 16,
            "temperature": 0,
        },
    )
    first = events[-1]["response"]
    assert any(e["type"] == "response.output_text.delta" for e in events)
    second = client.responses.create(
        model="smollm2",
        input="Another one.",
        previous_response_id=first["id"],
        max_output_tokens=16,
        temperature=0,
    )
    assert second.previous_response_id == first["id"]
    assert second.usage is not None
    # The second turn's prompt starts with the first turn's: the KV cache is reused.
    assert second.usage.input_tokens > first["usage"]["input_tokens"]
    assert second.usage.input_tokens_details.cached_tokens > 0


def test_max_output_tokens_incomplete(client: OpenAI) -> None:
    response = client.responses.create(
        model="smollm2", input="Write a long story about a dragon.", max_output_tokens=16
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage is not None and response.usage.output_tokens == 16


@pytest.mark.parametrize("stream", [False, True])
def test_forced_function_call(server: RunningServer, client: OpenAI, stream: bool) -> None:
    body = {
        "model": "smollm2",
        "input": "What's the weather in Paris?",
        "tools": [WEATHER],
        "tool_choice": "required",
    }
    if stream:
        response = raw_stream(server.base_url, body)[-1]["response"]
    else:
        response = client.responses.create(**body).model_dump(mode="json", exclude_unset=True)  # type: ignore[arg-type]
    calls = [o for o in response["output"] if o["type"] == "function_call"]
    assert len(calls) == 1
    assert calls[0]["name"] == "get_weather"
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER_PARAMS)
    # Round trip: the function's output goes back and the model answers in text.
    follow = client.responses.create(
        model="smollm2",
        previous_response_id=response["id"],
        input=[
            {
                "type": "function_call_output",
                "call_id": calls[0]["call_id"],
                "output": '{"temperature": 21, "unit": "celsius"}',
            }
        ],
        max_output_tokens=32,
    )
    assert follow.output_text.strip()


def test_named_function_choice(client: OpenAI) -> None:
    other = {
        **WEATHER,
        "name": "get_time",
        "description": "Current time",
        "parameters": {
            "type": "object",
            "properties": {"tz": {"type": "string"}},
            "required": ["tz"],
            "additionalProperties": False,
        },
    }
    response = client.responses.create(
        model="smollm2",
        input="What time is it in Tokyo?",
        tools=[WEATHER, other],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_time"},
        temperature=0,
        max_output_tokens=64,
    )
    call = response.output[0]
    assert call.type == "function_call"
    assert call.name == "get_time"
    assert "tz" in json.loads(call.arguments)


async def test_concurrent_clients_queue(aclient: AsyncOpenAI) -> None:
    import asyncio

    async def one(n: int) -> str:
        response = await aclient.responses.create(
            model="smollm2", input=f"Count to {n}.", max_output_tokens=16, store=False
        )
        return response.output_text

    texts = await asyncio.gather(*(one(n) for n in range(6)))
    assert all(t.strip() for t in texts)


@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_400_before_streaming(server: RunningServer, stream: bool) -> None:
    import httpx

    from wire import assert_error

    body = {"model": "smollm2", "input": "word " * 20000, "stream": stream}
    reply = httpx.post(f"{server.base_url}/responses", json=body, timeout=120)
    assert_error(reply, 400, code="context_length_exceeded")
