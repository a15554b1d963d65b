"""The built-in llama.cpp engine, against the real SmolLM2-135M GGUF."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema
import pytest

from responsed.config import ConfigError, ModelConfig, builtin_model_path
from responsed.engines.base import (
    Delta,
    EngineError,
    EngineOverloaded,
    EngineRequest,
    Finish,
    FunctionSpec,
    TextDelta,
    ToolCallDelta,
    UnsupportedFeature,
)
from responsed.engines.llamacpp import LlamaCppEngine
from responsed.engines.llamacpp_prompt import parse_tool_calls, render_messages

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}
WEATHER = FunctionSpec("get_weather", "Get the current weather in a city.", WEATHER_PARAMS)
TIME = FunctionSpec(
    "get_time",
    "Get the current time in a timezone.",
    {
        "type": "object",
        "properties": {"timezone": {"type": "string", "maxLength": 40}},
        "required": ["timezone"],
    },
)


def _config(**overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "name": "smollm2",
        "engine": "llamacpp",
        "path": str(builtin_model_path()),
        "n_ctx": 2048,
        # One thread: two spin-waiting ggml threads crawl when other processes share
        # the cores (tests often run side by side).
        "n_threads": 1,
    }
    return ModelConfig(**(fields | overrides))


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    eng = LlamaCppEngine.from_config(_config())
    await eng.start()
    yield eng
    await eng.aclose()


def _user(text: str, **kwargs: Any) -> EngineRequest:
    kwargs.setdefault("temperature", 0.0)
    return EngineRequest(messages=[{"role": "user", "content": text}], **kwargs)


async def _collect(eng: LlamaCppEngine, request: EngineRequest) -> list[Delta]:
    return [delta async for delta in eng.stream(request)]


def _finish(deltas: list[Delta]) -> Finish:
    finishes = [d for d in deltas if isinstance(d, Finish)]
    assert len(finishes) == 1
    assert deltas[-1] is finishes[0]
    return finishes[0]


def _text(deltas: list[Delta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


async def test_plain_text_stream(engine: LlamaCppEngine) -> None:
    assert engine.context_window == 2048
    assert engine.capabilities.tools
    assert not engine.capabilities.images
    deltas = await _collect(engine, _user("What is the capital of France?", max_output_tokens=24))
    finish = _finish(deltas)
    assert finish.reason in ("stop", "length")
    assert finish.usage is not None
    assert finish.usage.input_tokens > 10
    assert 1 <= finish.usage.output_tokens <= 24
    assert _text(deltas).strip()


async def test_max_output_tokens_gives_length(engine: LlamaCppEngine) -> None:
    deltas = await _collect(
        engine, _user("Write a long story about a dragon.", max_output_tokens=5)
    )
    finish = _finish(deltas)
    assert finish.reason == "length"
    assert finish.usage is not None
    assert finish.usage.output_tokens == 5


async def test_shared_prefix_is_cached(engine: LlamaCppEngine) -> None:
    system = {"role": "system", "content": "You are a terse assistant. " * 10}
    first = EngineRequest(
        messages=[system, {"role": "user", "content": "Name a color."}], max_output_tokens=3
    )
    second = EngineRequest(
        messages=[system, {"role": "user", "content": "Name a fruit."}], max_output_tokens=3
    )
    await _collect(engine, first)
    usage = _finish(await _collect(engine, second)).usage
    assert usage is not None
    assert 40 < usage.cached_tokens < usage.input_tokens


async def test_required_tool_call(engine: LlamaCppEngine) -> None:
    request = _user(
        "What's the weather in Paris in celsius?",
        tools=[WEATHER],
        tool_choice="required",
        max_output_tokens=80,
    )
    deltas = await _collect(engine, request)
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert len(calls) == 1
    assert calls[0].index == 0
    assert calls[0].name == "get_weather"
    assert re.fullmatch(r"call_[A-Za-z0-9]{24}", calls[0].call_id or "")
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_PARAMS)
    assert _finish(deltas).reason == "tool_calls"
    assert not _text(deltas)


async def test_required_tool_call_picks_among_functions(engine: LlamaCppEngine) -> None:
    request = _user("What time is it in Tokyo?", tools=[WEATHER, TIME], tool_choice="required")
    request.max_output_tokens = 60
    deltas = await _collect(engine, request)
    (call,) = [d for d in deltas if isinstance(d, ToolCallDelta)]
    schemas = {WEATHER.name: WEATHER.parameters, TIME.name: TIME.parameters}
    assert call.name in schemas
    jsonschema.validate(json.loads(call.arguments), schemas[call.name] or {})
    assert _finish(deltas).reason == "tool_calls"


async def test_named_tool_choice(engine: LlamaCppEngine) -> None:
    request = _user("What time is it in Tokyo?", tools=[WEATHER, TIME], tool_choice="get_time")
    request.max_output_tokens = 60
    deltas = await _collect(engine, request)
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert [c.name for c in calls] == ["get_time"]
    jsonschema.validate(json.loads(calls[0].arguments), TIME.parameters or {})
    assert _finish(deltas).reason == "tool_calls"


async def test_unknown_named_tool_choice(engine: LlamaCppEngine) -> None:
    with pytest.raises(UnsupportedFeature) as info:
        await _collect(engine, _user("hi", tools=[WEATHER], tool_choice="nope"))
    assert info.value.param == "tool_choice"


async def test_response_format_json_schema(engine: LlamaCppEngine) -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 30},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
        },
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    request = _user(
        "Invent a person and give their name and age as JSON.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema, "strict": True},
        },
        max_output_tokens=60,
    )
    deltas = await _collect(engine, request)
    assert _finish(deltas).reason == "stop"
    jsonschema.validate(json.loads(_text(deltas)), schema)


async def test_response_format_json_object(engine: LlamaCppEngine) -> None:
    request = _user(
        "Give a JSON object with a key 'ok' set to true.",
        response_format={"type": "json_object"},
        max_output_tokens=40,
    )
    deltas = await _collect(engine, request)
    if _finish(deltas).reason == "stop":
        assert isinstance(json.loads(_text(deltas)), dict)
    else:
        assert _text(deltas).lstrip().startswith("{")


async def test_concurrent_requests_queue_without_interleaving(
    engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    active, peak = 0, 0
    lock = threading.Lock()
    emitted: dict[tuple[int, ...], list[str]] = {}
    generate = engine._generate

    def spy(llama: Any, plan: Any, emit: Callable[[str, Any], None], cancel: Any) -> Any:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        pieces = emitted.setdefault(tuple(plan.tokens), [])

        def record(text: str, logprobs: Any) -> None:
            pieces.append(text)
            emit(text, logprobs)

        try:
            return generate(llama, plan, record, cancel)
        finally:
            with lock:
                active -= 1

    monkeypatch.setattr(engine, "_generate", spy)
    topics = ["cats", "the sea", "bread", "rockets", "winter", "music", "trees", "chess"]
    requests = [
        _user(f"Tell me one fact about {topic}.", max_output_tokens=6 + i, temperature=0.7)
        for i, topic in enumerate(topics)
    ]
    results = await asyncio.gather(*(_collect(engine, r) for r in requests))
    assert peak == 1
    assert len(emitted) == len(requests)
    for request, deltas in zip(requests, results, strict=True):
        usage = _finish(deltas).usage
        assert usage is not None
        plan = engine._plan(request)
        assert usage.input_tokens == len(plan.tokens)
        assert 1 <= usage.output_tokens <= (request.max_output_tokens or 0)
        assert _text(deltas) == "".join(emitted[tuple(plan.tokens)])


async def test_queue_overflow_raises_overloaded() -> None:
    eng = LlamaCppEngine.from_config(_config(max_queue=1, n_ctx=512))
    await eng.start()
    try:
        first = eng.stream(_user("Count from one to a hundred.", max_output_tokens=200))
        assert isinstance(await anext(first), TextDelta)
        waiting = asyncio.ensure_future(_collect(eng, _user("Hi", max_output_tokens=2)))
        for _ in range(200):
            if eng._pool is not None and eng._pool._waiters:
                break
            await asyncio.sleep(0.01)
        with pytest.raises(EngineOverloaded) as info:
            await _collect(eng, _user("Hello", max_output_tokens=2))
        assert info.value.status == 429
        assert info.value.retry_after > 0
        await first.aclose()
        _finish(await asyncio.wait_for(waiting, 30))
    finally:
        await eng.aclose()


async def test_aclose_fails_running_and_waiting_streams() -> None:
    eng = LlamaCppEngine.from_config(_config(n_ctx=512))
    await eng.start()
    running = eng.stream(_user("Count from one to a hundred.", max_output_tokens=400))
    assert isinstance(await anext(running), TextDelta)
    waiting = asyncio.ensure_future(_collect(eng, _user("Hi", max_output_tokens=2)))
    for _ in range(200):
        if eng._pool is not None and eng._pool._waiters:
            break
        await asyncio.sleep(0.01)
    await asyncio.wait_for(eng.aclose(), 30)
    with pytest.raises(EngineError) as info:
        async for _ in running:
            pass
    assert info.value.status == 503
    with pytest.raises(EngineError):
        await waiting


async def test_cancelled_consumer_frees_the_instance(engine: LlamaCppEngine) -> None:
    stream = engine.stream(_user("Write a very long essay about history.", max_output_tokens=500))
    seen = [await anext(stream), await anext(stream)]
    assert all(isinstance(d, TextDelta) for d in seen)
    (cancelled,) = engine._jobs
    await stream.aclose()
    started = time.monotonic()
    deltas = await asyncio.wait_for(_collect(engine, _user("Hi", max_output_tokens=3)), 30)
    assert _finish(deltas).usage is not None
    assert time.monotonic() - started < 5
    assert not cancelled.thread.is_alive()


async def test_image_input_is_unsupported(engine: LlamaCppEngine) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]
    request = EngineRequest(messages=[{"role": "user", "content": content}])
    with pytest.raises(UnsupportedFeature) as info:
        await _collect(engine, request)
    assert info.value.param == "input"
    assert "image" in info.value.message


async def test_prompt_longer_than_context(engine: LlamaCppEngine) -> None:
    with pytest.raises(EngineError) as info:
        await _collect(engine, _user("word " * 3000))
    assert info.value.status == 400


def test_missing_model_file(tmp_path: Any) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ConfigError, match="model file not found"):
        LlamaCppEngine.from_config(_config(path=str(missing)))


def test_render_messages_tool_traffic() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "3 degrees"},
        {"role": "user", "content": "Thanks"},
    ]
    turns = render_messages(messages, model="m", tools=[WEATHER])
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[0]["content"].startswith("Be brief.")
    assert "get_weather" in turns[0]["content"]
    assert turns[2]["content"] == (
        '<tool_call>{"name": "get_weather", "arguments": {"location": "Oslo"}}</tool_call>'
    )
    assert turns[3]["content"] == "<tool_response>\n3 degrees\n</tool_response>\n\nThanks"
    # Reasoning given back for the call is rendered the way think-tag models write it.
    messages[2] = {**messages[2], "reasoning_content": "Oslo needs a lookup."}
    turns = render_messages(messages, model="m", tools=[WEATHER])
    assert turns[2]["content"].startswith("<think>\nOslo needs a lookup.\n</think>\n\n<tool_call>")


def test_parse_tool_calls() -> None:
    text = '<tool_call>{"name": "get_weather", "arguments": {"location": "Rome"}}</tool_call>'
    assert parse_tool_calls(text, [WEATHER]) == [("get_weather", '{"location":"Rome"}')]
    assert parse_tool_calls('<tool_call>{"name": "other", "arguments": {}}', [WEATHER]) is None
    assert parse_tool_calls("<tool_call>not json</tool_call>", [WEATHER]) is None
    assert parse_tool_calls("plain answer", [WEATHER]) is None
