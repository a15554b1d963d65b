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
    (
        4,
        (
            # metadata: JSON object (PG: JSONB). A deleted conversation's row goes; its
            # items go with it.
            """CREATE TABLE conversations (
                project_id TEXT NOT NULL,
                id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                metadata BLOB NOT NULL,
                PRIMARY KEY (project_id, id)
            )""",
            # position orders items; item_id is unique in its conversation, so an item
            # given back as input is not appended twice.
            """CREATE TABLE conversation_items (
                project_id TEXT NOT NULL,
                conversation_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                item_id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                body BLOB NOT NULL,
                PRIMARY KEY (project_id, conversation_id, position),
                FOREIGN KEY (project_id, conversation_id)
                    REFERENCES conversations (project_id, id) ON DELETE CASCADE
            ) WITHOUT ROWID""",
            """CREATE UNIQUE INDEX conversation_items_id
                ON conversation_items (project_id, conversation_id, item_id)""",
        ),
    ),
    (
        5,
        (
            # Every event of a background response, for replay from any cursor.
            """CREATE TABLE response_events (
                project_id TEXT NOT NULL,
                response_id TEXT NOT NULL,
                sequence_number INTEGER NOT NULL,
                body BLOB NOT NULL,
                PRIMARY KEY (project_id, response_id, sequence_number),
                FOREIGN KEY (project_id, response_id)
                    REFERENCES responses (project_id, id) ON DELETE CASCADE
            ) WITHOUT ROWID""",
            # The durable queue: one row per background response not yet terminal.
            # request: the create body, to prepare the run again after a restart.
            # lease_until (ms): a running job's owner renews it; lapsed = owner died.
            """CREATE TABLE background_jobs (
                project_id TEXT NOT NULL,
                response_id TEXT NOT NULL,
                model TEXT NOT NULL,
                request BLOB NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('queued', 'running')),
                owner TEXT,
                lease_until BIGINT NOT NULL DEFAULT 0,
                cancel_requested INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (project_id, response_id),
                FOREIGN KEY (project_id, response_id)
                    REFERENCES responses (project_id, id) ON DELETE CASCADE
            )""",
            "CREATE INDEX background_jobs_queue ON background_jobs (state, created_at)",
        ),
    ),
    (
        6,
        (
            # Outgoing webhook deliveries, one row per (event, endpoint); id is the
            # stable `webhook-id` every retry carries. Times in ms.
            """CREATE TABLE webhook_deliveries (
                id TEXT NOT NULL,
                url TEXT NOT NULL,
                body BLOB NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                last_error TEXT,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (id, url)
            )""",
            """CREATE INDEX webhook_deliveries_due
                ON webhook_deliveries (state, next_attempt_at)""",
        ),
    ),
    (
        7,
        (
            # Uploaded files (the Files API). The content lives outside the database,
            # content-addressed by sha256 (several rows may share one blob); seq orders
            # listings and cursors. expires_at: unix seconds, NULL = never.
            """CREATE TABLE files (
                seq INTEGER PRIMARY KEY,
                project_id TEXT NOT NULL,
                id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                bytes BIGINT NOT NULL,
                filename TEXT NOT NULL,
                purpose TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                expires_at BIGINT
            )""",
            "CREATE UNIQUE INDEX files_id ON files (project_id, id)",
            "CREATE INDEX files_sha256 ON files (sha256)",
            "CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL",
        ),
    ),
    (
        8,
        (
            # Vector stores' chunks (SQLite only: the vec0/FTS5 tables have no PG twin;
            # PG would use pgvector and tsvector). id is the rowid shared with the FTS5
            # and vec0 tables. attributes: the file's attributes as JSON text, for
            # json_extract filters. start_char/end_char: the chunk's place in the file's
            # text, for citations.
            """CREATE TABLE vector_chunks (
                id INTEGER PRIMARY KEY,
                project_id TEXT NOT NULL,
                vector_store_id TEXT NOT NULL,
                file_id TEXT NOT NULL,
                chunk_index INTEGER NOT NULL,
                filename TEXT NOT NULL,
                attributes TEXT NOT NULL,
                text TEXT NOT NULL,
                start_char INTEGER NOT NULL,
                end_char INTEGER NOT NULL,
                dimensions INTEGER NOT NULL
            )""",
            """CREATE UNIQUE INDEX vector_chunks_file
                ON vector_chunks (project_id, vector_store_id, file_id, chunk_index)""",
            # BM25 keyword search; external content, so the text is stored once.
            """CREATE VIRTUAL TABLE vector_chunks_fts USING fts5(
                text, content='vector_chunks', content_rowid='id',
                tokenize='porter unicode61 remove_diacritics 2'
            )""",
            # One vec0 table per embedding width (more are created on first use);
            # partitioned by project and store so a kNN query scans one store only.
            """CREATE VIRTUAL TABLE vector_embeddings_384 USING vec0(
                partition TEXT PARTITION KEY,
                embedding FLOAT[384] distance_metric=cosine
            )""",
        ),
    ),
    (
        9,
        (
            # Vector stores (the chunks are in vector_chunks). seq orders listings and
            # cursors. metadata / expires_after: JSON text or NULL. Times: unix seconds.
            """CREATE TABLE vector_stores (
                seq INTEGER PRIMARY KEY,
                project_id TEXT NOT NULL,
                id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                name TEXT NOT NULL,
                description TEXT,
                metadata TEXT,
                expires_after TEXT,
                last_active_at BIGINT NOT NULL
            )""",
            "CREATE UNIQUE INDEX vector_stores_id ON vector_stores (project_id, id)",
            # One row per file attached to a store; status is the durable ingestion
            # state (in_progress rows are the work queue, picked up again on start).
            # generation changes when the file is attached again, so a job still running
            # for the previous attachment cannot mark the new one done.
            """CREATE TABLE vector_store_files (
                seq INTEGER PRIMARY KEY,
                project_id TEXT NOT NULL,
                vector_store_id TEXT NOT NULL,
                file_id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                status TEXT NOT NULL CHECK (status IN
                    ('in_progress', 'completed', 'cancelled', 'failed')),
                last_error TEXT,
                chunking_strategy TEXT NOT NULL,
                attributes TEXT,
                usage_bytes BIGINT NOT NULL DEFAULT 0,
                batch_id TEXT,
                generation INTEGER NOT NULL DEFAULT 0
            )""",
            """CREATE UNIQUE INDEX vector_store_files_id
                ON vector_store_files (project_id, vector_store_id, file_id)""",
            "CREATE INDEX vector_store_files_file ON vector_store_files (project_id, file_id)",
            """CREATE INDEX vector_store_files_batch
                ON vector_store_files (project_id, batch_id) WHERE batch_id IS NOT NULL""",
            """CREATE INDEX vector_store_files_pending
                ON vector_store_files (seq) WHERE status = 'in_progress'""",
            """CREATE TABLE vector_store_file_batches (
                project_id TEXT NOT NULL,
                id TEXT NOT NULL,
                vector_store_id TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                cancelled INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (project_id, id)
            )""",
        ),
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
