"""`POST /v1/responses/compact`: the serving model summarizes a long conversation.

The compacted window is every user message followed by one `compaction` item whose
sealed content is the summary; passed back as input, the summary is rendered as an
assistant turn in place of everything the model said and did before.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from responsed.engines.base import Engine, EngineError, EngineRequest, Finish, TextDelta
from responsed.runtime.translator import usage_of

__all__ = ["SUMMARY_REQUEST", "summarize"]

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
    )
    pieces: list[str] = []
    finish: Finish | None = None
    async for delta in engine.stream(ask):
        if isinstance(delta, TextDelta):
            pieces.append(delta.text)
        elif isinstance(delta, Finish):
            finish = delta
    summary = "".join(pieces).strip()
    if finish is None or not summary:
        raise EngineError("the model produced no summary", status=502, code="server_error")
    return summary, usage_of(finish.usage)
