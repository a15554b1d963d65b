"""The hosted-tool loop: generation rounds around the calls the server runs itself.

The engine is offered each hosted tool as a function. When a round ends with calls to
hosted tools only, the loop runs them (their items and progress events go to the
translator as `Hosted*` values), appends the calls and their outputs to the messages,
and starts the next round; its deltas continue the same response. Calls to the
client's own functions end the response as usual. Text after a search has its `[n]`
markers turned into citations; usage is the sum of all rounds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from responsed.engines.base import (
    Engine,
    EngineRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from responsed.protocol.errors import APIError
from responsed.protocol.ids import new_id
from responsed.runtime.citations import Citation, CitationFilter
from responsed.runtime.hosted_events import HostedFinished, HostedPhase, HostedStarted
from responsed.runtime.translator import Fed
from responsed.tools.base import HostedTool, Source

__all__ = ["MAX_HOSTED_ROUNDS", "hosted_rounds"]

MAX_HOSTED_ROUNDS = 3  # rounds of hosted calls per response; the next round must answer


@dataclass(slots=True)
class _Call:
    call_id: str = ""
    name: str = ""
    pieces: list[str] = field(default_factory=list)


async def hosted_rounds(
    engine: Engine, request: EngineRequest, tools: dict[str, HostedTool]
) -> AsyncGenerator[Fed, None]:
    sources: list[Source] = []
    citations: CitationFilter | None = None
    answered = False  # text came after the last search
    usage: Usage | None = None
    for round_ in range(MAX_HOSTED_ROUNDS + 1):
        calls: dict[int, _Call] = {}
        client_calls = False
        finish = Finish("stop")
        async with aclosing(engine.stream(request)) as deltas:
            async for delta in deltas:
                if isinstance(delta, ToolCallDelta):
                    call = calls.setdefault(delta.index, _Call())
                    call.call_id = delta.call_id or call.call_id
                    call.name = delta.name or call.name
                    if call.name in tools:
                        call.pieces.append(delta.arguments)
                        continue
                    client_calls = True
                elif isinstance(delta, Finish):
                    finish = delta
                    break
                elif isinstance(delta, TextDelta) and citations is not None:
                    answered = answered or bool(delta.text.strip())
                    for piece in citations.feed(delta):
                        yield piece
                    continue
                yield delta
        usage = _add(usage, finish.usage)
        hosted = [c for c in calls.values() if c.name in tools]
        if not hosted or client_calls or round_ == MAX_HOSTED_ROUNDS:
            if citations is not None:
                for piece in citations.flush():
                    yield piece
                if answered and not citations.cited and sources:
                    # The model did not cite: the best result is the source of the answer.
                    yield Citation(sources[0].file_id, sources[0].filename)
            yield replace(finish, usage=usage)
            return
        outputs: list[dict[str, Any]] = []
        for call in hosted:
            tool = tools[call.name]
            arguments = _arguments(call)
            item = {"id": new_id(tool.id_prefix), "type": tool.item_type}
            yield HostedStarted({**item, **tool.start_item(arguments)})
            for phase in tool.phases:
                yield HostedPhase(phase)
            try:
                result = await tool.run(arguments, first=len(sources) + 1)
            except APIError as exc:
                yield HostedFinished({}, "failed")
                outputs.append(_tool_message(call, f"The tool failed: {exc.message}"))
                continue
            sources.extend(result.sources)
            yield HostedFinished(result.item)
            outputs.append(_tool_message(call, result.output))
        citations = CitationFilter(sources) if sources else None
        answered = False
        request = replace(
            request,
            messages=[*request.messages, _assistant_calls(hosted), *outputs],
            tool_choice=_next_choice(request.tool_choice, round_ + 1),
        )


def _next_choice(choice: ToolChoice, rounds_done: int) -> ToolChoice:
    """Forced or required choices are met by the first round; the last round answers."""
    if rounds_done >= MAX_HOSTED_ROUNDS:
        return "none"
    return choice if choice in ("auto", "none") else "auto"


def _arguments(call: _Call) -> dict[str, Any]:
    try:
        value = json.loads("".join(call.pieces) or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _assistant_calls(calls: list[_Call]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": "".join(call.pieces) or "{}"},
            }
            for call in calls
        ],
    }


def _tool_message(call: _Call, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.call_id, "content": content}


def _add(total: Usage | None, usage: Usage | None) -> Usage | None:
    if total is None or usage is None:
        return usage or total
    return Usage(
        total.input_tokens + usage.input_tokens,
        total.output_tokens + usage.output_tokens,
        total.cached_tokens + usage.cached_tokens,
        total.reasoning_tokens + usage.reasoning_tokens,
        total.cache_write_tokens + usage.cache_write_tokens,
    )
