"""The one small contract every model backend implements.

An engine receives a Chat Completions-shaped request (the lingua franca of local and
upstream servers) and yields deltas. It knows nothing about storage, HTTP or the
Responses wire format; the runtime turns deltas into items and events.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Capabilities",
    "Delta",
    "Engine",
    "EngineError",
    "EngineOverloaded",
    "EngineRequest",
    "Finish",
    "FinishReason",
    "FunctionSpec",
    "ReasoningDelta",
    "RefusalDelta",
    "TextDelta",
    "TokenLogprob",
    "ToolCallDelta",
    "ToolChoice",
    "Usage",
    "UnsupportedFeature",
]

ChatMessage = dict[str, Any]
"""A Chat Completions message: {"role", "content", "tool_calls"?, "tool_call_id"?}."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None = None


ToolChoice = Literal["auto", "none", "required"] | str
"""`auto`, `none`, `required`, or the name of one function the model must call."""


@dataclass(slots=True)
class EngineRequest:
    messages: list[ChatMessage]
    tools: list[FunctionSpec] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    # A Chat Completions `response_format` ({"type": "json_schema", ...}) or None.
    response_format: dict[str, Any] | None = None
    user: str | None = None
    # Selects a prompt-cache slot: the built-in engine keys its saved KV states by it,
    # upstream engines forward it.
    prompt_cache_key: str | None = None
    # None: no log probabilities; 0..20: each output token's logprob and that many
    # most likely alternatives (TextDelta.logprobs).
    top_logprobs: int | None = None
    # `reasoning.effort` (none … xhigh); engines map it to their own knob, if any.
    reasoning_effort: str | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token: its text, UTF-8 bytes, logprob and the top alternatives.

    `top` holds (token, logprob, bytes) triples, most likely first.
    """

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    # The tokens making up `text`, when the request asked for log probabilities.
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True, slots=True)
class RefusalDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of the `index`-th tool call; `call_id`/`name` arrive on the first one."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Prompt tokens newly written to the prompt cache (the built-in engine's KV cache).
    cache_write_tokens: int = 0


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


@dataclass(frozen=True, slots=True)
class Finish:
    reason: FinishReason
    usage: Usage | None = None


Delta = TextDelta | RefusalDelta | ReasoningDelta | ToolCallDelta | Finish


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = True
    images: bool = False
    json_schema: bool = True
    reasoning: bool = False


class EngineError(Exception):
    """The backend failed; `status` is the HTTP status to report (502 for upstreams)."""

    def __init__(self, message: str, *, status: int = 500, code: str = "server_error") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class EngineOverloaded(EngineError):
    """The engine's queue is full; the client should retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, status=429, code="rate_limit_exceeded")
        self.retry_after = retry_after


class UnsupportedFeature(Exception):
    """The request asks for something this engine cannot do (a 400 for the client)."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@runtime_checkable
class Engine(Protocol):
    """A model backend. `stream` ends with exactly one `Finish` delta."""

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def context_window(self) -> int | None: ...

    async def start(self) -> None:
        """Load weights or check the upstream; called once before serving."""

    def stream(self, request: EngineRequest) -> AsyncGenerator[Delta, None]:
        """Generate. Cancelling the consuming task must stop generation promptly."""
        ...

    async def count_tokens(self, request: EngineRequest) -> int | None:
        """The prompt tokens `stream(request)` would report as `input_tokens`.

        Exact where the engine owns the tokenizer; None when it cannot know (an
        upstream without a tokenizer), which the runtime then estimates.
        """
        ...

    async def aclose(self) -> None: ...
