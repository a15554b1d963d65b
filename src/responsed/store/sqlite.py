"""SQLite implementation of `ResponseStore`: the embedded default.

Every operation is one synchronous function run in a single thread hop, not one hop per
statement as with aiosqlite: a `put_response` is BEGIN + 3-4 statements + COMMIT, and
hops (~20-50 µs each) would dominate the sub-millisecond budget. All writes go through
one dedicated writer thread/connection (SQLite allows one writer anyway, and it avoids
BUSY retries); reads use a small pool of separate connections, which WAL lets run
concurrently with the writer. A write is committed before its await returns, so a
subsequent read on any connection sees it.

WAL checkpoints (which fsync) are taken off the writer: autocheckpoint is disabled on the
writer connection and a third thread runs a PASSIVE checkpoint every
`_CHECKPOINT_EVERY` write transactions, so commits stay ~tens of µs at p99 instead of
paying a multi-millisecond checkpoint every few hundred writes.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from responsed.store.base import Item, ItemPage, ResponseRecord
from responsed.store.migrations import apply_migrations
from responsed.store.sqlite_ext import install_sqlite_vec, load_sqlite_vec

__all__ = ["MAX_CHAIN_DEPTH", "SQLiteResponseStore", "keyset_page", "loads_many", "put_response_tx"]

T = TypeVar("T")

MAX_CHAIN_DEPTH = 100_000
"""Recursion bound for `chain_items`; only matters if ids ever form a cycle."""

_BUSY_TIMEOUT_MS = 5_000
_CHECKPOINT_EVERY = 200  # write transactions; ~1000 WAL pages is SQLite's own default
_CURSOR_MAX = 2**62

_INSERT_RESPONSE = """
INSERT INTO responses (project_id, id, previous_response_id, created_at, status, body, sent)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (project_id, id) DO NOTHING
"""
_GET_SENT = "SELECT sent FROM responses WHERE project_id = ? AND id = ?"
_UPDATE_RESPONSE = "UPDATE responses SET status = ?, body = ? WHERE project_id = ? AND id = ?"
_DELETE_OUTPUTS = (
    "DELETE FROM response_items WHERE project_id = ? AND response_id = ? AND kind = 'output'"
)
_INSERT_ITEM = """
INSERT INTO response_items (project_id, response_id, kind, position, item_id, body)
VALUES (?, ?, ?, ?, ?, ?)
"""
_GET_RESPONSE = "SELECT body FROM responses WHERE project_id = ? AND id = ?"
_EXISTS = "SELECT 1 FROM responses WHERE project_id = ? AND id = ?"
_DELETE_RESPONSE = "DELETE FROM responses WHERE project_id = ? AND id = ?"  # items cascade
# Cursor lookup scans one response's input range; no extra index on item_id, so the
# hot insert path maintains a single b-tree.
_INPUT_POSITION = """
SELECT position FROM response_items
WHERE project_id = ? AND response_id = ? AND kind = 'input' AND item_id = ?
"""
_PAGE = {
    order: "SELECT body FROM response_items WHERE project_id = ? AND response_id = ?"
    f" AND kind = 'input' AND position {op} ? ORDER BY position {order.upper()} LIMIT ?"
    for order, op in (("asc", ">"), ("desc", "<"))
}
# One query for the whole chain. The LEFT JOIN keeps a row (body NULL) for a response
# without items, so "no rows" means exactly "response_id does not exist".
# ORDER BY kind relies on 'input' < 'output'.
_CHAIN = """
WITH RECURSIVE chain (id, previous_id, depth) AS (
    SELECT id, previous_response_id, 0 FROM responses WHERE project_id = :project AND id = :id
    UNION ALL
    SELECT r.id, r.previous_response_id, c.depth + 1
    FROM chain AS c JOIN responses AS r ON r.project_id = :project AND r.id = c.previous_id
    WHERE c.depth < :max_depth
)
SELECT i.body FROM chain AS c
LEFT JOIN response_items AS i ON i.project_id = :project AND i.response_id = c.id
ORDER BY c.depth DESC, i.kind, i.position
"""


_NEXT_CONVERSATION_POSITION = """
SELECT COALESCE(MAX(position), -1) + 1 FROM conversation_items
WHERE project_id = ? AND conversation_id = ?
"""
_APPEND_CONVERSATION_ITEM = """
INSERT INTO conversation_items
    (project_id, conversation_id, position, item_id, created_at, body)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (project_id, conversation_id, item_id) DO NOTHING
