"""Rendered contexts of recent responses, so a `previous_response_id` turn costs the
same whatever the length of its chain.

Without it every turn re-reads the whole chain (one query, but O(chain) rows to parse)
and re-renders every item into chat messages. A cached `Context` is extended by the new
turn's items in time proportional to the turn, not to the chain. Contexts are immutable
and share their message dicts; a miss (another replica, a restart, an evicted entry)
falls back to the store's one-query chain read.

Memory: only rendered messages are kept (not the items), the cache is bounded by an
estimate of the bytes it holds, and caching a turn drops its parent's entry — chains
mostly grow at the tip, so a linear chain costs one entry, not one per turn. A fork
from an older turn is a miss, served by the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from responsed.engines.base import ChatMessage
from responsed.runtime.context import Unseal, to_chat_messages

__all__ = ["Context", "ContextCache", "content_chars"]

Item = dict[str, Any]

_REF_BYTES = 16  # a slot in `messages` and one in `counts`
_MESSAGE_BYTES = 400  # a message dict and its small strings, beyond its text


def content_chars(message: ChatMessage) -> int:
    content = message.get("content")
    if isinstance(content, str):
        chars = len(content)
    else:
        chars = sum(len(str(part.get("text", ""))) for part in content or ())
    for call in message.get("tool_calls") or ():
        chars += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return chars


def _message_bytes(message: ChatMessage) -> int:
    content = message.get("content")
    text = len(content) if isinstance(content, str) else 256 * len(content or ())
    return _MESSAGE_BYTES + text + 128 * len(message.get("tool_calls") or ())


@dataclass(frozen=True, slots=True)
class Context:
    """A chain's rendering and the tool calls it made; `size` estimates its bytes.

    `counts[i]` is the number of items `messages[i]` stands for (see to_chat_messages).
    """

    messages: tuple[ChatMessage, ...] = ()
    call_ids: frozenset[str] = frozenset()
    size: int = 0
    counts: tuple[int, ...] = ()
    chars: int = 0  # characters of text content, for token estimates
    # The reasoning that led to each function call (by call_id), so it can be given
    # back to the model in the turn that answers the call.
    reasoning: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, items: Iterable[Item], unseal: Unseal | None = None) -> Context:
        return cls().extend(items, unseal)

    def extend(self, items: Iterable[Item], unseal: Unseal | None = None) -> Context:
        new = list(items)
        if not new:
            return self
        calls = {i["call_id"] for i in new if i["type"] == "function_call"}
        counts = list(self.counts)
        messages = to_chat_messages(new, self.messages, counts, unseal)
        # Messages past the prefix are new, and so is the prefix's last one if a
        # function call replaced it with a copy.
        start = len(self.messages)
        if start and messages[start - 1] is not self.messages[-1]:
            start -= 1
        fresh = messages[start:]
        size = self.size + _REF_BYTES * (len(messages) - len(self.messages))
        size += sum(_message_bytes(m) for m in fresh)
        chars = self.chars + sum(content_chars(m) for m in fresh)
        if start < len(self.messages):  # the prefix's last message was replaced
            chars -= content_chars(self.messages[start])
        reasoning = _reasoning_by_call(new, unseal)
        return Context(
            tuple(messages),
            self.call_ids | calls if calls else self.call_ids,
            size,
            tuple(counts),
            chars,
            {**self.reasoning, **reasoning} if reasoning else self.reasoning,
        )

    def with_reasoning(self, call_ids: Iterable[str]) -> Context:
        """This context with the reasoning behind `call_ids` on the assistant turns that
        made those calls (`reasoning_content`, as reasoning servers accept it back)."""
        wanted = {c: self.reasoning[c] for c in call_ids if c in self.reasoning}
        if not wanted:
            return self
        messages = list(self.messages)
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            calls = [c["id"] for c in message.get("tool_calls") or () if c["id"] in wanted]
            if calls:
                messages[index] = {**message, "reasoning_content": wanted[calls[0]]}
                for call in calls:
                    del wanted[call]
                if not wanted:
                    break
        return replace(self, messages=tuple(messages))


def _reasoning_by_call(items: list[Item], unseal: Unseal | None) -> dict[str, str]:
    """call_id → the text of the reasoning item right before that call (its turn's)."""
    found: dict[str, str] = {}
    pending: str | None = None
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            text = "".join(str(p.get("text", "")) for p in item.get("content") or ())
            if not text and item.get("encrypted_content") and unseal is not None:
                text = unseal(item)
            pending = text or None
        elif kind == "function_call":
            if pending is not None:
                found[item["call_id"]] = pending
        elif kind != "function_call_output":
            pending = None
    return found


class ContextCache:
    """LRU of contexts by (project, response id), bounded by their estimated bytes."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str], Context] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, project_id: str, response_id: str) -> Context | None:
        key = (project_id, response_id)
        context = self._entries.get(key)
        if context is not None:
            self._entries.move_to_end(key)
        return context

    def put(
        self, project_id: str, response_id: str, context: Context, parent: str | None = None
    ) -> None:
        """Cache `context`; the entry of `parent` (the turn it extends) is dropped."""
        if parent is not None:
            self.evict(project_id, parent)
        self.evict(project_id, response_id)
        if context.size > self.max_bytes:
            return
        self._entries[(project_id, response_id)] = context
        self._bytes += context.size
        while self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def evict(self, project_id: str, response_id: str) -> None:
        old = self._entries.pop((project_id, response_id), None)
        if old is not None:
            self._bytes -= old.size
