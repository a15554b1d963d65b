"""Schema migrations for the SQLite store: an append-only list of numbered steps.

Each step is a tuple of single statements (not a script) so it runs inside the caller's
transaction; `executescript` would commit implicitly. The SQL sticks to what PostgreSQL
also accepts where that is cheap, so the PG store can mirror it table for table.
"""

from __future__ import annotations

import sqlite3

__all__ = ["LATEST_VERSION", "MIGRATIONS", "apply_migrations"]

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            # body: the full wire Response, orjson-encoded (PG: JSONB).
            """CREATE TABLE responses (
                project_id TEXT NOT NULL,
                id TEXT NOT NULL,
                previous_response_id TEXT,
                created_at BIGINT NOT NULL,
                status TEXT NOT NULL,
                body BLOB NOT NULL,
                PRIMARY KEY (project_id, id)
            )""",
            # No FK on previous_response_id: deleting a middle turn just ends the chain.
            # The PK is the clustering key: one response's items of one kind are a
            # contiguous, position-ordered range, so ordered reads and cursors are
            # range scans and `ORDER BY kind` puts 'input' before 'output'.
            """CREATE TABLE response_items (
                project_id TEXT NOT NULL,
                response_id TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('input', 'output')),
                position INTEGER NOT NULL,
                item_id TEXT NOT NULL,
                body BLOB NOT NULL,
                PRIMARY KEY (project_id, response_id, kind, position),
                FOREIGN KEY (project_id, response_id)
                    REFERENCES responses (project_id, id) ON DELETE CASCADE
            ) WITHOUT ROWID""",
        ),
    ),
    (
        2,
        (
            # Covering index for the recursive chain walk: each step reads the parent id
            # from the index alone (measured 5.6 → 3.7 ms for a 1000-turn chain).
            """CREATE INDEX responses_chain
                ON responses (project_id, id, previous_response_id)""",
        ),
    ),
    (
        3,
        # What the model was sent when truncation left part of the context out (JSON).
        ("ALTER TABLE responses ADD COLUMN sent TEXT",),
    ),
)
"""(version, statements) in ascending order; add a migration by appending one entry."""

LATEST_VERSION = MIGRATIONS[-1][0]


def apply_migrations(conn: sqlite3.Connection) -> int:
    """Apply pending migrations in one transaction; idempotent. Returns the version.

    `conn` must be in autocommit mode (isolation_level=None) so BEGIN is ours.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )
    # IMMEDIATE takes the write lock up front, so two processes opening the same file
    # serialize here instead of both applying the same step.
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()
        current = int(row[0])
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) "
                "VALUES (?, CAST(strftime('%s', 'now') AS INTEGER))",
                (version,),
            )
            current = version
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current
