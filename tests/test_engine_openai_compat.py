"""OpenAICompatEngine against a scripted upstream and a real llama-cpp-python server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import orjson
import pytest

from responsed.config import ModelConfig
from responsed.engines.base import (
    Delta,
    Engine,
    EngineError,
    EngineOverloaded,
    EngineRequest,
    Finish,
    FunctionSpec,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from responsed.engines.openai_compat import OpenAICompatEngine, _SSEParser
from responsed.engines.registry import build_engine
from scripted_upstream import ScriptedUpstream, Turn

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as server:
        yield server


@pytest.fixture
async def engine(upstream: ScriptedUpstream) -> AsyncIterator[OpenAICompatEngine]:
    upstream.reset()
    config = ModelConfig(
        name="alias",
        engine="openai",
        base_url=upstream.base_url,
        api_key="sk-test",
        upstream_model="up-model",
        context_window=8192,
    )
    built = build_engine(config)
    assert isinstance(built, OpenAICompatEngine)
    await built.start()
    yield built
    await built.aclose()


async def collect(engine: Engine, request: EngineRequest | None = None) -> list[Delta]:
    return [d async for d in engine.stream(request or EngineRequest(messages=HELLO))]


def text_of(deltas: list[Delta], kind: type[TextDelta | RefusalDelta | ReasoningDelta]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, kind))


def calls_of(deltas: list[Delta]) -> dict[int, tuple[str | None, str | None, str]]:
    calls: dict[int, tuple[str | None, str | None, str]] = {}
    for d in deltas:
        if isinstance(d, ToolCallDelta):
            cid, name, args = calls.get(d.index, (None, None, ""))
            calls[d.index] = (cid or d.call_id, name or d.name, args + d.arguments)
    return calls


def only_finish(deltas: list[Delta]) -> Finish:
    finishes = [d for d in deltas if isinstance(d, Finish)]
    assert len(finishes) == 1
    assert deltas[-1] is finishes[0]
    return finishes[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- scripted upstream -------------------------------------------------------------


async def test_text_streams_in_pieces_with_usage(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(
        Turn(
            content="Hello there, world!",
            prompt_tokens=12,
            completion_tokens=7,
            cached_tokens=8,
            reasoning_tokens=2,
        )
    )
    deltas = await collect(engine)
    assert len([d for d in deltas if isinstance(d, TextDelta)]) == 3
    assert text_of(deltas, TextDelta) == "Hello there, world!"
    assert only_finish(deltas) == Finish("stop", Usage(12, 7, cached_tokens=8, reasoning_tokens=2))
    assert engine.context_window == 8192
    assert not engine.capabilities.images


async def test_tool_call_fragments_reassemble(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    args = '{"city": "Paris", "unit": "celsius", "days": [1, 2, 3]}'
    upstream.enqueue(Turn(tool_calls=[("call_1", "get_weather", args)]))
    deltas = await collect(engine)
    fragments = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert len(fragments) > 3
    assert fragments[0].call_id == "call_1"
    assert fragments[0].name == "get_weather"
    assert all(f.call_id is None and f.name is None for f in fragments[1:])
    assert calls_of(deltas) == {0: ("call_1", "get_weather", args)}
    assert only_finish(deltas).reason == "tool_calls"


async def test_two_parallel_tool_calls(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(
        Turn(tool_calls=[("call_a", "lookup", '{"q": "alpha"}'), ("call_b", "fetch", "{}")])
    )
    deltas = await collect(engine)
    assert calls_of(deltas) == {
        0: ("call_a", "lookup", '{"q": "alpha"}'),
        1: ("call_b", "fetch", "{}"),
    }
    assert only_finish(deltas).reason == "tool_calls"


async def test_reasoning_content(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Turn(reasoning="Think step by step.", content="42"))
    deltas = await collect(engine)
    assert text_of(deltas, ReasoningDelta) == "Think step by step."
    assert text_of(deltas, TextDelta) == "42"
    first_text = next(i for i, d in enumerate(deltas) if isinstance(d, TextDelta))
    assert all(isinstance(d, ReasoningDelta) for d in deltas[:first_text])


async def test_refusal(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Turn(refusal="I can't help with that."))
    deltas = await collect(engine)
    assert text_of(deltas, RefusalDelta) == "I can't help with that."
    assert text_of(deltas, TextDelta) == ""
    assert only_finish(deltas).reason == "stop"


async def test_finish_length(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Turn(content="cut", finish_reason="length"))
    assert only_finish(await collect(engine)).reason == "length"


async def test_function_call_reason_maps_to_tool_calls(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(tool_calls=[("c", "f", "{}")], finish_reason="function_call"))
    assert only_finish(await collect(engine)).reason == "tool_calls"


async def test_upstream_without_usage_still_finishes(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(content="no usage here", send_usage=False))
    deltas = await collect(engine)
    assert text_of(deltas, TextDelta) == "no usage here"
    assert only_finish(deltas) == Finish("stop", None)


async def test_upstream_ignoring_stream_flag(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(
        Turn(reasoning="hmm", tool_calls=[("c1", "f", '{"a": 1}')], ignore_stream=True)
    )
    deltas = await collect(engine)
    assert text_of(deltas, ReasoningDelta) == "hmm"
    assert calls_of(deltas) == {0: ("c1", "f", '{"a": 1}')}
    assert only_finish(deltas) == Finish("tool_calls", Usage(10, 5))


async def test_request_body(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    request = EngineRequest(
        messages=HELLO,
        tools=[
            FunctionSpec("get_weather", "Weather for a city", schema, strict=True),
            FunctionSpec("ping", None, None),
        ],
        tool_choice="get_weather",
        parallel_tool_calls=False,
        temperature=0.2,
        top_p=0.9,
        max_output_tokens=64,
        response_format=response_format,
        user="u-1",
    )
    await collect(engine, request)
    body = upstream.requests[-1]
    assert body["model"] == "up-model"
    assert body["messages"] == HELLO
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": schema,
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping"}},
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["max_tokens"] == 64
    assert body["response_format"] == response_format
    assert body["user"] == "u-1"
    assert upstream.request_headers[-1]["authorization"] == "Bearer sk-test"


async def test_minimal_request_body(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    await collect(engine)
    body = upstream.requests[-1]
    assert set(body) == {"model", "messages", "stream", "stream_options"}
    await collect(engine, EngineRequest(messages=HELLO, tools=[FunctionSpec("f", None, None)]))
    assert upstream.requests[-1]["tool_choice"] == "auto"
    assert upstream.requests[-1]["parallel_tool_calls"] is True


async def test_upstream_500_is_502(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Turn(error_status=500, error_message="the GPU caught fire"))
    with pytest.raises(EngineError) as info:
        await collect(engine)
    assert info.value.status == 502
    assert info.value.code == "upstream_error"
    assert "the GPU caught fire" in info.value.message


async def test_upstream_400_is_client_error(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(
        Turn(error_status=400, error_message="'messages' must not be empty"),
        Turn(error_status=422, error_message="body.response_format: invalid"),
    )
    with pytest.raises(EngineError) as info:
        await collect(engine)
    assert info.value.status == 400
    assert info.value.code == "invalid_request_error"
    assert "'messages' must not be empty" in info.value.message
    with pytest.raises(EngineError, match="response_format: invalid") as info:
        await collect(engine)
    assert info.value.status == 400


async def test_upstream_429_stays_429(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(error_status=429, error_message="slow down"))
    with pytest.raises(EngineOverloaded) as info:
        await collect(engine)
    assert info.value.status == 429
    assert "slow down" in info.value.message


async def test_connection_refused_is_unreachable() -> None:
    engine = OpenAICompatEngine(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    await engine.start()  # must not need the upstream
    try:
        with pytest.raises(EngineError, match="unreachable") as info:
            await collect(engine)
        assert info.value.status == 502
        assert info.value.code == "upstream_error"
    finally:
        await engine.aclose()


async def test_dropped_stream_is_error(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(content="one two three four five", fail_after_chunks=3))
    seen: list[Delta] = []

    async def consume() -> None:
        async for delta in engine.stream(EngineRequest(messages=HELLO)):
            seen.append(delta)

    with pytest.raises(EngineError) as info:
        await consume()
    assert info.value.status == 502
    assert text_of(seen, TextDelta) == "one two "
    assert not any(isinstance(d, Finish) for d in seen)
    # The pool recovers: the next request works.
    assert text_of(await collect(engine), TextDelta) == "ok"


async def test_closing_the_stream_closes_upstream(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(content=" ".join(["word"] * 200), delay=0.05))
    stream = engine.stream(EngineRequest(messages=HELLO))
    assert isinstance(await anext(stream), TextDelta)
    started = time.monotonic()
    await stream.aclose()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 0.5
    await _until(lambda: upstream.disconnects == 1)


async def test_cancelling_the_consumer_closes_upstream(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(Turn(content=" ".join(["word"] * 200), delay=0.05))
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(EngineRequest(messages=HELLO)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: upstream.disconnects == 1)


async def test_connection_is_reused(engine: OpenAICompatEngine, upstream: ScriptedUpstream) -> None:
    for _ in range(5):
        await collect(engine)
    assert len(upstream.peers) == 5
    assert len(set(upstream.peers)) == 1


async def test_many_concurrent_streams(
    engine: OpenAICompatEngine, upstream: ScriptedUpstream
) -> None:
    upstream.enqueue(*[Turn(content=f"reply {i}", delay=0.01) for i in range(64)])
    results = await asyncio.gather(*[collect(engine) for _ in range(64)])
    texts = sorted(text_of(r, TextDelta) for r in results)
    assert texts == sorted(f"reply {i}" for i in range(64))
    assert all(only_finish(r).usage == Usage(10, 5) for r in results)


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):  # the upstream notices the disconnect on its own thread
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("condition not met within 2 s")


# -- the SSE parser on awkward byte boundaries ------------------------------------------


def test_sse_parser_any_split() -> None:
    stream = (
        b": keep-alive\r\n\r\n"
        b'event: message\r\ndata: {"choices":[{"index":0,"delta":{"content":"h\xc3\xa9"}}]}\r\n\r\n'
        b'data: {"choices":[{"index":0,"delta":{"reasoning":"r"},"finish_reason":null}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],\n'
        b'data: "usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"after done"}}]}\n\n'
    )
    for size in (1, 2, 7, len(stream)):
        parser = _SSEParser()
        deltas: list[Delta] = []
        for i in range(0, len(stream), size):
            if parser.done:
                break
            deltas += parser.feed(stream[i : i + size])
        deltas += parser.flush()
        deltas.append(parser.finish("x"))
        assert deltas == [TextDelta("hé"), ReasoningDelta("r"), Finish("stop", Usage(3, 2))]


def test_sse_parser_rejects_garbage() -> None:
    with pytest.raises(EngineError, match="malformed") as info:
        _SSEParser().feed(b"data: {not json\n\n")
    assert info.value.status == 502
    with pytest.raises(EngineError, match="overloaded") as info:
        _SSEParser().feed(b'data: {"error": {"message": "overloaded"}}\n\n')
    assert info.value.status == 502
    with pytest.raises(EngineError, match="before a finish_reason"):
        _SSEParser().finish("x")


# -- a real OpenAI-compatible server: llama-cpp-python's -----------------------------------


async def test_real_llama_cpp_server_streams_text(llama_server: str) -> None:
    engine = OpenAICompatEngine(base_url=llama_server, model="smollm2", timeout=120)
    await engine.start()
    try:
        request = EngineRequest(
            messages=[{"role": "user", "content": "What is the capital of France?"}],
            max_output_tokens=8,
            temperature=0.0,
        )
        deltas = await collect(engine, request)
    finally:
        await engine.aclose()
    texts = [d for d in deltas if isinstance(d, TextDelta)]
    assert "".join(d.text for d in texts).strip()
    assert 0 < len(texts) <= 8  # llama-cpp-python streams one token per chunk
    finish = only_finish(deltas)
    assert finish.reason in {"stop", "length"}
    # llama-cpp-python 0.3.36 ignores `stream_options.include_usage`: the stream must
    # still end cleanly, with usage unknown rather than invented.
    if finish.usage is not None:
        assert finish.usage.input_tokens > 5
        assert 0 < finish.usage.output_tokens <= 8


async def test_real_llama_cpp_server_json_mode(llama_server: str) -> None:
    engine = OpenAICompatEngine(base_url=llama_server, model="smollm2", timeout=120)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
    }
    try:
        request = EngineRequest(
            messages=[{"role": "user", "content": "Name the capital of France as JSON."}],
            max_output_tokens=40,
            temperature=0.0,
            response_format={"type": "json_object", "schema": schema},
        )
        deltas = await collect(engine, request)
        assert only_finish(deltas).reason == "stop"
        assert set(orjson.loads(text_of(deltas, TextDelta))) == {"city"}
        # This server answers a response_format it does not know with a 500 naming it.
        request.response_format = {"type": "json_schema", "json_schema": {"name": "x"}}
        with pytest.raises(EngineError, match="response_format") as info:
            await collect(engine, request)
        assert info.value.status == 502
    finally:
        await engine.aclose()


def test_last_event_without_blank_line_is_kept() -> None:
    parser = _SSEParser()
    tail = b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}'
    assert parser.feed(tail) == []
    assert parser.flush() == [TextDelta("hi")]
    assert parser.finish("x").reason == "stop"
