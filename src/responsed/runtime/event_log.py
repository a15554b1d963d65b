"""Ending a background response whose process died mid-stream, from its event log.

The persisted events are all that is left of the run: the open item is rebuilt from its
deltas, closed as `incomplete` with the `*.done` events a client expects, and the
response fails. A stream resumed from any cursor then ends like any other, with no gap
in its sequence numbers.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["close_interrupted"]

Event = dict[str, Any]

# delta type → (done type, field the done event and the part carry)
_PART_DELTAS = {
    "response.output_text.delta": ("response.output_text.done", "text"),
    "response.refusal.delta": ("response.refusal.done", "refusal"),
    "response.reasoning_text.delta": ("response.reasoning_text.done", "text"),
}


class _Item:
    def __init__(self, item: dict[str, Any]) -> None:
        self.item = copy.deepcopy(item)
        self.done = False
        self.parts: dict[int, dict[str, Any]] = {}  # content_index → open part
        self.texts: dict[int, list[str]] = {}
        self.delta_kind: dict[int, str] = {}
        self.summaries: dict[int, list[str]] = {}  # summary_index → open summary text
        self.arguments: list[str] = []


def close_interrupted(
    events: list[Event], status: str, message: str = ""
) -> tuple[list[Event], dict[str, Any]]:
    """The events that end the log and the final Response they describe: the open item
    done, then `response.failed` (status "failed", with a server_error of `message`);
    a cancelled response has no terminal event."""
    response: dict[str, Any] = {}
    items: list[_Item] = []
    for event in events:
        kind = event["type"]
        if "response" in event:
            response = event["response"]
        index = event.get("output_index")
        if kind == "response.output_item.added":
            items.append(_Item(event["item"]))
            continue
        if index is None or index >= len(items):
            continue
        entry = items[index]
        if kind == "response.output_item.done":
            entry.item = copy.deepcopy(event["item"])
            entry.done = True
        elif kind == "response.content_part.added":
            entry.parts[event["content_index"]] = copy.deepcopy(event["part"])
            entry.texts[event["content_index"]] = []
        elif kind == "response.content_part.done":
            entry.parts.pop(event["content_index"], None)
            _set_part(entry.item, event["content_index"], copy.deepcopy(event["part"]))
        elif kind in _PART_DELTAS:
            entry.texts.setdefault(event["content_index"], []).append(event["delta"])
            entry.delta_kind[event["content_index"]] = kind
        elif kind == "response.function_call_arguments.delta":
            entry.arguments.append(event["delta"])
        elif kind == "response.reasoning_summary_part.added":
            entry.summaries[event["summary_index"]] = []
        elif kind == "response.reasoning_summary_text.delta":
            entry.summaries.setdefault(event["summary_index"], []).append(event["delta"])
        elif kind == "response.reasoning_summary_part.done":
            entry.summaries.pop(event["summary_index"], None)

    seq = events[-1]["sequence_number"] + 1 if events else 0
    closing: list[Event] = []

    def emit(type_: str, **fields: Any) -> None:
        nonlocal seq
        closing.append({"type": type_, "sequence_number": seq, **fields})
        seq += 1

    for index, entry in enumerate(items):
        if entry.done:
            continue
        item = entry.item
        where = {"item_id": item["id"], "output_index": index}
        for content_index, part in sorted(entry.parts.items()):
            text = "".join(entry.texts.get(content_index, ()))
            delta = entry.delta_kind.get(content_index, "response.output_text.delta")
            done, field = _PART_DELTAS[delta]
            part[field] = text
            extra = {"logprobs": part.get("logprobs") or []} if field == "text" else {}
            if done == "response.reasoning_text.done":
                extra = {}
            emit(done, **where, content_index=content_index, **{field: text}, **extra)
            emit("response.content_part.done", **where, content_index=content_index, part=part)
            _set_part(item, content_index, part)
        for summary_index, pieces in sorted(entry.summaries.items()):
            text = "".join(pieces)
            summary = item.setdefault("summary", [])
            while len(summary) <= summary_index:
                summary.append({"type": "summary_text", "text": ""})
            summary[summary_index]["text"] = text
            at = {**where, "summary_index": summary_index}
            emit("response.reasoning_summary_text.done", **at, text=text)
            emit("response.reasoning_summary_part.done", **at, part=dict(summary[summary_index]))
        if item["type"] == "function_call":
            item["arguments"] = "".join(entry.arguments)
            emit(
                "response.function_call_arguments.done",
                **where,
                name=item["name"],
                arguments=item["arguments"],
            )
        item["status"] = "incomplete"
        emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    final = copy.deepcopy(response)
    final["output"] = [entry.item for entry in items]
    final["status"] = status
    if status == "failed":
        final["error"] = {"code": "server_error", "message": message}
        emit("response.failed", response=copy.deepcopy(final))
    return closing, final


def _set_part(item: dict[str, Any], content_index: int, part: dict[str, Any]) -> None:
    content = item.setdefault("content", [])
    while len(content) <= content_index:
        content.append(None)
    content[content_index] = part
