"""File rows (the Files API's metadata); the content is in `store/blobs.py`.

Rows past their `expires_at` are invisible to every read and removed by
`purge_expired`. Deleting a row reports whether its blob is still referenced, in the
same transaction, so the caller can remove an orphaned blob.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from responsed.store.sqlite import SQLiteResponseStore

__all__ = ["FileRow", "FileStore", "SQLiteFileStore"]


@dataclass(frozen=True, slots=True)
class FileRow:
    id: str
    created_at: int
    bytes: int
    filename: str
    purpose: str
    sha256: str
    expires_at: int | None

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


_COLUMNS = "id, created_at, bytes, filename, purpose, sha256, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_INSERT = f"INSERT INTO files (project_id, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_GET = f"SELECT {_COLUMNS} FROM files WHERE project_id = ? AND id = ? AND {_LIVE}"
_SEQ = "SELECT seq FROM files WHERE project_id = ? AND id = ?"
_PAGE = {
    order: f"SELECT {_COLUMNS} FROM files WHERE project_id = ? AND {_LIVE}"
    f" AND (? IS NULL OR purpose = ?) AND seq {op} ? ORDER BY seq {order.upper()} LIMIT ?"
    for order, op in (("asc", ">"), ("desc", "<"))
}
_DELETE = "DELETE FROM files WHERE project_id = ? AND id = ? RETURNING sha256"
_EXPIRED = "DELETE FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING sha256"
_REFERENCED = "SELECT 1 FROM files WHERE sha256 = ? LIMIT 1"


class FileStore(Protocol):
    async def insert(self, project_id: str, row: FileRow) -> None: ...

    async def get(self, project_id: str, file_id: str, now: int) -> FileRow | None:
        """The row unless it does not exist or has expired by `now`."""

    async def page(
        self,
        project_id: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        now: int,
    ) -> tuple[list[FileRow], bool]:
        """Rows after the file `after` (unknown: an empty page), and whether more follow."""

    async def delete(self, project_id: str, file_id: str) -> tuple[bool, list[str]]:
        """(whether a row was deleted, sha256s no longer referenced by any row)."""

    async def purge_expired(self, now: int) -> list[str]:
        """Delete expired rows; the sha256s no longer referenced by any row."""


def _row(r: tuple[Any, ...]) -> FileRow:
    return FileRow(*r)


def _orphans(conn: sqlite3.Connection, digests: list[str]) -> list[str]:
    return [d for d in set(digests) if conn.execute(_REFERENCED, (d,)).fetchone() is None]


class SQLiteFileStore:
    """`FileStore` on the `files` table of an open `SQLiteResponseStore`."""

    def __init__(self, db: SQLiteResponseStore) -> None:
        self.db = db

    async def insert(self, project_id: str, row: FileRow) -> None:
        values = (
            project_id,
            row.id,
            row.created_at,
            row.bytes,
            row.filename,
            row.purpose,
            row.sha256,
            row.expires_at,
        )
        await self.db.write(lambda conn: conn.execute(_INSERT, values))

    async def get(self, project_id: str, file_id: str, now: int) -> FileRow | None:
        def work(conn: sqlite3.Connection) -> FileRow | None:
            r = conn.execute(_GET, (project_id, file_id, now)).fetchone()
            return None if r is None else _row(r)

        return await self.db.read(work)

    async def page(
        self,
        project_id: str,
        *,
        purpose: str | None,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        now: int,
    ) -> tuple[list[FileRow], bool]:
        def work(conn: sqlite3.Connection) -> tuple[list[FileRow], bool]:
            if after is None:
                cursor = 0 if order == "asc" else 2**62
            else:
                found = conn.execute(_SEQ, (project_id, after)).fetchone()
                if found is None:
                    return [], False
                cursor = found[0]
            params = (project_id, now, purpose, purpose, cursor, limit + 1)
            rows = conn.execute(_PAGE[order], params).fetchall()
            return [_row(r) for r in rows[:limit]], len(rows) > limit

        return await self.db.read(work)

    async def delete(self, project_id: str, file_id: str) -> tuple[bool, list[str]]:
        def tx(conn: sqlite3.Connection) -> tuple[bool, list[str]]:
            digests = [r[0] for r in conn.execute(_DELETE, (project_id, file_id)).fetchall()]
            return bool(digests), _orphans(conn, digests)

        return await self.db.write(tx)

    async def purge_expired(self, now: int) -> list[str]:
        def tx(conn: sqlite3.Connection) -> list[str]:
            return _orphans(conn, [r[0] for r in conn.execute(_EXPIRED, (now,)).fetchall()])

        return await self.db.write(tx)
