"""The built-in engine's token accounting: exact counts and the prompt (KV) cache.

Real SmolLM2-135M, small prompts and outputs: prompt evaluation is the slow part here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from responsed.config import ModelConfig, builtin_model_path
from responsed.engines.base import (
    ChatMessage,
    Delta,
    EngineError,
    EngineRequest,
    Finish,
    FunctionSpec,
    TextDelta,
    Usage,
)
from responsed.engines.llamacpp import LlamaCppEngine

WEATHER = FunctionSpec(
    "get_weather",
    "Get the current weather in a city.",
    {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
)
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
    },
}
SYSTEM = {"role": "system", "content": "You are a concise assistant who answers questions."}


def _config(**overrides: Any) -> ModelConfig:
    fields: dict[str, Any] = {
        "name": "smollm2",
        "engine": "llamacpp",
        "path": str(builtin_model_path()),
        "n_ctx": 1024,
        # One thread: two spin-waiting ggml threads crawl when other processes share
        # the cores (tests often run side by side).
        "n_threads": 1,
    }
    return ModelConfig(**(fields | overrides))


async def _started(**overrides: Any) -> LlamaCppEngine:
    eng = LlamaCppEngine.from_config(_config(**overrides))
    await eng.start()
    return eng


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    eng = await _started()
    yield eng
    await eng.aclose()


def _request(messages: list[ChatMessage], **kwargs: Any) -> EngineRequest:
    kwargs.setdefault("temperature", 0.0)
    kwargs.setdefault("max_output_tokens", 4)
    return EngineRequest(messages=messages, **kwargs)


def _user(text: str, **kwargs: Any) -> EngineRequest:
    return _request([{"role": "user", "content": text}], **kwargs)


async def _run(eng: LlamaCppEngine, request: EngineRequest) -> tuple[str, Usage]:
    deltas: list[Delta] = [d async for d in eng.stream(request)]
    finish = deltas[-1]
    assert isinstance(finish, Finish)
    assert finish.usage is not None
    return "".join(d.text for d in deltas if isinstance(d, TextDelta)), finish.usage


async def _settled(eng: LlamaCppEngine) -> None:
    """Wait until the last generation saved its state and released its instance."""
    for _ in range(500):
        if not eng._jobs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not settle")


def _turn(first: list[ChatMessage], answer: str, text: str) -> list[ChatMessage]:
    return [*first, {"role": "assistant", "content": answer}, {"role": "user", "content": text}]


def _unrelated(n: int) -> EngineRequest:
    """A request that shares almost nothing with the others (the chat template's head)."""
    return _request(
        [
            {"role": "system", "content": f"Reply with a number. Seed {n}."},
            {"role": "user", "content": f"Pick a number between {n} and {n + 99}."},
        ],
        max_output_tokens=2,
    )


@pytest.mark.parametrize(
    "request_",
    [
        _user("What is the capital of France?"),
        _request([SYSTEM, {"role": "developer", "content": "Be brief."}, _user("Hi").messages[0]]),
        _user("Weather in Oslo?", tools=[WEATHER]),
        _user("Is the sky blue?", response_format=SCHEMA_FORMAT),
        _user("Weather in Oslo?", tools=[WEATHER], tool_choice="required"),
        _user("Weather in Oslo?", tools=[WEATHER], tool_choice="get_weather"),
        _user("Weather in Oslo?", tools=[WEATHER], tool_choice="none"),
    ],
    ids=["plain", "instructions", "tools", "json_schema", "required", "named", "none"],
)
async def test_count_tokens_is_exact(engine: LlamaCppEngine, request_: EngineRequest) -> None:
    counted = await engine.count_tokens(request_)
    _, usage = await _run(engine, request_)
    assert counted == usage.input_tokens
    assert await engine.count_tokens(request_) == counted  # from the tokenization cache


async def test_count_tokens_of_a_prompt_over_the_context(engine: LlamaCppEngine) -> None:
    request = _user("word " * 1500)
    counted = await engine.count_tokens(request)
    assert counted is not None and counted > 1024
    with pytest.raises(EngineError) as info:
        await _run(engine, request)
    assert info.value.status == 400
    assert info.value.code == "context_length_exceeded"


async def test_cold_request_has_nothing_cached() -> None:
    eng = await _started(n_ctx=512)
    try:
        _, usage = await _run(eng, _user("Name a colour."))
        assert usage.cached_tokens == 0
        assert usage.cache_write_tokens == usage.input_tokens
    finally:
        await eng.aclose()


async def test_second_turn_hits_the_saved_state(engine: LlamaCppEngine) -> None:
    first = [SYSTEM, {"role": "user", "content": "Name one planet of the solar system."}]
    answer, usage1 = await _run(engine, _request(first, max_output_tokens=8))
    await _run(engine, _unrelated(1))  # the only instance's live KV cache is now elsewhere
    second = _request(_turn(first, answer, "And another one?"))
    counted = await engine.count_tokens(second)
    _, usage2 = await _run(engine, second)
    assert usage2.input_tokens == counted
    # The whole first prompt and the answer come from the saved state.
    assert usage2.cached_tokens >= usage1.input_tokens
    assert usage2.cache_write_tokens == usage2.input_tokens - usage2.cached_tokens
    assert usage2.cache_write_tokens < 25


async def test_prompt_cache_key_selects_the_slot(engine: LlamaCppEngine) -> None:
    first = [SYSTEM, {"role": "user", "content": "Name one river of Europe."}]
    answer, usage1 = await _run(engine, _request(first, max_output_tokens=8, prompt_cache_key="a"))
    follow = _turn(first, answer, "And another one?")
    await _run(engine, _unrelated(2))
    _, other = await _run(engine, _request(follow, prompt_cache_key="b"))
    assert other.cached_tokens < 10  # slot "b" holds nothing of this chain
    await _run(engine, _unrelated(3))
    _, same = await _run(engine, _request(follow, prompt_cache_key="a"))
    assert same.cached_tokens >= usage1.input_tokens


async def test_disabled_prompt_cache_reuses_nothing() -> None:
    eng = await _started(n_ctx=512, prompt_cache=False)
    try:
        request = _request([SYSTEM, {"role": "user", "content": "Name a colour."}])
        for _ in range(2):
            _, usage = await _run(eng, request)
            assert usage.cached_tokens == 0
            assert usage.cache_write_tokens == 0
        assert eng._cache is None
    finally:
        await eng.aclose()


async def test_eviction_under_a_byte_bound() -> None:
    # A ~40-token state is ~0.9 MB for SmolLM2 (23 KB a token): the bound holds one.
    bound = 1_500_000
    eng = await _started(n_ctx=512, prompt_cache_bytes=bound)
    try:
        cache = eng._cache
        assert cache is not None
        first = [SYSTEM, {"role": "user", "content": "Name one ocean of the world."}]
        answer, usage1 = await _run(eng, _request(first, max_output_tokens=6))
        await _settled(eng)
        assert len(cache) == 1
        await _run(eng, _request([SYSTEM, _user("Name one desert, please.").messages[0]]))
        await _settled(eng)
        assert len(cache) == 1
        assert 0 < cache.nbytes <= bound
        # The first chain's state was evicted; the live cache has the other request.
        _, usage2 = await _run(eng, _request(_turn(first, answer, "Another?")))
        assert usage2.cached_tokens < usage1.input_tokens
        # A state over the bound is never kept.
        await _run(eng, _user("word " * 120, max_output_tokens=1))
        await _settled(eng)
        assert cache.nbytes <= bound
        assert all(len(entry.tokens) < 120 for entry in cache.entries())
    finally:
        await eng.aclose()
