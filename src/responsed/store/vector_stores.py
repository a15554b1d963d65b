"""Vector stores, their files and file batches (the rows; chunks are in `vectors/index.py`).
Over 400 lines because it is one protocol and its implementation for three tables.

File counts and usage are computed from `vector_store_files` on read, so they are never
out of step with the files' statuses. A file's `status` is the durable ingestion state:
`in_progress` rows are the queue the ingestion worker reads (`next_pending`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from responsed.store.sqlite import SQLiteResponseStore

__all__ = [
    "BatchRow",
    "NewFile",
    "PendingFile",
    "SQLiteVectorStoreRepository",
    "StoreRow",
    "VectorStoreRepository",
    "VSFileRow",
]

Order = Literal["asc", "desc"]
STATUSES = ("in_progress", "completed", "failed", "cancelled")


def _counts(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES, 0)
    for status, n, *_ in rows:
        counts[status] = int(n)
    counts["total"] = sum(counts.values())
    return counts


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


@dataclass(frozen=True, slots=True)
class StoreRow:
    id: str
    created_at: int
    name: str
    description: str | None
    metadata: dict[str, str] | None
    expires_after: dict[str, Any] | None
    last_active_at: int
    usage_bytes: int = 0
    file_counts: dict[str, int] = field(default_factory=lambda: _counts([]))

    @property
    def expires_at(self) -> int | None:
        if self.expires_after is None:
            return None
        return self.last_active_at + int(self.expires_after["days"]) * 86_400

    def wire(self, now: int) -> dict[str, Any]:
        expires_at = self.expires_at
        if expires_at is not None and now >= expires_at:
            status = "expired"
        elif self.file_counts["in_progress"]:
            status = "in_progress"
        else:
            status = "completed"
        return {
            "id": self.id,
            "object": "vector_store",
            "created_at": self.created_at,
            "name": self.name,
            "usage_bytes": self.usage_bytes,
            "file_counts": self.file_counts,
            "status": status,
            "expires_after": self.expires_after,
            "expires_at": expires_at,
            "last_active_at": self.last_active_at,
            "metadata": self.metadata if self.metadata is not None else {},
        }


@dataclass(frozen=True, slots=True)
class NewFile:
    file_id: str
    attributes: dict[str, Any] | None
    chunking_strategy: dict[str, Any]  # the wire form, {"type": "static", ...}


@dataclass(frozen=True, slots=True)
class VSFileRow:
    vector_store_id: str
    file_id: str
    created_at: int
    status: str
    last_error: dict[str, str] | None
    chunking_strategy: dict[str, Any]
    attributes: dict[str, Any] | None
    usage_bytes: int
    batch_id: str | None
    generation: int

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.file_id,
            "object": "vector_store.file",
            "usage_bytes": self.usage_bytes,
            "created_at": self.created_at,
            "vector_store_id": self.vector_store_id,
            "status": self.status,
            "last_error": self.last_error,
            "chunking_strategy": self.chunking_strategy,
            "attributes": self.attributes if self.attributes is not None else {},
        }


@dataclass(frozen=True, slots=True)
class PendingFile:
    """An `in_progress` file the ingestion worker should process."""

    project_id: str
    vector_store_id: str
    file_id: str
    generation: int
    chunking_strategy: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: str
    vector_store_id: str
    created_at: int
    cancelled: bool
    file_counts: dict[str, int]

    def wire(self) -> dict[str, Any]:
        counts = self.file_counts
        if self.cancelled:
            status = "cancelled"
        elif counts["in_progress"]:
            status = "in_progress"
        elif counts["total"] and counts["failed"] == counts["total"]:
            status = "failed"
        else:
            status = "completed"  # as the hosted API: done, some files may have failed
        return {
            "id": self.id,
            "object": "vector_store.files_batch",
            "created_at": self.created_at,
            "vector_store_id": self.vector_store_id,
            "status": status,
            "file_counts": counts,
        }


class VectorStoreRepository(Protocol):
    async def create_store(self, project_id: str, row: StoreRow, files: list[NewFile]) -> None:
        """Insert the store and its first files (in_progress) in one transaction."""

    async def get_store(self, project_id: str, store_id: str) -> StoreRow | None: ...

    async def page_stores(
        self, project_id: str, *, limit: int, after: str | None, before: str | None, order: Order
    ) -> tuple[list[StoreRow], bool]: ...

    async def update_store(self, project_id: str, store_id: str, changes: dict[str, Any]) -> bool:
        """Set columns among name, metadata, expires_after, last_active_at."""

    async def delete_store(self, project_id: str, store_id: str) -> bool: ...

    async def add_files(
        self,
        project_id: str,
        store_id: str,
        files: list[NewFile],
        now: int,
        batch: tuple[str, int] | None = None,
    ) -> None:
        """Attach (or attach again: back to in_progress) files; `batch` = (id, created_at)
        also creates the batch row in the same transaction."""

    async def get_file(self, project_id: str, store_id: str, file_id: str) -> VSFileRow | None: ...

    async def page_files(
        self,
        project_id: str,
        store_id: str,
        *,
        batch_id: str | None,
        status: str | None,
        limit: int,
        after: str | None,
        before: str | None,
        order: Order,
    ) -> tuple[list[VSFileRow], bool]: ...

    async def set_attributes(
        self, project_id: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> bool: ...

    async def delete_file(self, project_id: str, store_id: str, file_id: str) -> bool: ...

    async def detach_everywhere(self, project_id: str, file_id: str) -> list[str]:
        """Remove the file from every store of the project; the stores it was in."""

    async def get_batch(self, project_id: str, store_id: str, batch_id: str) -> BatchRow | None: ...

    async def cancel_batch(self, project_id: str, store_id: str, batch_id: str) -> bool:
        """Flag the batch and mark its files not yet done `cancelled`."""

    async def next_pending(self) -> PendingFile | None:
        """The oldest in_progress file of any project."""

    async def finish(
        self,
        job: PendingFile,
        status: str,
        last_error: dict[str, str] | None,
        usage_bytes: int,
    ) -> bool:
        """Record a job's outcome unless the file was detached, cancelled or attached
        again meanwhile (then False: the caller drops the chunks it added)."""


_STORE_COLS = "id, created_at, name, description, metadata, expires_after, last_active_at"
_FILE_COLS = (
    "vector_store_id, file_id, created_at, status, last_error, chunking_strategy, "
    "attributes, usage_bytes, batch_id, generation"
)
_STORE_COUNTS = (
    "SELECT status, count(*), coalesce(sum(usage_bytes), 0) FROM vector_store_files "
    "WHERE project_id = ? AND vector_store_id = ? GROUP BY status"
)
_BATCH_COUNTS = (
    "SELECT status, count(*) FROM vector_store_files "
    "WHERE project_id = ? AND vector_store_id = ? AND batch_id = ? GROUP BY status"
)


def _file_row(r: tuple[Any, ...]) -> VSFileRow:
    return VSFileRow(
        r[0], r[1], r[2], r[3], _loads(r[4]), json.loads(r[5]), _loads(r[6]), r[7], r[8], r[9]
    )


def _keyset(
    conn: sqlite3.Connection,
    table: str,
    cols: str,
    where: str,
    args: tuple[Any, ...],
    cursor_where: tuple[str, tuple[Any, ...]],
    *,
    limit: int,
    after: str | None,
    before: str | None,
    order: Order,
) -> tuple[list[tuple[Any, ...]], bool]:
    """A page by `seq` in `order` after the row `after` or before the row `before` (an
    unknown cursor: an empty page); `cursor_where` = (condition, args) finds a cursor's
    row given those args and its id."""
    cursor = after if after is not None else before
    forward = before is None  # reading away from the cursor in the listing's order
    asc = (order == "asc") == forward
    op = ">" if asc else "<"
    seq_filter = ""
    params: list[Any] = list(args)
    if cursor is not None:
        found = conn.execute(
            f"SELECT seq FROM {table} WHERE {cursor_where[0]}", (*cursor_where[1], cursor)
        ).fetchone()
        if found is None:
            return [], False
        seq_filter = f" AND seq {op} ?"
        params.append(found[0])
    rows = conn.execute(
        f"SELECT {cols} FROM {table} WHERE {where}{seq_filter} "
        f"ORDER BY seq {'ASC' if asc else 'DESC'} LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    page = rows[:limit]
    if not forward:
        page.reverse()
    return page, len(rows) > limit


class SQLiteVectorStoreRepository:
    """`VectorStoreRepository` on an open `SQLiteResponseStore`."""

    def __init__(self, db: SQLiteResponseStore) -> None:
        self.db = db

    # -- stores --------------------------------------------------------------------

    async def create_store(self, project_id: str, row: StoreRow, files: list[NewFile]) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO vector_stores (project_id, {_STORE_COLS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (project_id, row.id, row.created_at, row.name, row.description,
                 _json(row.metadata), _json(row.expires_after), row.last_active_at),
            )  # fmt: skip
            _attach(conn, project_id, row.id, files, row.created_at, None)

        await self.db.write(tx)

    def _store(self, conn: sqlite3.Connection, project_id: str, r: tuple[Any, ...]) -> StoreRow:
        stats = conn.execute(_STORE_COUNTS, (project_id, r[0])).fetchall()
        return StoreRow(
            id=r[0],
            created_at=r[1],
            name=r[2],
            description=r[3],
            metadata=_loads(r[4]),
            expires_after=_loads(r[5]),
            last_active_at=r[6],
            usage_bytes=sum(int(s[2]) for s in stats),
            file_counts=_counts(stats),
        )

    async def get_store(self, project_id: str, store_id: str) -> StoreRow | None:
        def work(conn: sqlite3.Connection) -> StoreRow | None:
            r = conn.execute(
                f"SELECT {_STORE_COLS} FROM vector_stores WHERE project_id = ? AND id = ?",
                (project_id, store_id),
            ).fetchone()
            return None if r is None else self._store(conn, project_id, r)

        return await self.db.read(work)

    async def page_stores(
        self, project_id: str, *, limit: int, after: str | None, before: str | None, order: Order
    ) -> tuple[list[StoreRow], bool]:
        def work(conn: sqlite3.Connection) -> tuple[list[StoreRow], bool]:
            rows, more = _keyset(
                conn, "vector_stores", _STORE_COLS, "project_id = ?", (project_id,),
                ("project_id = ? AND id = ?", (project_id,)),
                limit=limit, after=after, before=before, order=order,
            )  # fmt: skip
            return [self._store(conn, project_id, r) for r in rows], more

        return await self.db.read(work)

    async def update_store(self, project_id: str, store_id: str, changes: dict[str, Any]) -> bool:
        allowed = ("name", "metadata", "expires_after", "last_active_at")
        sets = [k for k in changes if k in allowed]
        values = [
            _json(changes[k]) if k in ("metadata", "expires_after") else changes[k] for k in sets
        ]
        assignments = ", ".join(f"{k} = ?" for k in sets) or "id = id"

        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE vector_stores SET {assignments} WHERE project_id = ? AND id = ?",
                (*values, project_id, store_id),
            )
            return cur.rowcount > 0

        return await self.db.write(tx)

    async def delete_store(self, project_id: str, store_id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            key = (project_id, store_id)
            for table in ("vector_store_files", "vector_store_file_batches"):
                conn.execute(
                    f"DELETE FROM {table} WHERE project_id = ? AND vector_store_id = ?", key
                )
            cur = conn.execute("DELETE FROM vector_stores WHERE project_id = ? AND id = ?", key)
            return cur.rowcount > 0

        return await self.db.write(tx)

    # -- files ---------------------------------------------------------------------

    async def add_files(
        self,
        project_id: str,
        store_id: str,
        files: list[NewFile],
        now: int,
        batch: tuple[str, int] | None = None,
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if batch is not None:
                conn.execute(
                    "INSERT INTO vector_store_file_batches (project_id, id, vector_store_id, "
                    "created_at) VALUES (?, ?, ?, ?)",
                    (project_id, batch[0], store_id, batch[1]),
                )
            _attach(conn, project_id, store_id, files, now, batch[0] if batch else None)

        await self.db.write(tx)

    async def get_file(self, project_id: str, store_id: str, file_id: str) -> VSFileRow | None:
        def work(conn: sqlite3.Connection) -> VSFileRow | None:
            r = conn.execute(
                f"SELECT {_FILE_COLS} FROM vector_store_files WHERE project_id = ? "
                "AND vector_store_id = ? AND file_id = ?",
                (project_id, store_id, file_id),
            ).fetchone()
            return None if r is None else _file_row(r)

        return await self.db.read(work)

    async def page_files(
        self,
        project_id: str,
        store_id: str,
        *,
        batch_id: str | None,
        status: str | None,
        limit: int,
        after: str | None,
        before: str | None,
        order: Order,
    ) -> tuple[list[VSFileRow], bool]:
        where = "project_id = ? AND vector_store_id = ?"
        args: tuple[Any, ...] = (project_id, store_id)
        if batch_id is not None:
            where += " AND batch_id = ?"
            args += (batch_id,)
        if status is not None:
            where += " AND status = ?"
            args += (status,)

        def work(conn: sqlite3.Connection) -> tuple[list[VSFileRow], bool]:
            rows, more = _keyset(
                conn, "vector_store_files", _FILE_COLS, where, args,
                ("project_id = ? AND vector_store_id = ? AND file_id = ?",
                 (project_id, store_id)),
                limit=limit, after=after, before=before, order=order,
            )  # fmt: skip
            return [_file_row(r) for r in rows], more

        return await self.db.read(work)

    async def set_attributes(
        self, project_id: str, store_id: str, file_id: str, attributes: dict[str, Any] | None
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE vector_store_files SET attributes = ? WHERE project_id = ? "
                "AND vector_store_id = ? AND file_id = ?",
                (_json(attributes), project_id, store_id, file_id),
            )
            return cur.rowcount > 0

        return await self.db.write(tx)

    async def delete_file(self, project_id: str, store_id: str, file_id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "DELETE FROM vector_store_files WHERE project_id = ? AND vector_store_id = ? "
                "AND file_id = ?",
                (project_id, store_id, file_id),
            )
            return cur.rowcount > 0

        return await self.db.write(tx)

    async def detach_everywhere(self, project_id: str, file_id: str) -> list[str]:
        def tx(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "DELETE FROM vector_store_files WHERE project_id = ? AND file_id = ? "
                "RETURNING vector_store_id",
                (project_id, file_id),
            ).fetchall()
            return [r[0] for r in rows]

        return await self.db.write(tx)

    # -- batches -------------------------------------------------------------------

    async def get_batch(self, project_id: str, store_id: str, batch_id: str) -> BatchRow | None:
        def work(conn: sqlite3.Connection) -> BatchRow | None:
            r = conn.execute(
                "SELECT created_at, cancelled FROM vector_store_file_batches "
                "WHERE project_id = ? AND id = ? AND vector_store_id = ?",
                (project_id, batch_id, store_id),
            ).fetchone()
            if r is None:
                return None
            stats = conn.execute(_BATCH_COUNTS, (project_id, store_id, batch_id)).fetchall()
            return BatchRow(batch_id, store_id, r[0], bool(r[1]), _counts(stats))

        return await self.db.read(work)

    async def cancel_batch(self, project_id: str, store_id: str, batch_id: str) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE vector_store_file_batches SET cancelled = 1 "
                "WHERE project_id = ? AND id = ? AND vector_store_id = ?",
                (project_id, batch_id, store_id),
            )
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE vector_store_files SET status = 'cancelled' WHERE project_id = ? "
                "AND vector_store_id = ? AND batch_id = ? AND status = 'in_progress'",
                (project_id, store_id, batch_id),
            )
            return True

        return await self.db.write(tx)

    # -- the ingestion queue -------------------------------------------------------

    async def next_pending(self) -> PendingFile | None:
        def work(conn: sqlite3.Connection) -> PendingFile | None:
            r = conn.execute(
                "SELECT project_id, vector_store_id, file_id, generation, chunking_strategy "
                "FROM vector_store_files WHERE status = 'in_progress' ORDER BY seq LIMIT 1"
            ).fetchone()
            return None if r is None else PendingFile(r[0], r[1], r[2], r[3], json.loads(r[4]))

        return await self.db.read(work)

    async def finish(
        self,
        job: PendingFile,
        status: str,
        last_error: dict[str, str] | None,
        usage_bytes: int,
    ) -> bool:
        def tx(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE vector_store_files SET status = ?, last_error = ?, usage_bytes = ? "
                "WHERE project_id = ? AND vector_store_id = ? AND file_id = ? "
                "AND generation = ? AND status = 'in_progress'",
                (status, _json(last_error), usage_bytes, job.project_id,
                 job.vector_store_id, job.file_id, job.generation),
            )  # fmt: skip
            return cur.rowcount > 0

        return await self.db.write(tx)


def _attach(
    conn: sqlite3.Connection,
    project_id: str,
    store_id: str,
    files: list[NewFile],
    now: int,
    batch_id: str | None,
) -> None:
    # Attaching a file again starts it over (new settings, new generation); it keeps
    # its place in listings.
    conn.executemany(
        "INSERT INTO vector_store_files (project_id, vector_store_id, file_id, created_at, "
        "status, chunking_strategy, attributes, batch_id) "
        "VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?) "
        "ON CONFLICT (project_id, vector_store_id, file_id) DO UPDATE SET "
        "created_at = excluded.created_at, status = 'in_progress', last_error = NULL, "
        "chunking_strategy = excluded.chunking_strategy, attributes = excluded.attributes, "
        "usage_bytes = 0, batch_id = excluded.batch_id, generation = generation + 1",
        [
            (project_id, store_id, f.file_id, now, json.dumps(f.chunking_strategy),
             _json(f.attributes), batch_id)
            for f in files
        ],
    )  # fmt: skip
