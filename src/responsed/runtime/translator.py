"""Deltas in, Responses streaming events out.
(Over 400 lines: one state machine owns every item kind's events, indices and text.)

The translator owns `sequence_number`, `output_index` and `content_index`, and keeps
the Response object in step with the events, so the final object is exactly what the
stream described. Events are plain dicts in wire shape, serialized once by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from responsed.engines.base import (
    Delta,
    EngineError,
    Finish,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from responsed.protocol.ids import new_id
from responsed.protocol.response import usage_object
from responsed.runtime.citations import Citation
from responsed.runtime.hosted_events import HostedFinished, HostedPhase, HostedStarted

__all__ = ["Event", "Translator", "usage_of"]

Event = dict[str, Any]
# What the run feeds: the engine's deltas, and what the hosted-tool loop adds to them.
Fed = Delta | Citation | HostedStarted | HostedPhase | HostedFinished


class Translator:
    def __init__(
        self,
        response: dict[str, Any],
        *,
        max_calls: int | None = None,
        seal_reasoning: Callable[[str], str] | None = None,
        hide_reasoning: bool = False,
        first_sequence: int = 0,
    ) -> None:
        self.response = response
        self._seal_reasoning = seal_reasoning
        # Raw reasoning stays on the server (summaries and sealed content still go out).
        self._hide_reasoning = hide_reasoning
        self._reasoning: list[str] = []  # the open reasoning item's text
        self._max_calls = max_calls  # later calls are dropped (parallel_tool_calls, cap)
        self._dropped: set[int] = set()
        self._logprobs: list[dict[str, Any]] = []  # of the open output_text part
        self.output: list[dict[str, Any]] = response["output"]
        self._seq = first_sequence  # a background run continues its queued events
        self._open: dict[str, Any] | None = None  # the item being generated
        self._part: dict[str, Any] | None = None  # its open content part
        # The open part's text, joined when it closes: `+=` on a string held in a dict
        # copies it every time (quadratic in the length of the answer).
        self._pieces: list[str] = []
        self._where: dict[str, Any] = {}  # item_id/output_index/content_index of the part
        self._calls: dict[int, dict[str, Any]] = {}  # engine tool-call index → item
        self.finished = False

    # -- plumbing -----------------------------------------------------------------

    def _event(self, type_: str, **fields: Any) -> Event:
        event: Event = {"type": type_, "sequence_number": self._seq, **fields}
        self._seq += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        # Events carry the response as it is now; later mutation must not leak into them.
        snap = dict(self.response)
        snap["output"] = [_copy_item(i) for i in self.output]
        return snap

    def start(self) -> list[Event]:
        return [self._event("response.created", response=self._snapshot())]

    def in_progress(self) -> list[Event]:
        self.response["status"] = "in_progress"
        return [self._event("response.in_progress", response=self._snapshot())]

    # -- items ----------------------------------------------------------------------

    def _add_item(self, item: dict[str, Any]) -> Event:
        self.output.append(item)
        self._open = item
        return self._event(
            "response.output_item.added", output_index=len(self.output) - 1, item=_copy_item(item)
        )

    def _ensure_message(self, events: list[Event]) -> dict[str, Any]:
        if self._open is None or self._open["type"] != "message":
            self._close_open(events, "completed")
            events.append(
                self._add_item(
                    {
                        "id": new_id("msg"),
                        "type": "message",
                        "status": "in_progress",
                        "content": [],
                        "role": "assistant",
                    }
                )
            )
        return self._open  # type: ignore[return-value]

    def _ensure_part(self, events: list[Event], kind: str) -> dict[str, Any]:
        message = self._ensure_message(events)
        if self._part is not None and self._part["type"] == kind:
            return self._part
        self._close_part(events)
        part: dict[str, Any] = (
            {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            if kind == "output_text"
            else {"type": "refusal", "refusal": ""}
        )
        message["content"].append(part)
        self._part = part
        self._pieces = []
        self._logprobs = []
        self._where = {
            "item_id": message["id"],
            "output_index": len(self.output) - 1,
            "content_index": len(message["content"]) - 1,
        }
        events.append(self._event("response.content_part.added", **self._where, part=dict(part)))
        return part

    def _join_part(self) -> None:
        part = self._part
        if part is None:
            return
        if part["type"] == "output_text":
            part["text"] = "".join(self._pieces)
            part["logprobs"] = self._logprobs
        else:
            part["refusal"] = "".join(self._pieces)

    def output_text(self) -> str | None:
        """The answer's text so far; None if the model refused or only called tools."""
        texts: list[str] = []
        for item in self.output:
            for part in item.get("content") or () if item["type"] == "message" else ():
                if part["type"] == "refusal":
                    return None
                if part is self._part:
                    texts.append("".join(self._pieces))
                else:
                    texts.append(part["text"])
        return "".join(texts) if texts else None

    def _close_part(self, events: list[Event]) -> None:
        part, message = self._part, self._open
        if part is None or message is None:
            return
        self._join_part()
        where = self._where
        if part["type"] == "output_text":
            events.append(
                self._event(
                    "response.output_text.done",
                    **where,
                    text=part["text"],
                    logprobs=part["logprobs"],
                )
            )
        else:
            events.append(self._event("response.refusal.done", **where, refusal=part["refusal"]))
        events.append(self._event("response.content_part.done", **where, part=dict(part)))
        self._part = None

    def _close_open(self, events: list[Event], status: str) -> None:
        item = self._open
        if item is None:
            return
        index = len(self.output) - 1
        if item["type"] == "message":
            self._close_part(events)
        elif item["type"] == "function_call":
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        elif item["type"] == "reasoning":
            text = "".join(self._reasoning)
            if not self._hide_reasoning:
                item["content"][0]["text"] = text
                where = {"item_id": item["id"], "output_index": index, "content_index": 0}
                events.append(self._event("response.reasoning_text.done", **where, text=text))
                part = dict(item["content"][0])
                events.append(self._event("response.content_part.done", **where, part=part))
            if self._seal_reasoning is not None:
                item["encrypted_content"] = self._seal_reasoning(text)
        item["status"] = status
        events.append(
            self._event("response.output_item.done", output_index=index, item=_copy_item(item))
        )
        self._open = None

    # -- deltas ---------------------------------------------------------------------

    def feed(self, delta: Fed) -> list[Event]:
        events: list[Event] = []
        if isinstance(delta, TextDelta):
            if delta.text:
                part = self._part
                if part is None or part["type"] != "output_text":
                    self._ensure_part(events, "output_text")
                self._pieces.append(delta.text)
                logprobs = [] if delta.logprobs is None else _logprob_entries(delta.logprobs)
                if logprobs:
                    self._logprobs.extend(logprobs)
                # The per-token hot path: one dict literal, no helper calls.
                seq = self._seq
                self._seq = seq + 1
                events.append(
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": seq,
                        **self._where,
                        "delta": delta.text,
                        "logprobs": logprobs,
                    }
                )
        elif isinstance(delta, RefusalDelta):
            if delta.text:
                self._ensure_part(events, "refusal")
                self._pieces.append(delta.text)
                events.append(
                    self._event("response.refusal.delta", **self._where, delta=delta.text)
                )
        elif isinstance(delta, ReasoningDelta):
            self._feed_reasoning(events, delta.text)
        elif isinstance(delta, ToolCallDelta):
            self._feed_call(events, delta)
        elif isinstance(delta, Citation):
            self._cite(events, delta)
        elif isinstance(delta, HostedStarted | HostedPhase | HostedFinished):
            self._feed_hosted(events, delta)
        return events

    def _cite(self, events: list[Event], citation: Citation) -> None:
        part = self._part
        if part is None or part["type"] != "output_text":
            part = self._ensure_part(events, "output_text")
        annotation = {
            "type": "file_citation",
            "file_id": citation.file_id,
            "filename": citation.filename,
            "index": sum(len(p) for p in self._pieces),
        }
        part["annotations"].append(annotation)
        events.append(
            self._event(
                "response.output_text.annotation.added",
                **self._where,
                annotation_index=len(part["annotations"]) - 1,
                annotation=dict(annotation),
            )
        )

    def _feed_hosted(
        self, events: list[Event], delta: HostedStarted | HostedPhase | HostedFinished
    ) -> None:
        if isinstance(delta, HostedStarted):
            self._close_open(events, "completed")
            events.append(self._add_item({**delta.item, "status": "in_progress"}))
            phase = "in_progress"
        else:
            item = self._open
            assert item is not None, "a hosted call event without its item"
            if isinstance(delta, HostedPhase):
                item["status"] = phase = delta.phase
            else:
                item.update(delta.fields)
                item["status"] = phase = delta.status
        item = self.output[-1]
        where = {"item_id": item["id"], "output_index": len(self.output) - 1}
        if phase != "failed":  # a failed call has no event of its own; its item says so
            events.append(self._event(f"response.{item['type']}.{phase}", **where))
        if isinstance(delta, HostedFinished):
            events.append(
                self._event(
                    "response.output_item.done",
                    output_index=where["output_index"],
                    item=_copy_item(item),
                )
            )
            self._open = None

    def _feed_reasoning(self, events: list[Event], text: str) -> None:
        if not text:
            return
        item = self._open
        if item is None or item["type"] != "reasoning":
            self._close_open(events, "completed")
            item = {"id": new_id("rs"), "type": "reasoning", "summary": []}
            if not self._hide_reasoning:
                item["content"] = [{"type": "reasoning_text", "text": ""}]
            item["status"] = "in_progress"
            self._reasoning = []
            events.append(self._add_item(item))
            if not self._hide_reasoning:
                events.append(
                    self._event(
                        "response.content_part.added",
                        item_id=item["id"],
                        output_index=len(self.output) - 1,
                        content_index=0,
                        part={"type": "reasoning_text", "text": ""},
                    )
                )
        self._reasoning.append(text)
        if not self._hide_reasoning:
            events.append(
                self._event(
                    "response.reasoning_text.delta",
                    item_id=item["id"],
                    output_index=len(self.output) - 1,
                    content_index=0,
                    delta=text,
                )
            )

    def reasoning_open(self) -> bool:
        return self._open is not None and self._open["type"] == "reasoning"

    def reasoning_text(self) -> str:
        return "".join(self._reasoning) if self.reasoning_open() else ""

    def summary(self, pieces: list[str]) -> list[Event]:
        """A `summary_text` part on the open reasoning item, streamed piece by piece."""
        item = self._open
        assert item is not None and item["type"] == "reasoning"
        where = {
            "item_id": item["id"],
            "output_index": len(self.output) - 1,
            "summary_index": len(item["summary"]),
        }
        empty = {"type": "summary_text", "text": ""}
        events = [self._event("response.reasoning_summary_part.added", **where, part=empty)]
        for piece in pieces:
            if piece:
                events.append(
                    self._event("response.reasoning_summary_text.delta", **where, delta=piece)
                )
        part = {"type": "summary_text", "text": "".join(pieces)}
        item["summary"].append(part)
        events.append(
            self._event("response.reasoning_summary_text.done", **where, text=part["text"])
        )
        events.append(self._event("response.reasoning_summary_part.done", **where, part=dict(part)))
        return events

    def _feed_call(self, events: list[Event], delta: ToolCallDelta) -> None:
        item = self._calls.get(delta.index)
        if item is None:
            if delta.index in self._dropped or (
                self._max_calls is not None and len(self._calls) >= self._max_calls
            ):
                self._dropped.add(delta.index)
                return
            self._close_open(events, "completed")
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": delta.call_id or new_id("call"),
                "name": delta.name or "",
            }
            self._calls[delta.index] = item
            events.append(self._add_item(item))
        elif item is not self._open:
            # The call was already reported done: folding this fragment in would make the
            # final item differ from its events. Servers stream calls one after another;
            # one that interleaves them is reported rather than silently mangled.
            raise EngineError("the model interleaved fragments of parallel tool calls", status=502)
        if delta.name and not item["name"]:
            item["name"] = delta.name
        if delta.arguments:
            item["arguments"] += delta.arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=len(self.output) - 1,
                    delta=delta.arguments,
                )
            )

    # -- endings --------------------------------------------------------------------

    def finish(self, finish: Finish) -> list[Event]:
        events: list[Event] = []
        incomplete = finish.reason in ("length", "content_filter")
        self._close_open(events, "incomplete" if incomplete else "completed")
        if incomplete:
            reason = "max_output_tokens" if finish.reason == "length" else "content_filter"
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": reason}
        else:
            self.response["status"] = "completed"
        self.response["usage"] = usage_of(finish.usage)
        self.response["completed_at"] = int(time.time())
        events.append(self._event(f"response.{self.response['status']}", response=self._snapshot()))
        self.finished = True
        return events

    def fail(self, code: str, message: str) -> list[Event]:
        events: list[Event] = []
        self._close_open(events, "incomplete")
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        events.append(self._event("response.failed", response=self._snapshot()))
        self.finished = True
        return events

    def cancel(self) -> list[Event]:
        """Stop, keeping the partial output: open items close as incomplete. There is no
        terminal event for a cancelled response; a foreground client is gone anyway, and
        a background stream ends after these events."""
        events: list[Event] = []
        self._close_open(events, "incomplete")
        self.response["status"] = "cancelled"
        self.finished = True
        return events


def _logprob_entries(tokens: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    return [
        {
            "token": t.token,
            "logprob": t.logprob,
            "bytes": list(t.bytes),
            "top_logprobs": [
                {"token": token, "logprob": logprob, "bytes": list(raw)}
                for token, logprob, raw in t.top
            ],
        }
        for t in tokens
    ]


def _copy_item(item: dict[str, Any]) -> dict[str, Any]:
    copy = dict(item)
    for key in ("content", "summary"):
        if isinstance(copy.get(key), list):
            copy[key] = [dict(p) for p in copy[key]]
    return copy


def usage_of(usage: Usage | None) -> dict[str, Any]:
    if usage is None:
        return usage_object(0, 0)
    return usage_object(
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        usage.cache_write_tokens,
    )
