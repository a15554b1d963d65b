"""Helpers for this project's own tests: the streaming event grammar checker.

`assert_valid_event_stream` checks what a client relies on beyond per-event schemas:
sequence numbers, the lifecycle order, item/part nesting, and that `*.done` payloads
and the final Response agree with the deltas that preceded them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["assert_valid_event_stream"]

TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_TEXT_DELTAS = {
    "response.output_text.delta": ("response.output_text.done", "text"),
    "response.refusal.delta": ("response.refusal.done", "refusal"),
    "response.reasoning_text.delta": ("response.reasoning_text.done", "text"),
}
_DONE_TO_DELTA = {done: delta for delta, (done, _) in _TEXT_DELTAS.items()}


def _fail(message: str, event: dict[str, Any] | None = None) -> None:
    where = f" at sequence_number {event.get('sequence_number')}" if event else ""
    raise AssertionError(message + where + (f": {event}" if event else ""))


def assert_valid_event_stream(
    events: list[dict[str, Any]], *, cancelled: bool = False
) -> dict[str, Any] | None:
    """Check the grammar; return the final Response (None for an `error`-only stream, or
    a `cancelled` one: a cancelled background response ends with its items closed and no
    terminal event)."""
    if not events:
        _fail("empty event stream")
    for n, event in enumerate(events):
        if event.get("sequence_number") != n:
            _fail(f"sequence_number should be {n}", event)
    if events[0]["type"] == "error":
        if len(events) != 1:
            _fail("an error before response.created must be the only event")
        return None
    if events[0]["type"] != "response.created":
        _fail("the first event must be response.created", events[0])
    if len(events) < 2 or events[1]["type"] not in ("response.in_progress", "response.queued"):
        _fail("response.in_progress (or queued) must follow response.created")
    last = events[-1]
    terminals = sum(1 for e in events if e["type"] in TERMINAL)
    if cancelled:
        if terminals:
            _fail("a cancelled stream has no terminal event")
        events = [*events, {"type": "(cancelled)"}]  # so the loop below sees them all
    elif last["type"] not in TERMINAL:
        _fail("the stream must end with a terminal event", last)
    elif terminals != 1:
        _fail("exactly one terminal event expected")

    added: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    open_parts: set[tuple[int, int]] = set()
    text: dict[tuple[Any, ...], str] = {}
    args: dict[int, str] = {}
    for event in events[2:-1]:
        kind = event["type"]
        index: Any = event.get("output_index")
        if kind == "response.output_item.added":
            assert index is not None
            if index != len(added):
                _fail(f"output_index should be {len(added)}", event)
            if any(i not in done for i in added):
                _fail("an item was added while another was still open", event)
            added[index] = event["item"]
        elif kind == "response.output_item.done":
            if index not in added or index in done:
                _fail("output_item.done without a matching open item", event)
            if event["item"]["id"] != added[index]["id"]:
                _fail("output_item.done names a different item id", event)
            if any(p[0] == index for p in open_parts):
                _fail("item done while one of its content parts is open", event)
            done[index] = event["item"]
        elif kind == "response.content_part.added":
            key = (index, event["content_index"])
            if index not in added or index in done or key in open_parts:
                _fail("content_part.added outside an open item", event)
            open_parts.add(key)
        elif kind == "response.content_part.done":
            key = (index, event["content_index"])
            if key not in open_parts:
                _fail("content_part.done without content_part.added", event)
            open_parts.discard(key)
        elif kind in _TEXT_DELTAS:
            key3 = (kind, index, event["content_index"])
            if (index, event["content_index"]) not in open_parts:
                _fail("delta outside an open content part", event)
            text[key3] = text.get(key3, "") + event["delta"]
        elif kind in _DONE_TO_DELTA:
            field = _TEXT_DELTAS[_DONE_TO_DELTA[kind]][1]
            key3 = (_DONE_TO_DELTA[kind], index, event["content_index"])
            if event[field] != text.get(key3, ""):
                _fail(f"{kind} {field} differs from the concatenated deltas", event)
        elif kind == "response.reasoning_summary_part.added":
            key = (index, -1 - event["summary_index"])  # negative: apart from content parts
            if index not in added or index in done or key in open_parts:
                _fail("summary_part.added outside an open item", event)
            open_parts.add(key)
        elif kind == "response.reasoning_summary_part.done":
            key = (index, -1 - event["summary_index"])
            if key not in open_parts:
                _fail("summary_part.done without summary_part.added", event)
            if event["part"]["text"] != text.get(("summary", *key), ""):
                _fail("summary_part.done text differs from the deltas", event)
            open_parts.discard(key)
        elif kind == "response.reasoning_summary_text.delta":
            key = (index, -1 - event["summary_index"])
            if key not in open_parts:
                _fail("summary delta outside an open summary part", event)
            text[("summary", *key)] = text.get(("summary", *key), "") + event["delta"]
        elif kind == "response.reasoning_summary_text.done":
            key = (index, -1 - event["summary_index"])
            if event["text"] != text.get(("summary", *key), ""):
                _fail("summary_text.done differs from the deltas", event)
        elif kind == "response.function_call_arguments.delta":
            if index not in added or index in done:
                _fail("arguments delta outside an open function_call item", event)
            args[index] = args.get(index, "") + event["delta"]
        elif kind == "response.function_call_arguments.done" and event["arguments"] != args.get(
            index, ""
        ):
            _fail("function_call_arguments.done differs from the deltas", event)
        item_id = event.get("item_id")
        if item_id is not None and index in added and item_id != added[index]["id"]:
            _fail("item_id does not match the item at output_index", event)
    if set(added) != set(done):
        _fail("some output items were never done")
    if cancelled:
        return None
    final: dict[str, Any] = last["response"]
    if [i["id"] for i in final["output"]] != [done[i]["id"] for i in sorted(done)]:
        _fail("the final response output differs from the streamed items", last)
    for i, item in enumerate(final["output"]):
        if item != done[i]:
            _fail(f"final output[{i}] differs from its output_item.done", last)
    if events[0]["response"]["id"] != final["id"]:
        _fail("response id changed during the stream", last)
    return final
