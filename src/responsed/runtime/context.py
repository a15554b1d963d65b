"""Items in, chat messages out: the model's view of a response's context.

Input items are normalized into stored items (each with an id, as the hosted API
lists them under `input_items`); the whole context — previous chain items, then this
turn's — is rendered into Chat Completions messages for the engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from responsed.engines.base import ChatMessage
from responsed.protocol.errors import invalid_request
from responsed.protocol.ids import new_id
from responsed.protocol.items import (
    CompactionItem,
    FileSearchCallItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ReasoningItem,
)

__all__ = [
    "COMPACTION_PREFIX",
    "Unseal",
    "normalize_input",
    "to_chat_messages",
    "with_instructions",
]

Item = dict[str, Any]

COMPACTION_PREFIX = "Summary of the conversation so far:\n"


def _message_parts(item: MessageItem, index: int) -> list[dict[str, Any]]:
    text_type = "output_text" if item.role == "assistant" else "input_text"
    if isinstance(item.content, str):
        part: dict[str, Any] = {"type": text_type, "text": item.content}
        if text_type == "output_text":
            part["annotations"] = []
        return [part]
    parts: list[dict[str, Any]] = []
    for n, p in enumerate(item.content):
        if p.type == "input_file":
            # Stored as given; its text is put in only when rendering (runtime/files.py).
            if p.file_url:
                raise invalid_request(
                    "file_url inputs are not enabled on this server.",
                    param=f"input[{index}].content[{n}]",
                    code="unsupported_value",
                )
            if not (p.file_id or p.file_data):
                raise invalid_request(
                    "An input_file part needs one of 'file_id', 'file_data' or 'file_url'.",
                    param=f"input[{index}].content[{n}]",
                )
        if p.type == "input_image" and not p.image_url:
            raise invalid_request(
                "input_image needs image_url (uploaded files are not supported yet).",
                param=f"input[{index}].content[{n}].image_url",
            )
        parts.append(p.model_dump(exclude_none=True))
    return parts


def normalize_input(request_input: str | list[Any] | None) -> list[Item]:
    """Client input → stored input items, with ids and statuses filled in."""
    if request_input is None:
        return []
    if isinstance(request_input, str):
        return [
            {
                "id": new_id("msg"),
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": request_input}],
            }
        ]
    items: list[Item] = []
    for index, raw in enumerate(request_input):
        if isinstance(raw, MessageItem):
            items.append(
                {
                    "id": raw.id or new_id("msg"),
                    "type": "message",
                    "role": raw.role,
                    "status": raw.status or "completed",
                    "content": _message_parts(raw, index),
                }
            )
        elif isinstance(raw, FunctionCallItem):
            items.append(
                {
                    "id": raw.id or new_id("fc"),
                    "type": "function_call",
                    "call_id": raw.call_id,
                    "name": raw.name,
                    "arguments": raw.arguments,
                    "status": raw.status or "completed",
                }
            )
        elif isinstance(raw, FunctionCallOutputItem):
            output = (
                raw.output
                if isinstance(raw.output, str)
                else [p.model_dump(exclude_none=True) for p in raw.output]
            )
            items.append(
                {
                    "id": raw.id or new_id("fco"),
                    "type": "function_call_output",
                    "call_id": raw.call_id,
                    "output": output,
                    "status": raw.status or "completed",
                }
            )
        elif isinstance(raw, CompactionItem):
            items.append(
                {
                    "id": raw.id or new_id("cmp"),
                    "type": "compaction",
                    "encrypted_content": raw.encrypted_content,
                    **({"created_by": raw.created_by} if raw.created_by else {}),
                }
            )
        elif isinstance(raw, FileSearchCallItem):
            items.append(raw.model_dump())
        elif isinstance(raw, ReasoningItem):
            item = raw.model_dump(exclude_none=True)
            item["id"] = raw.id or new_id("rs")
            items.append(item)
        else:
            raise invalid_request(
                "item_reference inputs are not supported yet; pass the item itself.",
                param=f"input[{index}]",
                code="unsupported_value",
            )
    return items


def _text_of(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or p.get("refusal") or "" for p in parts)


def _user_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(p["type"] in ("input_text", "output_text") for p in parts):
        return _text_of(parts)
    out: list[dict[str, Any]] = []
    for p in parts:
        if p["type"] == "input_image":
            url = {"url": p["image_url"], "detail": p.get("detail", "auto")}
            out.append({"type": "image_url", "image_url": url})
        elif p["type"] == "input_file":  # not inlined (no file service): name it only
            name = p.get("filename") or p.get("file_id") or "file"
            out.append({"type": "text", "text": f"[file: {name}]"})
        else:
            out.append({"type": "text", "text": p.get("text", "")})
    return out


Unseal = Callable[[Item], str]
"""The text a sealed item (compaction) stands for; raises 400 for a bad token."""


def to_chat_messages(
    items: Iterable[Item],
    prefix: Sequence[ChatMessage] = (),
    counts: list[int] | None = None,
    unseal: Unseal | None = None,
) -> list[ChatMessage]:
    """Render items after an already rendered `prefix`.

    Function calls join the assistant turn they belong to. Messages of `prefix` are
    shared with cached contexts, so they are replaced, never mutated. `counts`, when
    given, runs parallel to the messages and is extended with how many items each new
    message stands for (an item without a message of its own counts toward the next
    one), so truncation can report whole items.
    """
    messages: list[ChatMessage] = list(prefix)
    pending = 0
    for item in items:
        last = messages[-1] if messages else None
        _render(item, messages, unseal)
        if counts is None:
            continue
        pending += 1
        if len(counts) < len(messages):
            counts.append(pending)
            pending = 0
        elif messages and messages[-1] is not last:  # joined the previous message
            counts[-1] += pending
            pending = 0
    if counts and pending:
        counts[-1] += pending
    return messages


def _render(item: Item, messages: list[ChatMessage], unseal: Unseal | None) -> None:
    kind = item["type"]
    if kind == "message":
        role = "system" if item["role"] == "developer" else item["role"]
        if role == "assistant":
            messages.append({"role": "assistant", "content": _text_of(item["content"])})
        else:
            messages.append({"role": role, "content": _user_content(item["content"])})
    elif kind == "function_call":
        call = {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        last = messages[-1] if messages else None
        if (
            last is not None
            and last["role"] == "assistant"
            and ("tool_calls" in last or last.get("content"))
        ):
            messages[-1] = {**last, "tool_calls": [*last.get("tool_calls", ()), call]}
        else:
            # "" rather than null: some servers reject null content and some chat
            # templates index `message.content` unconditionally.
            messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item["output"]
        content = output if isinstance(output, str) else _text_of(output)
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
    elif kind == "compaction":
        if unseal is None:
            raise RuntimeError("a compaction item needs an unseal function")
        summary = unseal(item)
        messages.append({"role": "assistant", "content": f"{COMPACTION_PREFIX}{summary}"})
    elif kind == "file_search_call":
        _render_file_search(item, messages)
    # Reasoning items are not replayed to the model (see README: reasoning).


def _render_file_search(item: Item, messages: list[ChatMessage]) -> None:
    """An earlier search, as the call and what it found (when its results were kept)."""
    arguments = json.dumps({"queries": item.get("queries") or []})
    call = {
        "id": item["id"],
        "type": "function",
        "function": {"name": "file_search", "arguments": arguments},
    }
    messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
    results = item.get("results")
    if results:
        found = "\n\n".join(f"{r.get('filename')}: {r.get('text', '')}" for r in results)
    else:
        found = "(the results of this search were not kept)"
    messages.append({"role": "tool", "tool_call_id": item["id"], "content": found})


def with_instructions(
    instructions: str | None, messages: Sequence[ChatMessage]
) -> list[ChatMessage]:
    """Instructions lead the context of this turn only (never carried over)."""
    if not instructions:
        return list(messages)
    return [{"role": "system", "content": instructions}, *messages]
