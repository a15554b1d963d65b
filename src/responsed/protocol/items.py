"""Input items a client may send, validated strictly and discriminated on `type`.

Messages may omit `type` (the "easy" input message form), so the discriminator
defaults to `message`. Tags carry an `@` so error locations can drop them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

__all__ = [
    "CompactionItem",
    "ContentPart",
    "FileSearchCallItem",
    "FunctionCallItem",
    "FunctionCallOutputItem",
    "InputItem",
    "ItemReference",
    "MessageItem",
    "ReasoningItem",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class InputImage(_Strict):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["low", "high", "auto", "original"] = "auto"


class InputFile(_Strict):
    type: Literal["input_file"]
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Literal["low", "high", "auto"] | None = None


class OutputText(_Strict):
    type: Literal["output_text"]
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] | None = None


class Refusal(_Strict):
    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[
    InputText | InputImage | InputFile | OutputText | Refusal, Field(discriminator="type")
]


class MessageItem(_Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    namespace: str | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=64)
    output: str | list[Annotated[InputText | InputImage | InputFile, Field(discriminator="type")]]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class ReasoningItem(_Strict):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FileSearchCallItem(_Strict):
    """A `file_search_call` output item given back as input."""

    type: Literal["file_search_call"]
    id: str
    queries: list[str] = Field(default_factory=list)
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    results: list[dict[str, Any]] | None = None


class CompactionItem(_Strict):
    type: Literal["compaction"]
    id: str | None = None
    encrypted_content: str = Field(max_length=10_485_760)
    created_by: str | None = None


class ItemReference(_Strict):
    type: Literal["item_reference"] | None = "item_reference"
    id: str


def _item_tag(value: Any) -> str:
    kind = value.get("type", "message") if isinstance(value, dict) else getattr(value, "type", "")
    if isinstance(value, dict) and "type" not in value and "role" not in value and "id" in value:
        kind = "item_reference"
    return f"@{kind}"


InputItem = Annotated[
    Annotated[MessageItem, Tag("@message")]
    | Annotated[FunctionCallItem, Tag("@function_call")]
    | Annotated[FunctionCallOutputItem, Tag("@function_call_output")]
    | Annotated[ReasoningItem, Tag("@reasoning")]
    | Annotated[CompactionItem, Tag("@compaction")]
    | Annotated[FileSearchCallItem, Tag("@file_search_call")]
    | Annotated[ItemReference, Tag("@item_reference")],
    Discriminator(
        _item_tag,
        custom_error_type="invalid_value",
        custom_error_message="Invalid input item type",
    ),
]
