"""Conversations: ordered item lists, stored beside the responses in the same database.

A conversation's items are numbered by `position` (append order; deletes leave gaps),
so listing is a range scan of the primary key and a cursor is the position of the item
id it names, exactly as a response's input items are paged in `store/sqlite.py`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import orjson

from responsed.store.base import Item, ItemPage
from responsed.store.sqlite import SQLiteResponseStore, keyset_page, loads_many

__all__ = [
    "ConversationStore",
    "DuplicateItemError",
    "SQLiteConversationStore",
]

Conversation = dict[str, Any]
"""The wire object: `{"id", "object": "conversation", "created_at", "metadata"}`."""


_INSERT_CONVERSATION = (
    "INSERT INTO conversations (project_id, id, created_at, metadata) VALUES (?, ?, ?, ?)"
)
_GET = "SELECT id, created_at, metadata FROM conversations WHERE project_id = ? AND id = ?"
_EXISTS = "SELECT 1 FROM conversations WHERE project_id = ? AND id = ?"
_UPDATE_METADATA = "UPDATE conversations SET metadata = ? WHERE project_id = ? AND id = ?"
_DELETE = "DELETE FROM conversations WHERE project_id = ? AND id = ?"  # items cascade
_NEXT_POSITION = """
SELECT COALESCE(MAX(position), -1) + 1 FROM conversation_items
WHERE project_id = ? AND conversation_id = ?
"""
_INSERT_ITEM = """
INSERT INTO conversation_items (project_id, conversation_id, position, item_id, created_at, body)
VALUES (?, ?, ?, ?, ?, ?)
"""
_INSERT_ITEM_IF_NEW = _INSERT_ITEM + "ON CONFLICT (project_id, conversation_id, item_id) DO NOTHING"
_POSITION = """
SELECT position FROM conversation_items
WHERE project_id = ? AND conversation_id = ? AND item_id = ?
"""
_GET_ITEM = """
SELECT body FROM conversation_items
WHERE project_id = ? AND conversation_id = ? AND item_id = ?
"""
_DELETE_ITEM = """
DELETE FROM conversation_items WHERE project_id = ? AND conversation_id = ? AND item_id = ?
"""
_PAGE = {
    order: "SELECT body FROM conversation_items WHERE project_id = ? AND conversation_id = ?"
    f" AND position {op} ? ORDER BY position {order.upper()} LIMIT ?"
    for order, op in (("asc", ">"), ("desc", "<"))
}
# The LEFT JOIN keeps one row (body NULL) for a conversation without items, so "no rows"
# means exactly "no such conversation".
_ALL_ITEMS = """
SELECT i.body FROM conversations AS c
LEFT JOIN conversation_items AS i ON i.project_id = c.project_id AND i.conversation_id = c.id
WHERE c.project_id = ? AND c.id = ?
ORDER BY i.position
"""


class DuplicateItemError(Exception):
    """An item id already in the conversation (or twice in one call); nothing was written."""

    def __init__(self, item_id: str) -> None:
        super().__init__(item_id)
        self.item_id = item_id


class ConversationStore(Protocol):
    async def create_conversation(
        self, project_id: str, conversation: Conversation, items: Sequence[Item]
    ) -> None:
        """Insert a new conversation and its initial items (each with an `id`).

        Raises `DuplicateItemError` if two items share an id.
        """

    async def get_conversation(
        self, project_id: str, conversation_id: str
    ) -> Conversation | None: ...

    async def update_metadata(
        self, project_id: str, conversation_id: str, metadata: dict[str, str]
    ) -> Conversation | None:
        """Replace the metadata; the updated conversation, or None if there is none."""

    async def delete_conversation(self, project_id: str, conversation_id: str) -> bool:
        """Delete a conversation with its items; False if there was none."""

    async def append_items(
        self,
        project_id: str,
        conversation_id: str,
        items: Sequence[Item],
        *,
        skip_existing: bool = False,
    ) -> list[Item] | None:
        """Append items after the last one, in one transaction; None: no conversation.

        An item whose id is already in the conversation raises `DuplicateItemError`
        (nothing is written), or with `skip_existing` is left out: the items actually
        appended are returned, so giving the same item back twice appends it once.
        """

    async def list_items(
        self,
        project_id: str,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage | None:
        """A page of items; an unknown `after` cursor gives an empty page."""

    async def get_item(self, project_id: str, conversation_id: str, item_id: str) -> Item | None:
        """The item, or None if either the conversation or the item does not exist."""

    async def delete_item(
        self, project_id: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        """Delete one item; the conversation it was in, or None if nothing was deleted."""

    async def items(self, project_id: str, conversation_id: str) -> list[Item] | None:
        """Every item, oldest first (a model's context); None: no such conversation."""


def _conversation(row: tuple[str, int, bytes]) -> Conversation:
    return {
        "id": row[0],
        "object": "conversation",
        "created_at": row[1],
        "metadata": orjson.loads(row[2]),
    }


def _insert_items(
    conn: sqlite3.Connection,
    key: tuple[str, str],
    items: Sequence[Item],
    created_at: int,
    *,
    skip_existing: bool,
) -> list[Item]:
    """Append after the current last position; one statement per item (at most ~20) so
    each insert tells whether it happened."""
    position: int = conn.execute(_NEXT_POSITION, key).fetchone()[0]
    appended: list[Item] = []
    for item in items:
        row = (*key, position, item["id"], created_at, orjson.dumps(item))
        if skip_existing:
            if conn.execute(_INSERT_ITEM_IF_NEW, row).rowcount == 0:
                continue
        else:
            try:
                conn.execute(_INSERT_ITEM, row)
            except sqlite3.IntegrityError:
                raise DuplicateItemError(item["id"]) from None
        appended.append(item)
        position += 1
    return appended


class SQLiteConversationStore:
    """`ConversationStore` on the tables of an open `SQLiteResponseStore`."""

    def __init__(self, db: SQLiteResponseStore) -> None:
        self.db = db

    async def create_conversation(
        self, project_id: str, conversation: Conversation, items: Sequence[Item]
    ) -> None:
        key = (project_id, conversation["id"])
        created_at = conversation["created_at"]
        metadata = orjson.dumps(conversation["metadata"])

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT_CONVERSATION, (*key, created_at, metadata))
            _insert_items(conn, key, items, created_at, skip_existing=False)

        await self.db.write(tx)

    async def get_conversation(self, project_id: str, conversation_id: str) -> Conversation | None:
        def work(conn: sqlite3.Connection) -> Conversation | None:
            row = conn.execute(_GET, (project_id, conversation_id)).fetchone()
            return None if row is None else _conversation(row)

        return await self.db.read(work)

    async def update_metadata(
        self, project_id: str, conversation_id: str, metadata: dict[str, str]
    ) -> Conversation | None:
        key = (project_id, conversation_id)
        body = orjson.dumps(metadata)

        def tx(conn: sqlite3.Connection) -> Conversation | None:
            if conn.execute(_UPDATE_METADATA, (body, *key)).rowcount == 0:
                return None
            return _conversation(conn.execute(_GET, key).fetchone())

        return await self.db.write(tx)

    async def delete_conversation(self, project_id: str, conversation_id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            return conn.execute(_DELETE, (project_id, conversation_id)).rowcount > 0

        return await self.db.write(tx)

    async def append_items(
        self,
        project_id: str,
        conversation_id: str,
        items: Sequence[Item],
        *,
        skip_existing: bool = False,
    ) -> list[Item] | None:
        key = (project_id, conversation_id)
        created_at = int(time.time())

        def tx(conn: sqlite3.Connection) -> list[Item] | None:
            if conn.execute(_EXISTS, key).fetchone() is None:
                return None
            return _insert_items(conn, key, items, created_at, skip_existing=skip_existing)

        return await self.db.write(tx)

    async def list_items(
        self,
        project_id: str,
        conversation_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage | None:
        if order not in _PAGE:
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        limit = max(0, limit)
        key = (project_id, conversation_id)

        def work(conn: sqlite3.Connection) -> ItemPage | None:
            if conn.execute(_EXISTS, key).fetchone() is None:
                return None
            return keyset_page(conn, _POSITION, _PAGE[order], key, after, limit, order)

        return await self.db.read(work)

    async def get_item(self, project_id: str, conversation_id: str, item_id: str) -> Item | None:
        def work(conn: sqlite3.Connection) -> Item | None:
            row = conn.execute(_GET_ITEM, (project_id, conversation_id, item_id)).fetchone()
            if row is None:
                return None
            item: Item = orjson.loads(row[0])
            return item

        return await self.db.read(work)

    async def delete_item(
        self, project_id: str, conversation_id: str, item_id: str
    ) -> Conversation | None:
        key = (project_id, conversation_id)

        def tx(conn: sqlite3.Connection) -> Conversation | None:
            if conn.execute(_DELETE_ITEM, (*key, item_id)).rowcount == 0:
                return None
            return _conversation(conn.execute(_GET, key).fetchone())

        return await self.db.write(tx)

    async def items(self, project_id: str, conversation_id: str) -> list[Item] | None:
        def work(conn: sqlite3.Connection) -> list[Item] | None:
            rows = conn.execute(_ALL_ITEMS, (project_id, conversation_id)).fetchall()
            if not rows:
                return None
            return loads_many([r[0] for r in rows if r[0] is not None])

        return await self.db.read(work)
