"""Rendered contexts of recent responses, so a `previous_response_id` turn costs the
same whatever the length of its chain.

Without it every turn re-reads the whole chain (one query, but O(chain) rows to parse)
and re-renders every item into chat messages. A cached `Context` is extended by the new
turn's items in time proportional to the turn, not to the chain. Contexts are immutable
and share their item and message dicts; a miss (another replica, a restart) falls back
to the store's one-query chain read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from responsed.engines.base import ChatMessage
from responsed.runtime.context import to_chat_messages

__all__ = ["Context", "ContextCache"]

Item = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Context:
    """A chain's items (oldest first), their rendering, and the tool calls it made."""

    items: tuple[Item, ...] = ()
    messages: tuple[ChatMessage, ...] = ()
    call_ids: frozenset[str] = frozenset()

    @classmethod
    def of(cls, items: Iterable[Item]) -> Context:
        return cls().extend(items)

    def extend(self, items: Iterable[Item]) -> Context:
        new = tuple(items)
        if not new:
            return self
        calls = {i["call_id"] for i in new if i["type"] == "function_call"}
        return Context(
            self.items + new,
            tuple(to_chat_messages(new, self.messages)),
            self.call_ids | calls if calls else self.call_ids,
        )


class ContextCache:
    """LRU of contexts by (project, response id), bounded by the items they hold."""

    def __init__(self, max_items: int = 1_000_000) -> None:
        self.max_items = max_items
        self._entries: OrderedDict[tuple[str, str], Context] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, project_id: str, response_id: str) -> Context | None:
        key = (project_id, response_id)
        context = self._entries.get(key)
        if context is not None:
            self._entries.move_to_end(key)
        return context

    def put(self, project_id: str, response_id: str, context: Context) -> None:
        self.evict(project_id, response_id)
        if len(context.items) > self.max_items:
            return
        self._entries[(project_id, response_id)] = context
        self._size += len(context.items)
        while self._size > self.max_items:
            _, oldest = self._entries.popitem(last=False)
            self._size -= len(oldest.items)

    def evict(self, project_id: str, response_id: str) -> None:
        old = self._entries.pop((project_id, response_id), None)
        if old is not None:
            self._size -= len(old.items)
