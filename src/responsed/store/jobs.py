"""Background responses: the durable job queue and the persisted event log.

A background response is a `responses` row plus a `background_jobs` row until it is
terminal, and its events in `response_events`. Every change of state is one
transaction with the events it produced, so a crash never leaves a response whose
status and event log disagree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from responsed.store.base import ResponseRecord
from responsed.store.sqlite import SQLiteResponseStore, loads_many, put_response_tx

__all__ = ["Job", "JobStore", "SQLiteJobStore"]

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Job:
    project_id: str
    response_id: str
    model: str
    request: bytes  # the create body, to prepare the run again after a restart
    state: Literal["queued", "running"]
    attempts: int


class JobStore(Protocol):
    async def enqueue(
        self, record: ResponseRecord, model: str, request: bytes, events: Sequence[Event]
    ) -> None:
        """Store the queued response, its first events and its job, atomically."""

    async def claim(
        self, project_id: str, response_id: str, owner: str, now: int, lease_until: int
    ) -> bool:
        """Take a queued job, or a running one whose lease lapsed before `now`; False if
        it is gone, taken, or asked to cancel."""

    async def renew(self, owner: str, lease_until: int) -> set[tuple[str, str]]:
        """Extend the leases of `owner`'s running jobs; return those asked to cancel."""

    async def append(
        self,
        project_id: str,
        response_id: str,
        events: Sequence[Event],
        record: ResponseRecord | None,
    ) -> bool:
        """Add events (and update the response when `record` is given). False, writing
        nothing, when the job is gone (the response was deleted)."""

    async def finish(self, record: ResponseRecord, events: Sequence[Event]) -> bool:
        """Add the last events, store the terminal response and drop its job, atomically.
        False, writing nothing, when the job is gone: the response was deleted, or
        another process already ended it."""

    async def release(self, owner: str) -> None:
        """End `owner`'s leases now (a clean shutdown): the next process recovers its
        running jobs at once instead of waiting for the leases to lapse."""

    async def reset(self, project_id: str, response_id: str) -> None:
        """Forget a run's events but the first two (created, queued), to run it again."""

    async def request_cancel(self, project_id: str, response_id: str) -> Job | None:
        """Flag the job for cancellation; the job as it was, None if there is none."""

    async def pending(self, now: int) -> list[Job]:
        """Queued jobs and running jobs whose lease lapsed before `now`, oldest first."""

    async def events(self, project_id: str, response_id: str, after: int) -> list[Event]:
        """Persisted events with sequence_number > `after`, in order."""


_INSERT_JOB = """
INSERT INTO background_jobs (project_id, response_id, model, request, state, created_at)
VALUES (?, ?, ?, ?, 'queued', ?)
"""
_INSERT_EVENT = """
INSERT INTO response_events (project_id, response_id, sequence_number, body) VALUES (?, ?, ?, ?)
"""
_CLAIM = """
UPDATE background_jobs SET state = 'running', owner = ?, lease_until = ?, attempts = attempts + 1
WHERE project_id = ? AND response_id = ? AND cancel_requested = 0
  AND (state = 'queued' OR lease_until < ?)
"""
_RELEASE = "UPDATE background_jobs SET lease_until = 0 WHERE owner = ? AND state = 'running'"
_RENEW = "UPDATE background_jobs SET lease_until = ? WHERE owner = ? AND state = 'running'"
_CANCELS = """
SELECT project_id, response_id FROM background_jobs
WHERE owner = ? AND state = 'running' AND cancel_requested = 1
"""
_JOB_COLUMNS = "project_id, response_id, model, request, state, attempts"
_GET_JOB = f"SELECT {_JOB_COLUMNS} FROM background_jobs WHERE project_id = ? AND response_id = ?"
_FLAG_CANCEL = (
    "UPDATE background_jobs SET cancel_requested = 1 WHERE project_id = ? AND response_id = ?"
)
_DELETE_RUN_EVENTS = """
DELETE FROM response_events WHERE project_id = ? AND response_id = ? AND sequence_number > 1
"""
_DELETE_JOB = "DELETE FROM background_jobs WHERE project_id = ? AND response_id = ?"
_JOB_EXISTS = "SELECT 1 FROM background_jobs WHERE project_id = ? AND response_id = ?"
_PENDING = f"""
SELECT {_JOB_COLUMNS} FROM background_jobs
WHERE state = 'queued' OR lease_until < ? ORDER BY created_at
"""
_EVENTS_AFTER = """
SELECT body FROM response_events
WHERE project_id = ? AND response_id = ? AND sequence_number > ? ORDER BY sequence_number
"""


