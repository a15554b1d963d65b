"""`POST /v1/responses` body: every field the hosted API knows, unknown ones rejected."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from responsed.protocol.items import InputItem

__all__ = [
    "CompactRequest",
    "ContextFields",
    "CreateResponseRequest",
    "InputTokensRequest",
    "FunctionTool",
    "Metadata",
    "check_metadata",
    "TextConfig",
    "ToolChoice",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None
    defer_loading: bool | None = None


class HostedTool(BaseModel):
    """A hosted tool (file_search, mcp, …): recognised so it can be refused clearly."""

    model_config = ConfigDict(extra="allow")
    type: str


def _tool_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "@function" if kind == "function" else "@hosted"


Tool = Annotated[
    Annotated[FunctionTool, Tag("@function")] | Annotated[HostedTool, Tag("@hosted")],
    Discriminator(_tool_tag),
]


class FunctionChoice(_Strict):
    type: Literal["function"]
    name: str


class AllowedTools(_Strict):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class HostedChoice(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


def _choice_tag(value: Any) -> str:
    if isinstance(value, str):
        return "@mode"
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return {"function": "@function", "allowed_tools": "@allowed_tools"}.get(str(kind), "@hosted")


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("@mode")]
    | Annotated[FunctionChoice, Tag("@function")]
    | Annotated[AllowedTools, Tag("@allowed_tools")]
    | Annotated[HostedChoice, Tag("@hosted")],
    Discriminator(_choice_tag),
]


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Strict):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Strict):
    include_obfuscation: bool | None = None


class ConversationRef(_Strict):
    id: str


Metadata = dict[str, str]


def check_metadata(value: Metadata | None) -> Metadata | None:
    """The hosted limits on any object's `metadata`: 16 keys, keys up to 64 characters,
    values up to 512 (a pydantic validator: raises ValueError)."""
    if value is None:
        return value
    if len(value) > 16:
        raise ValueError("metadata may have at most 16 keys")
    for key, item in value.items():
        if len(key) > 64:
            raise ValueError(f"metadata key {key[:16]!r}… is longer than 64 characters")
        if len(item) > 512:
            raise ValueError(f"metadata value for {key!r} is longer than 512 characters")
    return value


INCLUDABLE = (
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "message.input_image.image_url",
    "computer_call_output.output.image_url",
    "code_interpreter_call.outputs",
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
)


class ContextFields(_Strict):
    """What decides the model's input: shared by create, input_tokens and compact."""

    model: str
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: str | ConversationRef | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)


class InputTokensRequest(ContextFields):
    """`POST /v1/responses/input_tokens`."""

    personality: str | None = None


class CompactRequest(_Strict):
    """`POST /v1/responses/compact`."""

    model: str
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None
    prompt_cache_key: str | None = Field(default=None, max_length=1024)
    prompt_cache_retention: Literal["in-memory", "in_memory", "24h"] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    service_tier: Literal["auto", "default", "fast", "flex", "scale", "priority"] | None = None
    image: dict[str, Any] | None = None


class CreateResponseRequest(ContextFields):
    store: bool | None = True
    background: bool | None = False
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: Metadata | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_output_tokens: int | None = Field(default=None, ge=16)
    max_tool_calls: int | None = Field(default=None, ge=1)
    include: list[Literal[INCLUDABLE]] | None = None  # type: ignore[valid-type]
    user: str | None = Field(default=None, max_length=512)
    safety_identifier: str | None = Field(default=None, max_length=64)
    prompt_cache_retention: Literal["in-memory", "in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    # Accepted and echoed; not acted on (README says which).
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
    prompt_cache_options: dict[str, Any] | None = None
    moderation: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    access_programs: list[Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: Metadata | None) -> Metadata | None:
        return check_metadata(value)
