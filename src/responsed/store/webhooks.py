"""Outgoing webhook deliveries: a durable outbox, one row per (event, endpoint).

A row is written `pending` before the event is announced anywhere, and stays pending
until the endpoint answers 2xx (`delivered`) or its retry window closes (`failed`), so
a restart resends whatever was not acknowledged. Times are unix milliseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from responsed.store.sqlite import SQLiteResponseStore

__all__ = ["Delivery", "SQLiteWebhookStore", "WebhookStore"]

DeliveryState = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str  # the event id, sent as `webhook-id` on every attempt
    url: str
    body: bytes  # the exact bytes signed and POSTed
    state: DeliveryState
    attempts: int
    next_attempt_at: int
    expires_at: int
    last_error: str | None
    created_at: int


class WebhookStore(Protocol):
    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        """Insert the rows in one transaction (committed when this returns)."""

    async def due(self, now: int, limit: int, url: str | None = None) -> list[Delivery]:
        """Pending rows (of `url`, if given) with next_attempt_at <= `now`, earliest
        first."""

    async def mark_delivered(self, id: str, url: str) -> None:
        """Count the attempt and settle the row."""

    async def mark_retry(self, id: str, url: str, next_attempt_at: int, error: str) -> None:
        """Count the failed attempt and schedule the next."""

    async def mark_failed(self, id: str, url: str, error: str) -> None:
        """Count the failed attempt and give up on the row."""

    async def get(self, id: str, url: str) -> Delivery | None: ...

    async def purge(self, before: int) -> int:
        """Delete settled (delivered or failed) rows whose retry window closed before
        `before`; the number deleted."""


_COLUMNS = "id, url, body, state, attempts, next_attempt_at, expires_at, last_error, created_at"
_INSERT = f"INSERT INTO webhook_deliveries ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Both read the (state, next_attempt_at) index; the per-URL one filters within it.
_DUE = f"""
SELECT {_COLUMNS} FROM webhook_deliveries
WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?
"""
_DUE_URL = f"""
SELECT {_COLUMNS} FROM webhook_deliveries
WHERE state = 'pending' AND next_attempt_at <= ? AND url = ? ORDER BY next_attempt_at LIMIT ?
"""
# `state = 'pending'` in every update: a settled row is never reopened or recounted.
_DELIVERED = """
UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1
WHERE id = ? AND url = ? AND state = 'pending'
"""
_RETRY = """
UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?
WHERE id = ? AND url = ? AND state = 'pending'
"""
_FAILED = """
UPDATE webhook_deliveries SET state = 'failed', attempts = attempts + 1, last_error = ?
WHERE id = ? AND url = ? AND state = 'pending'
"""
_GET = f"SELECT {_COLUMNS} FROM webhook_deliveries WHERE id = ? AND url = ?"
_PURGE = "DELETE FROM webhook_deliveries WHERE state != 'pending' AND expires_at < ?"


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(row[0], row[1], bytes(row[2]), row[3], row[4], row[5], row[6], row[7], row[8])


class SQLiteWebhookStore:
    """`WebhookStore` on the SQLite database the responses live in."""

    def __init__(self, db: SQLiteResponseStore) -> None:
        self.db = db

    async def enqueue(self, deliveries: Sequence[Delivery]) -> None:
        rows = [
            (
                d.id,
                d.url,
                d.body,
                d.state,
                d.attempts,
                d.next_attempt_at,
                d.expires_at,
                d.last_error,
                d.created_at,
            )
            for d in deliveries
        ]
        if rows:
            await self.db.write(lambda conn: conn.executemany(_INSERT, rows))

    async def due(self, now: int, limit: int, url: str | None = None) -> list[Delivery]:
        def work(conn: sqlite3.Connection) -> list[Delivery]:
            if url is None:
                cursor = conn.execute(_DUE, (now, limit))
            else:
                cursor = conn.execute(_DUE_URL, (now, url, limit))
            return [_delivery(r) for r in cursor]

        return await self.db.read(work)

    async def mark_delivered(self, id: str, url: str) -> None:
        await self.db.write(lambda conn: conn.execute(_DELIVERED, (id, url)))

    async def mark_retry(self, id: str, url: str, next_attempt_at: int, error: str) -> None:
        await self.db.write(lambda conn: conn.execute(_RETRY, (next_attempt_at, error, id, url)))

    async def mark_failed(self, id: str, url: str, error: str) -> None:
        await self.db.write(lambda conn: conn.execute(_FAILED, (error, id, url)))

    async def get(self, id: str, url: str) -> Delivery | None:
        def work(conn: sqlite3.Connection) -> Delivery | None:
            row = conn.execute(_GET, (id, url)).fetchone()
            return None if row is None else _delivery(row)

        return await self.db.read(work)

    async def purge(self, before: int) -> int:
        return await self.db.write(lambda conn: conn.execute(_PURGE, (before,)).rowcount)
