"""Fitting a context into the model's window: refuse it, or drop its oldest items.

`truncation: "disabled"` refuses an input that does not fit with 400
`context_length_exceeded` before anything is generated. `"auto"` drops the oldest
whole turns — whole items, starting at a user message, so a function call's output
never survives its call — but never the `instructions`, until the input fits with room
to answer.

Token counts come from the engine (the built-in one tokenizes exactly as it will
generate); engines without a tokenizer get an estimate of about four characters a
token, which only matters when an operator declares an upstream's `context_window`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from responsed.engines.base import ChatMessage, Engine, EngineRequest
from responsed.protocol.errors import APIError
from responsed.runtime.context import with_instructions
from responsed.runtime.context_cache import Context, content_chars

__all__ = ["Fitted", "estimate_tokens", "fit"]

_CHARS_PER_TOKEN = 4
_TOKENS_PER_MESSAGE = 4
# With auto truncation, the answer gets this share of the window unless
# max_output_tokens says how much it needs.
_ANSWER_SHARE = 4
_MAX_ANSWER_RESERVE = 1024


@dataclass(frozen=True, slots=True)
class Fitted:
    request: EngineRequest
    dropped_items: int  # oldest context items left out
    input_tokens: int | None  # what the engine counted (None: not counted)


def estimate_tokens(request: EngineRequest) -> int:
    chars = sum(content_chars(m) for m in request.messages)
    if request.tools:
        chars += sum(
            len(orjson.dumps([t.name, t.description, t.parameters])) for t in request.tools
        )
    return chars // _CHARS_PER_TOKEN + _TOKENS_PER_MESSAGE * (len(request.messages) + 1)


async def count(engine: Engine, request: EngineRequest) -> int:
    counted = await engine.count_tokens(request)
    return estimate_tokens(request) if counted is None else counted


def _exceeded(tokens: int, window: int) -> APIError:
    return APIError(
        400,
        f"Your input exceeds the context window of this model ({tokens} tokens for a "
        f"window of {window}). Please adjust your input and try again, or use "
        "truncation='auto'.",
        type="invalid_request_error",
        param="input",
        code="context_length_exceeded",
    )


def _cuts(messages: tuple[ChatMessage, ...]) -> list[int]:
    """Where the kept window may start: at a user turn, so that it opens the way chat
    templates expect and a function call is never parted from its output (failing
    that, anywhere but at a tool output)."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if len(turns) > 1:
        return [0, *turns] if turns[0] else turns
    return [i for i, m in enumerate(messages) if m["role"] != "tool"]


async def fit(
    engine: Engine,
    request: EngineRequest,
    context: Context,
    instructions: str | None,
    *,
    truncation: str,
    refuse: bool = True,
) -> Fitted:
    """`request` with the context's messages (after `instructions`) made to fit.

    `refuse=False` (counting tokens) reports an input that does not fit instead of
    refusing it."""
    window = engine.context_window
    full = replace(request, messages=with_instructions(instructions, context.messages))
    if window is None:
        return Fitted(full, 0, None)
    tokens = await count(engine, full)
    if truncation != "auto":
        if tokens >= window and refuse:
            raise _exceeded(tokens, window)
        return Fitted(full, 0, tokens)
    reserve = request.max_output_tokens or min(_MAX_ANSWER_RESERVE, window // _ANSWER_SHARE)
    limit = max(1, window - reserve)
    if tokens <= limit:
        return Fitted(full, 0, tokens)
    cuts = _cuts(context.messages)

    async def attempt(cut: int) -> tuple[EngineRequest, int]:
        messages = with_instructions(instructions, context.messages[cut:])
        candidate = replace(request, messages=messages)
        return candidate, await count(engine, candidate)

    # Fewer messages never means more tokens: binary-search the first cut that fits.
    lo, hi, best = 1, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate, n = await attempt(cuts[mid])
        if n <= limit:
            best, hi = (cuts[mid], candidate, n), mid - 1
        else:
            lo = mid + 1
    if best is None:
        # Even the last turn alone leaves no room to answer; send it if it fits at all.
        cut = cuts[-1] if cuts else 0
        candidate, n = await attempt(cut)
        if n >= window and refuse:
            raise _exceeded(n, window)
        best = (cut, candidate, n)
    cut, candidate, n = best
    return Fitted(candidate, sum(context.counts[:cut]), n)
