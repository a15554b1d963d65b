"""The Conversations API: create, read, update and delete conversations and their items.

Items given to a conversation are validated and normalized exactly as a response's
input items are (`runtime/context.normalize_input`), so a message gets its `msg_` id
and `status` here as it would in `input_items`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, cast

from responsed.protocol.conversations import (
    CreateConversationRequest,
    CreateItemsRequest,
    UpdateConversationRequest,
    check_include,
    check_item_count,
    check_list_query,
)
from responsed.protocol.errors import APIError, invalid_request, not_found
from responsed.protocol.ids import new_id
from responsed.runtime.context import normalize_input
from responsed.store.conversations import ConversationStore, DuplicateItemError

__all__ = ["ConversationService"]

Item = dict[str, Any]


def _conversation_not_found(conversation_id: str, param: str | None = None) -> APIError:
    return not_found(
        f"Conversation with id '{conversation_id}' not found.", param=param, code="not_found"
    )


def _item_not_found(item_id: str) -> APIError:
    return not_found(f"Item with id '{item_id}' not found.", param="item_id", code="not_found")


def _normalize(items: Sequence[Any]) -> list[Item]:
    """`normalize_input`, with its refusals pointing at `items[…]` rather than `input[…]`."""
    try:
        return normalize_input(list(items))
    except APIError as exc:
        if exc.param is None or not exc.param.startswith("input"):
            raise
        raise invalid_request(
            exc.message, param="items" + exc.param.removeprefix("input"), code=exc.code
        ) from None


def _duplicate(exc: DuplicateItemError) -> APIError:
    return invalid_request(
        f"Item with id '{exc.item_id}' already exists in this conversation.",
        param="items",
        code="invalid_value",
    )


def _item_list(items: list[Item], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


class ConversationService:
    def __init__(self, store: ConversationStore) -> None:
        self.store = store

    async def create(self, request: CreateConversationRequest, project_id: str) -> dict[str, Any]:
        check_item_count(request.items or (), allow_empty=True)
        items = _normalize(request.items or ())
        conversation = {
            "id": new_id("conv"),
            "object": "conversation",
            "created_at": int(time.time()),
            "metadata": request.metadata or {},
        }
        try:
            await self.store.create_conversation(project_id, conversation, items)
        except DuplicateItemError as exc:
            raise _duplicate(exc) from None
        return conversation

    async def retrieve(self, project_id: str, conversation_id: str) -> dict[str, Any]:
        conversation = await self.store.get_conversation(project_id, conversation_id)
        if conversation is None:
            raise _conversation_not_found(conversation_id)
        return conversation

    async def update(
        self, project_id: str, conversation_id: str, request: UpdateConversationRequest
    ) -> dict[str, Any]:
        conversation = await self.store.update_metadata(
            project_id, conversation_id, request.metadata or {}
        )
        if conversation is None:
            raise _conversation_not_found(conversation_id)
        return conversation

    async def delete(self, project_id: str, conversation_id: str) -> dict[str, Any]:
        if not await self.store.delete_conversation(project_id, conversation_id):
            raise _conversation_not_found(conversation_id)
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    async def list_items(
        self,
        project_id: str,
        conversation_id: str,
        *,
        after: str | None = None,
        limit: int = 20,
        order: str = "desc",
        include: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        check_list_query(limit, order)
        check_include(include)
        page = await self.store.list_items(
            project_id,
            conversation_id,
            after=after,
            limit=limit,
            order=cast(Literal["asc", "desc"], order),
        )
        if page is None:
            raise _conversation_not_found(conversation_id)
        return _item_list(page.data, page.has_more)

    async def create_items(
        self,
        project_id: str,
        conversation_id: str,
        request: CreateItemsRequest,
        include: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        check_include(include)
        check_item_count(request.items, allow_empty=False)
        items = _normalize(request.items)
        try:
            appended = await self.store.append_items(project_id, conversation_id, items)
        except DuplicateItemError as exc:
            raise _duplicate(exc) from None
        if appended is None:
            raise _conversation_not_found(conversation_id)
        return _item_list(appended, False)

    async def retrieve_item(
        self,
        project_id: str,
        conversation_id: str,
        item_id: str,
        include: Sequence[str] | None = None,
    ) -> Item:
        check_include(include)
        item = await self.store.get_item(project_id, conversation_id, item_id)
        if item is None:
            await self.retrieve(project_id, conversation_id)  # which one is missing?
            raise _item_not_found(item_id)
        return item

    async def delete_item(
        self, project_id: str, conversation_id: str, item_id: str
    ) -> dict[str, Any]:
        conversation = await self.store.delete_item(project_id, conversation_id, item_id)
        if conversation is None:
            await self.retrieve(project_id, conversation_id)
            raise _item_not_found(item_id)
        return conversation

    async def context_items(self, project_id: str, conversation_id: str) -> list[Item]:
        """Every item of the conversation, oldest first: what a response's model sees
        before its own input. A missing conversation is the request's 404."""
        items = await self.store.items(project_id, conversation_id)
        if items is None:
            raise _conversation_not_found(conversation_id, param="conversation")
        return items
