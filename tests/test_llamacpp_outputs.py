"""The built-in engine's outputs: log probabilities and strict tool calls in auto mode.

Real SmolLM2-135M, small outputs.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest

from responsed.config import ModelConfig, builtin_model_path
from responsed.engines.base import (
    ChatMessage,
    Delta,
    EngineRequest,
    Finish,
    FunctionSpec,
    TextDelta,
    ToolCallDelta,
)
from responsed.engines.llamacpp import LlamaCppEngine

# maxLength 3 is something the model does not write on its own ("Paris"): only the
# grammar keeps it.
TINY_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "maxLength": 3},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}
WEATHER = FunctionSpec("get_weather", "Get the current weather in a city.", TINY_PARAMS)


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    path = str(builtin_model_path())
    # One thread: see test_llamacpp_cache.py.
    config = ModelConfig(name="smollm2", engine="llamacpp", path=path, n_ctx=1024, n_threads=1)
    eng = LlamaCppEngine.from_config(config)
    await eng.start()
    yield eng
    await eng.aclose()


async def _collect(eng: LlamaCppEngine, request: EngineRequest) -> list[Delta]:
    deltas = [d async for d in eng.stream(request)]
    assert isinstance(deltas[-1], Finish)
    return deltas


def _texts(deltas: list[Delta]) -> list[TextDelta]:
    return [d for d in deltas if isinstance(d, TextDelta)]


def _check_aligned(deltas: list[Delta], top: int) -> None:
    texts = _texts(deltas)
    assert texts
    for delta in texts:
        assert delta.logprobs is not None
        assert "".join(lp.token for lp in delta.logprobs) == delta.text
        for lp in delta.logprobs:
            assert lp.logprob <= 0.0
            assert len(lp.top) == top
            assert sum(math.exp(alt[1]) for alt in lp.top) <= 1.0 + 1e-6
            assert [alt[1] for alt in lp.top] == sorted((alt[1] for alt in lp.top), reverse=True)
            if lp.top:
                assert lp.logprob <= lp.top[0][1] + 1e-6


async def test_greedy_logprobs(engine: LlamaCppEngine) -> None:
    request = EngineRequest(
        messages=[{"role": "user", "content": "Say héllo wörld ✓ in Japanese: 日本"}],
        temperature=0.0,
        max_output_tokens=16,
        top_logprobs=4,
    )
    deltas = await _collect(engine, request)
    _check_aligned(deltas, 4)
    tokens = [lp for d in _texts(deltas) for lp in d.logprobs or ()]
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.usage is not None
    assert len(tokens) == finish.usage.output_tokens
    for lp in tokens:
        # Greedy: the sampled token is the most likely one.
        assert lp.top[0][2] == lp.bytes
        assert lp.top[0][1] == pytest.approx(lp.logprob)


async def test_sampled_logprobs_without_alternatives(engine: LlamaCppEngine) -> None:
    request = EngineRequest(
        messages=[{"role": "user", "content": "Tell me a fact about owls."}],
        temperature=1.0,
        max_output_tokens=12,
        top_logprobs=0,
    )
    _check_aligned(await _collect(engine, request), 0)


async def test_logprobs_through_the_tool_call_buffer(engine: LlamaCppEngine) -> None:
    # Auto mode buffers the start of the text until it cannot be a <tool_call>.
    request = EngineRequest(
        messages=[{"role": "user", "content": "What's the weather in Paris?"}],
        tools=[WEATHER],
        temperature=0.0,
        max_output_tokens=8,
        top_logprobs=2,
    )
    _check_aligned(await _collect(engine, request), 2)


async def test_no_logprobs_unless_asked(engine: LlamaCppEngine) -> None:
    request = EngineRequest(
        messages=[{"role": "user", "content": "Name a colour."}],
        temperature=0.0,
        max_output_tokens=4,
    )
    texts = _texts(await _collect(engine, request))
    assert texts and all(d.logprobs is None for d in texts)


def _call_message(city: str) -> ChatMessage:
    arguments = json.dumps({"location": city, "unit": "celsius"})
    function = {"name": WEATHER.name, "arguments": arguments}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": function}],
    }


# Two earlier calls make even this tiny model answer the third question with a call.
FEW_SHOT: list[ChatMessage] = [
    {"role": "user", "content": "Weather in Oslo?"},
    _call_message("Oslo"),
    {"role": "user", "content": "Weather in Rome?"},
    _call_message("Rome"),
    {"role": "user", "content": "Weather in Paris?"},
]


@pytest.mark.parametrize("parallel", [False, True])
async def test_auto_mode_tool_call_follows_the_schema(
    engine: LlamaCppEngine, parallel: bool
) -> None:
    request = EngineRequest(
        messages=FEW_SHOT,
        tools=[WEATHER],
        temperature=0.0,
        max_output_tokens=60,
        parallel_tool_calls=parallel,
    )
    deltas = await _collect(engine, request)
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert 1 <= len(calls) <= (4 if parallel else 1)
    assert [c.index for c in calls] == list(range(len(calls)))
    for call in calls:
        assert call.name == WEATHER.name
        jsonschema.validate(json.loads(call.arguments), TINY_PARAMS)
    finish = deltas[-1]
    assert isinstance(finish, Finish) and finish.reason == "tool_calls"
    assert not _texts(deltas)


async def test_non_strict_tool_call_is_still_json(engine: LlamaCppEngine) -> None:
    loose = FunctionSpec(WEATHER.name, WEATHER.description, TINY_PARAMS, strict=False)
    request = EngineRequest(messages=FEW_SHOT, tools=[loose], temperature=0.0, max_output_tokens=60)
    deltas = await _collect(engine, request)
    (call,) = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert call.name == WEATHER.name
    assert isinstance(json.loads(call.arguments), dict)