def _job(row: Sequence[Any]) -> Job:
    return Job(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])


def _insert_events(
    conn: sqlite3.Connection, project_id: str, response_id: str, events: Sequence[Event]
) -> None:
    conn.executemany(
        _INSERT_EVENT,
        [(project_id, response_id, e["sequence_number"], orjson.dumps(e)) for e in events],
    )


class SQLiteJobStore:
    """`JobStore` on the SQLite database the responses live in."""

    def __init__(self, db: SQLiteResponseStore) -> None:
        self.db = db

    async def enqueue(
        self, record: ResponseRecord, model: str, request: bytes, events: Sequence[Event]
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            put_response_tx(conn, record)
            _insert_events(conn, record.project_id, record.id, events)
            conn.execute(
                _INSERT_JOB, (record.project_id, record.id, model, request, record.created_at)
            )

        await self.db.write(tx)

    async def claim(
        self, project_id: str, response_id: str, owner: str, now: int, lease_until: int
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            params = (owner, lease_until, project_id, response_id, now)
            return conn.execute(_CLAIM, params).rowcount == 1

        return await self.db.write(tx)

    async def renew(self, owner: str, lease_until: int) -> set[tuple[str, str]]:
        def tx(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            conn.execute(_RENEW, (lease_until, owner))
            return {(r[0], r[1]) for r in conn.execute(_CANCELS, (owner,))}

        return await self.db.write(tx)

    async def append(
        self,
        project_id: str,
        response_id: str,
        events: Sequence[Event],
        record: ResponseRecord | None,
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            if conn.execute(_JOB_EXISTS, (project_id, response_id)).fetchone() is None:
                return False
            _insert_events(conn, project_id, response_id, events)
            if record is not None:
                put_response_tx(conn, record)
            return True

        return await self.db.write(tx)

    async def finish(self, record: ResponseRecord, events: Sequence[Event]) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            # Deleting the job first: its absence means someone else ended the response
            # (or deleted it), and nothing may be written over that.
            if conn.execute(_DELETE_JOB, (record.project_id, record.id)).rowcount == 0:
                return False
            _insert_events(conn, record.project_id, record.id, events)
            put_response_tx(conn, record)
            return True

        return await self.db.write(tx)

    async def release(self, owner: str) -> None:
        await self.db.write(lambda conn: conn.execute(_RELEASE, (owner,)))

    async def reset(self, project_id: str, response_id: str) -> None:
        await self.db.write(
            lambda conn: conn.execute(_DELETE_RUN_EVENTS, (project_id, response_id))
        )

    async def request_cancel(self, project_id: str, response_id: str) -> Job | None:
        def tx(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute(_GET_JOB, (project_id, response_id)).fetchone()
            if row is not None:
                conn.execute(_FLAG_CANCEL, (project_id, response_id))
            return None if row is None else _job(row)

        return await self.db.write(tx)

    async def pending(self, now: int) -> list[Job]:
        return await self.db.read(lambda conn: [_job(r) for r in conn.execute(_PENDING, (now,))])

    async def events(self, project_id: str, response_id: str, after: int) -> list[Event]:
        def work(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(_EVENTS_AFTER, (project_id, response_id, after)).fetchall()
            return loads_many([r[0] for r in rows])

        return await self.db.read(work)