"""
_CONVERSATION_EXISTS = "SELECT 1 FROM conversations WHERE project_id = ? AND id = ?"
_APPENDED_STATUSES = ("completed", "incomplete")


def put_response_tx(conn: sqlite3.Connection, record: ResponseRecord) -> None:
    """`ResponseStore.put_response` inside the caller's transaction (other repositories
    write a response together with their own rows)."""
    p, rid = record.project_id, record.id
    body = orjson.dumps(record.body)
    output = record.body.get("output") or ()
    sent = None if record.sent is None else orjson.dumps(record.sent)
    row = (p, rid, record.previous_response_id, record.created_at, record.status, body, sent)
    if conn.execute(_INSERT_RESPONSE, row).rowcount == 1:
        # First insert: input items are immutable from here on.
        conn.executemany(
            _INSERT_ITEM,
            [
                (p, rid, "input", i, item["id"], orjson.dumps(item))
                for i, item in enumerate(record.input_items)
            ],
        )
    else:
        conn.execute(_UPDATE_RESPONSE, (record.status, body, p, rid))
        conn.execute(_DELETE_OUTPUTS, (p, rid))
    conn.executemany(
        _INSERT_ITEM,
        [(p, rid, "output", i, item["id"], orjson.dumps(item)) for i, item in enumerate(output)],
    )
    if record.conversation_id is not None and record.status in _APPENDED_STATUSES:
        _append_to_conversation(conn, record)


def _append_to_conversation(conn: sqlite3.Connection, record: ResponseRecord) -> None:
    key = (record.project_id, record.conversation_id)
    if conn.execute(_CONVERSATION_EXISTS, key).fetchone() is None:
        return  # deleted while the response ran: nothing to append to
    position: int = conn.execute(_NEXT_CONVERSATION_POSITION, key).fetchone()[0]
    now = record.body.get("completed_at") or record.created_at
    for item in [*record.input_items, *(record.body.get("output") or ())]:
        cur = conn.execute(
            _APPEND_CONVERSATION_ITEM, (*key, position, item["id"], now, orjson.dumps(item))
        )
        position += cur.rowcount  # an item already there (given back by id) is skipped


def _connect(path: Path) -> sqlite3.Connection:
    install_sqlite_vec()  # for vector stores; must precede connect (see sqlite_ext)
    # Autocommit mode: transactions are our explicit BEGIN/COMMIT, never implicit.
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=64
    )
    load_sqlite_vec(conn)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL in WAL mode: durable across app crashes, may lose the last commits on
    # power loss; no fsync per commit.
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def keyset_page(
    conn: sqlite3.Connection,
    position_sql: str,
    page_sql: str,
    key: tuple[str, str],
    after: str | None,
    limit: int,
    order: Literal["asc", "desc"],
) -> ItemPage:
    """A page of item bodies by position after the item `after` (an unknown cursor: an
    empty page). `position_sql` maps (*key, item_id) to a position; `page_sql` takes
    (*key, cursor, limit) and pages in `order`."""
    if after is None:
        cursor = -1 if order == "asc" else _CURSOR_MAX
    else:
        row = conn.execute(position_sql, (*key, after)).fetchone()
        if row is None:  # unknown cursor: nothing is "after" it
            return ItemPage([], False)
        cursor = row[0]
    # Fetch one extra row to learn has_more without a COUNT.
    rows = conn.execute(page_sql, (*key, cursor, limit + 1)).fetchall()
    return ItemPage(loads_many([r[0] for r in rows[:limit]]), len(rows) > limit)


def loads_many(bodies: Sequence[bytes]) -> list[Item]:
    # One orjson call over a spliced array beats one call per item.
    result: list[Item] = orjson.loads(b"[" + b",".join(bodies) + b"]")
    return result


class SQLiteResponseStore:
    """`ResponseStore` over one SQLite file (WAL)."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = Path(path)
        self._n_readers = max(1, readers)
        self._writer: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._cconn: sqlite3.Connection | None = None
        self._writes = 0  # only touched on the writer thread
        self._checkpoint: Future[None] | None = None
        self._rconns: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_conns: list[sqlite3.Connection] = []

    # -- lifecycle ---------------------------------------------------------------

    async def open(self) -> None:
        if self._writer is not None:
            return
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="responsed-sqlite-w")
        self._reader_pool = ThreadPoolExecutor(
            self._n_readers, thread_name_prefix="responsed-sqlite-r"
        )
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="responsed-sqlite-c")
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._open_sync)
        except BaseException:
            await self.aclose()  # no half-open store: threads stopped, files closed
            raise

    def _open_sync(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        wconn = _connect(self.path)
        self._all_conns.append(wconn)
        wconn.execute("PRAGMA journal_mode = WAL")  # persistent in the file
        apply_migrations(wconn)
        wconn.execute("PRAGMA wal_autocheckpoint = 0")  # see module docstring
        self._wconn = wconn
        self._cconn = _connect(self.path)
        self._all_conns.append(self._cconn)
        for _ in range(self._n_readers):
            rconn = _connect(self.path)
            self._all_conns.append(rconn)
            self._rconns.put(rconn)

    async def aclose(self) -> None:
        executors = (self._writer, self._reader_pool, self._checkpointer)
        if self._writer is None:
            return
        self._writer = self._reader_pool = self._checkpointer = None
        await asyncio.to_thread(self._close_sync, executors)

    def _close_sync(self, executors: Sequence[ThreadPoolExecutor | None]) -> None:
        for executor in executors:  # writer first: it may still submit a checkpoint
            if executor is not None:
                executor.shutdown(wait=True)  # let in-flight operations finish
        for conn in self._all_conns:  # the last close checkpoints and removes the WAL
            conn.close()
        self._all_conns.clear()
        self._rconns = queue.SimpleQueue()
        self._wconn = self._cconn = None
        self._checkpoint = None

    def set_trace_callback(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback(sql)` for every statement the store's operations issue.

        For tests and debugging; background checkpoints are not traced.
        """
        for conn in self._all_conns:
            if conn is not self._cconn:
                conn.set_trace_callback(callback)

    # -- thread hops -------------------------------------------------------------

    async def _on_writer(self, fn: Callable[[], T]) -> T:
        """Run a write on the event loop thread itself.

        A write transaction is ~40 µs (WAL, no fsync per commit, checkpoints on their
        own thread, one writer so never a lock wait), while a hop to a writer thread
        and back costs 200-300 µs of wake-up latency on these machines: inline is the
        cheaper way to keep writes serialized.
        """
        if self._writer is None:
            raise RuntimeError("SQLiteResponseStore is not open")
        return fn()

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader_pool is None:
            raise RuntimeError("SQLiteResponseStore is not open")

        def run() -> T:
            conn = self._rconns.get()
            try:
                return fn(conn)
            finally:
                self._rconns.put(conn)

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._wconn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # some errors already rolled back
                conn.execute("ROLLBACK")
            raise
        self._after_write()
        return result

    def _after_write(self) -> None:
        self._writes += 1
        checkpointer = self._checkpointer  # aclose() may clear the attribute meanwhile
        if self._writes < _CHECKPOINT_EVERY or checkpointer is None:
            return
        if self._checkpoint is not None and not self._checkpoint.done():
            return  # one in flight is enough; retry on a later write
        self._writes = 0
        self._checkpoint = checkpointer.submit(self._checkpoint_sync)

    def _checkpoint_sync(self) -> None:
        # PASSIVE never blocks the writer or readers; frames in use are left for later.
        assert self._cconn is not None
        self._cconn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    # -- for the other repositories on this database ---------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on a reader connection (a consistent WAL snapshot)."""
        return await self._read(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` in one write transaction (committed when this returns)."""
        return await self._on_writer(lambda: self._transaction(fn))

    # -- writes ------------------------------------------------------------------

    async def put_response(self, record: ResponseRecord) -> None:
        await self.write(lambda conn: put_response_tx(conn, record))

    async def delete_response(self, project_id: str, response_id: str) -> bool:
        def work() -> bool:
            assert self._wconn is not None
            # A single statement is its own transaction; the FK cascade runs inside it.
            cur = self._wconn.execute(_DELETE_RESPONSE, (project_id, response_id))
            self._after_write()
            return cur.rowcount > 0

        return await self._on_writer(work)

    # -- reads -------------------------------------------------------------------

    async def get_response(self, project_id: str, response_id: str) -> dict[str, Any] | None:
        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(_GET_RESPONSE, (project_id, response_id)).fetchone()
            if row is None:
                return None
            body: dict[str, Any] = orjson.loads(row[0])
            return body

        return await self._read(work)

    async def get_sent(self, project_id: str, response_id: str) -> dict[str, Any] | None:
        def work(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(_GET_SENT, (project_id, response_id)).fetchone()
            if row is None or row[0] is None:
                return None
            sent: dict[str, Any] = orjson.loads(row[0])
            return sent

        return await self._read(work)

    async def list_input_items(
        self,
        project_id: str,
        response_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage | None:
        if order not in _PAGE:
            raise ValueError(f"order must be 'asc' or 'desc', not {order!r}")
        limit = max(0, limit)

        def work(conn: sqlite3.Connection) -> ItemPage | None:
            key = (project_id, response_id)
            if conn.execute(_EXISTS, key).fetchone() is None:
                return None
            return keyset_page(conn, _INPUT_POSITION, _PAGE[order], key, after, limit, order)

        return await self._read(work)

    async def chain_items(self, project_id: str, response_id: str) -> list[Item] | None:
        params = {"project": project_id, "id": response_id, "max_depth": MAX_CHAIN_DEPTH}

        def work(conn: sqlite3.Connection) -> list[Item] | None:
            rows = conn.execute(_CHAIN, params).fetchall()
            if not rows:
                return None
            return loads_many([r[0] for r in rows if r[0] is not None])

        return await self._read(work)
