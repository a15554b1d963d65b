"""Summaries written by the serving model: compaction and reasoning summaries.

`POST /v1/responses/compact` summarizes a long conversation.
The compacted window is every user message followed by one `compaction` item whose
sealed content is the summary; passed back as input, the summary is rendered as an
assistant turn in place of everything the model said and did before. A reasoning
summary (`reasoning.summary`) is a short pass over the raw reasoning text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from responsed.engines.base import (
    Engine,
    EngineError,
    EngineRequest,
    Finish,
    ReasoningDelta,
    TextDelta,
)
from responsed.runtime.translator import usage_of

__all__ = ["SUMMARY_REQUEST", "summarize", "summarize_reasoning"]

SUMMARY_REQUEST = (
    "Summarize the conversation above so that it can be continued from the summary "
    "alone: the user's goals and constraints, the facts and results established, the "
    "decisions made, tool calls and their outcomes, and what remains open. Be concise "
    "and factual; write only the summary."
)
_MAX_SUMMARY_TOKENS = 1024


async def summarize(engine: Engine, request: EngineRequest) -> tuple[str, dict[str, Any]]:
    """(summary text, usage object) of one summarizing pass over `request`'s messages."""
    ask = replace(
        request,
        messages=[*request.messages, {"role": "user", "content": SUMMARY_REQUEST}],
        tools=[],
        tool_choice="none",
        response_format=None,
        max_output_tokens=min(
            request.max_output_tokens or _MAX_SUMMARY_TOKENS, _MAX_SUMMARY_TOKENS
        ),
        temperature=0.0,
        top_logprobs=None,
        reasoning_effort="none",
    )
    pieces: list[str] = []
    thoughts: list[str] = []
    finish: Finish | None = None
    async with aclosing(engine.stream(ask)) as deltas:
        async for delta in deltas:
            if isinstance(delta, TextDelta):
                pieces.append(delta.text)
            elif isinstance(delta, ReasoningDelta):
                thoughts.append(delta.text)
            elif isinstance(delta, Finish):
                finish = delta
    summary = "".join(pieces).strip() or "".join(thoughts).strip()
    if finish is None or not summary:
        raise EngineError("the model produced no summary", status=502, code="server_error")
    return summary, usage_of(finish.usage)


_REASONING_SUMMARY = {
    "concise": "in one or two sentences",
    "auto": "in a few sentences",
    "detailed": "in a short paragraph covering each step",
}


async def summarize_reasoning(engine: Engine, reasoning: str, mode: str) -> AsyncIterator[str]:
    """A summary of a model's reasoning, written by the same model, streamed."""
    length = _REASONING_SUMMARY.get(mode, _REASONING_SUMMARY["auto"])
    request = EngineRequest(
        messages=[
            {
                "role": "user",
                "content": f"Summarize this reasoning {length}, in the first person, "
                f"without adding anything:\n\n{reasoning}",
            }
        ],
        tool_choice="none",
        max_output_tokens=256,
        temperature=0.0,
        reasoning_effort="none",  # where the model has a switch, no thinking about it
    )
    thoughts: list[str] = []
    answered = False
    async with aclosing(engine.stream(request)) as deltas:
        async for delta in deltas:
            if isinstance(delta, TextDelta) and delta.text:
                answered = True
                yield delta.text
            elif isinstance(delta, ReasoningDelta):
                thoughts.append(delta.text)
    if not answered and thoughts:
        # A reasoning model that only thought (or whose template keeps it thinking):
        # its thoughts are the summary.
        yield "".join(thoughts).strip()
