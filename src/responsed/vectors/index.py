"""The hybrid chunk index of vector stores, in the project's SQLite database.

Three tables share one rowid: `vector_chunks` (the rows: text, file, attributes),
`vector_chunks_fts` (FTS5, BM25 keyword search) and `vector_embeddings_<dims>`
(sqlite-vec vec0, cosine kNN; one table per embedding width).

vec0's kNN cannot filter on joined columns, so the vec0 tables are partitioned by
(project, store): a kNN query reads one store's vectors only, and other stores or
projects never crowd its results out. Attribute filters cannot be pushed into vec0
(attributes are free-form JSON), so a filtered query selects the matching rows first and
ranks them by exact cosine distance (`vec_distance_cosine`): exact, and at 100k chunks
cheaper than over-fetching neighbours until enough pass the filter.
"""

from __future__ import annotations

import json
import re
import sqlite3
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from responsed.store.sqlite import SQLiteResponseStore
from responsed.vectors.chunking import Chunk
from responsed.vectors.filters import compile_filter

__all__ = ["Mode", "SearchResult", "VectorIndex"]

Mode = Literal["hybrid", "vector_only", "keyword_only"]
Ranker = Literal["auto", "default-2024-11-15", "none"]

_RRF_K = 60  # the usual reciprocal-rank-fusion constant
_VEC_MAX_K = 4096  # sqlite-vec's cap on k
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to help BM25 but that widen the OR query to nearly every chunk.
# fmt: off
_STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how",
    "i", "in", "is", "it", "of", "on", "or", "that", "the", "this", "to", "was", "what",
    "when", "where", "which", "who", "why", "with", "you", "your",
))
# fmt: on


@dataclass(frozen=True, slots=True)
class SearchResult:
    file_id: str
    filename: str
    score: float  # in [0, 1], higher is better
    attributes: dict[str, Any]
    content: list[dict[str, str]]  # [{"type": "text", "text": ...}]
    vector_store_id: str
    chunk_index: int
    start: int  # the chunk's character offsets in the file's text
    end: int


class VectorIndex:
    """One project's chunks of all its vector stores.

    Scores: `hybrid` fuses the vector and keyword rankings by weighted reciprocal-rank
    fusion, divided by its maximum (first in every list = 1.0); `vector_only` is the
    cosine similarity clamped to [0, 1]; `keyword_only` maps BM25 b to b / (1 + b).
    """

    def __init__(self, db: SQLiteResponseStore, project_id: str) -> None:
        self._db = db
        self._project = project_id

    # -- writes ------------------------------------------------------------------

    async def add_chunks(
        self,
        store_id: str,
        file_id: str,
        chunks: Sequence[Chunk],
        vectors: Sequence[Sequence[float]],
        attributes: Mapping[str, Any] | None,
        filename: str,
    ) -> None:
        """Index a file's chunks, replacing whatever the file had in this store."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        dims = {len(v) for v in vectors}
        if len(dims) > 1:
            raise ValueError("vectors of different widths")
        attrs = json.dumps(dict(attributes or {}))
        part = self._partition(store_id)

        def work(conn: sqlite3.Connection) -> None:
            self._delete(conn, "vector_store_id = ? AND file_id = ?", (store_id, file_id))
            if not chunks:
                return
            table = _vec_table(conn, len(vectors[0]))
            for chunk, vector in zip(chunks, vectors, strict=True):
                cur = conn.execute(
                    "INSERT INTO vector_chunks (project_id, vector_store_id, file_id, "
                    "chunk_index, filename, attributes, text, start_char, end_char, "
                    "dimensions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self._project, store_id, file_id, chunk.index, filename, attrs,
                     chunk.text, chunk.start, chunk.end, len(vector)),
                )  # fmt: skip
                rowid = cur.lastrowid
                conn.execute(
                    "INSERT INTO vector_chunks_fts (rowid, text) VALUES (?, ?)",
                    (rowid, chunk.text),
                )
                conn.execute(
                    f"INSERT INTO {table} (rowid, partition, embedding) VALUES (?, ?, ?)",
                    (rowid, part, _blob(vector)),
                )

        await self._db.write(work)

    async def update_attributes(
        self, store_id: str, file_id: str, attributes: Mapping[str, Any] | None
    ) -> None:
        attrs = json.dumps(dict(attributes or {}))
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE vector_chunks SET attributes = ? WHERE project_id = ? "
                "AND vector_store_id = ? AND file_id = ?",
                (attrs, self._project, store_id, file_id),
            )
        )

    async def delete_file(self, store_id: str, file_id: str) -> int:
        """Remove a file's chunks from this store; returns how many there were."""
        return await self._db.write(
            lambda conn: self._delete(
                conn, "vector_store_id = ? AND file_id = ?", (store_id, file_id)
            )
        )

    async def delete_store(self, store_id: str) -> int:
        return await self._db.write(
            lambda conn: self._delete(conn, "vector_store_id = ?", (store_id,))
        )

    async def file_chunks(self, store_id: str, file_id: str) -> list[str]:
        """The texts of a file's chunks in this store, in order."""
        rows = await self._db.read(
            lambda conn: conn.execute(
                "SELECT text FROM vector_chunks WHERE project_id = ? AND vector_store_id = ? "
                "AND file_id = ? ORDER BY chunk_index",
                (self._project, store_id, file_id),
            ).fetchall()
        )
        return [r[0] for r in rows]

    def _delete(self, conn: sqlite3.Connection, where: str, args: tuple[str, ...]) -> int:
        cond = f"project_id = ? AND {where}"
        rows = conn.execute(
            f"SELECT id, text, dimensions FROM vector_chunks WHERE {cond}",
            (self._project, *args),
        ).fetchall()
        if not rows:
            return 0
        # External-content FTS5 forgets a row only when told its old text.
        conn.executemany(
            "INSERT INTO vector_chunks_fts (vector_chunks_fts, rowid, text) "
            "VALUES ('delete', ?, ?)",
            [(r[0], r[1]) for r in rows],
        )
        for dims in {r[2] for r in rows}:
            table = _vec_table(conn, dims)
            conn.executemany(
                f"DELETE FROM {table} WHERE rowid = ?", [(r[0],) for r in rows if r[2] == dims]
            )
        conn.execute(f"DELETE FROM vector_chunks WHERE {cond}", (self._project, *args))
        return len(rows)

    # -- search ------------------------------------------------------------------

    async def search(
        self,
        store_ids: Sequence[str],
        query_vectors: Sequence[Sequence[float]],
        query_text: str,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        score_threshold: float = 0.0,
        ranker: Ranker = "auto",
        *,
        mode: Mode = "hybrid",
        embedding_weight: float = 1.0,
        text_weight: float = 1.0,
    ) -> list[SearchResult]:
        """The best `k` chunks of the stores for the query, best first.

        `query_vectors`: the query's embeddings (several for a multi-string query);
        `query_text`: its words for BM25. `ranker` is accepted for the wire's sake:
        every value ranks by the fusion (there is no re-ranking model). Raises
        FilterError (a ValueError) on a malformed filter.
        """
        del ranker
        filter_sql, filter_args = compile_filter(filters, "c.attributes")
        pool = max(4 * k, 50)  # candidates per ranking, fused then cut to k

        def work(conn: sqlite3.Connection) -> list[SearchResult]:
            vec_lists: list[list[tuple[int, float]]] = []
            if mode != "keyword_only":
                for vector in query_vectors:
                    vec_lists.append(
                        self._knn(conn, store_ids, vector, pool, filter_sql, filter_args)
                    )
            kw: list[tuple[int, float]] = []
            if mode != "vector_only":
                kw = self._keyword(conn, store_ids, query_text, pool, filter_sql, filter_args)
            scores = _fuse(mode, vec_lists, kw, embedding_weight, text_weight)
            best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
            best = [(rowid, s) for rowid, s in best if s >= score_threshold][:k]
            return self._results(conn, best)

        return await self._db.read(work)

    def _knn(
        self,
        conn: sqlite3.Connection,
        store_ids: Sequence[str],
        vector: Sequence[float],
        want: int,
        filter_sql: str,
        filter_args: list[Any],
    ) -> list[tuple[int, float]]:
        """(rowid, cosine distance) of the nearest chunks over all stores, nearest first."""
        table = _vec_table_if_exists(conn, len(vector))
        if table is None:
            return []
        blob = _blob(vector)
        found: list[tuple[int, float]] = []
        for store_id in store_ids:
            if filter_sql == "1":
                rows = conn.execute(
                    f"SELECT rowid, distance FROM {table} "
                    "WHERE embedding MATCH ? AND k = ? AND partition = ?",
                    (blob, min(want, _VEC_MAX_K), self._partition(store_id)),
                ).fetchall()
            else:
                # Filtered: the matching rows first, then their exact distances. vec0's
                # kNN cannot filter, and over-fetching missed selective filters' matches
                # (recall@10 0.35 at 0.1% of 100k chunks) while scanning 4x (measured).
                rows = conn.execute(
                    f"SELECT c.id, vec_distance_cosine(e.embedding, ?) AS d "
                    f"FROM vector_chunks c JOIN {table} e ON e.rowid = c.id "
                    f"WHERE c.project_id = ? AND c.vector_store_id = ? AND {filter_sql} "
                    "ORDER BY d LIMIT ?",
                    (blob, self._project, store_id, *filter_args, want),
                ).fetchall()
            found.extend((int(r[0]), float(r[1])) for r in rows)
        found.sort(key=lambda r: r[1])
        return found[:want]

    def _keyword(
        self,
        conn: sqlite3.Connection,
        store_ids: Sequence[str],
        text: str,
        want: int,
        filter_sql: str,
        filter_args: list[Any],
    ) -> list[tuple[int, float]]:
        """(rowid, BM25 score, higher better) of the best keyword matches."""
        query = fts_query(text)
        if not query or not store_ids:
            return []
        marks = ", ".join("?" * len(store_ids))
        rows = conn.execute(
            "SELECT c.id, bm25(vector_chunks_fts) AS s FROM vector_chunks_fts "
            "JOIN vector_chunks c ON c.id = vector_chunks_fts.rowid "
            f"WHERE vector_chunks_fts MATCH ? AND c.project_id = ? "
            f"AND c.vector_store_id IN ({marks}) AND {filter_sql} ORDER BY s LIMIT ?",
            (query, self._project, *store_ids, *filter_args, want),
        ).fetchall()
        return [(int(r[0]), -float(r[1])) for r in rows]  # FTS5's bm25 is negated

    def _results(
        self, conn: sqlite3.Connection, best: list[tuple[int, float]]
    ) -> list[SearchResult]:
        if not best:
            return []
        marks = ", ".join("?" * len(best))
        rows = {
            r[0]: r
            for r in conn.execute(
                "SELECT id, vector_store_id, file_id, chunk_index, filename, attributes, "
                f"text, start_char, end_char FROM vector_chunks WHERE id IN ({marks})",
                [rowid for rowid, _ in best],
            )
        }
        return [
            SearchResult(
                file_id=r[2],
                filename=r[4],
                score=round(min(max(score, 0.0), 1.0), 6),
                attributes=json.loads(r[5]),
                content=[{"type": "text", "text": r[6]}],
                vector_store_id=r[1],
                chunk_index=r[3],
                start=r[7],
                end=r[8],
            )
            for rowid, score in best
            if (r := rows.get(rowid)) is not None
        ]

    def _partition(self, store_id: str) -> str:
        return f"{self._project}\x1f{store_id}"


def fts_query(text: str) -> str:
    """An FTS5 query matching any of the text's words (quoted, so never syntax)."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    terms = [w for w in words if w not in _STOPWORDS] or list(words)
    return " OR ".join(f'"{w}"' for w in terms)


def _fuse(
    mode: Mode,
    vec_lists: list[list[tuple[int, float]]],
    keyword: list[tuple[int, float]],
    embedding_weight: float,
    text_weight: float,
) -> dict[int, float]:
    scores: dict[int, float] = {}
    if mode == "vector_only":
        for ranked in vec_lists:
            for rowid, distance in ranked:
                scores[rowid] = max(scores.get(rowid, 0.0), 1.0 - distance)
        return scores
    if mode == "keyword_only":
        return {rowid: s / (1.0 + s) for rowid, s in keyword}
    lists = [(ranked, embedding_weight / max(len(vec_lists), 1)) for ranked in vec_lists]
    lists.append((keyword, text_weight))
    total = embedding_weight + text_weight
    if total <= 0:
        return scores
    for ranked, weight in lists:
        for rank, (rowid, _) in enumerate(ranked, 1):
            scores[rowid] = scores.get(rowid, 0.0) + weight / (_RRF_K + rank)
    top = total / (_RRF_K + 1)  # first in every list
    return {rowid: s / top for rowid, s in scores.items()}


def _blob(vector: Sequence[float]) -> bytes:
    return array("f", vector).tobytes()


def _vec_table_if_exists(conn: sqlite3.Connection, dims: int) -> str | None:
    name = f"vector_embeddings_{int(dims)}"
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    return name if row else None


def _vec_table(conn: sqlite3.Connection, dims: int) -> str:
    """The vec0 table for `dims`-wide vectors, created on first use (in a write)."""
    name = _vec_table_if_exists(conn, dims)
    if name is None:
        name = f"vector_embeddings_{int(dims)}"
        conn.execute(
            f"CREATE VIRTUAL TABLE {name} USING vec0(partition TEXT PARTITION KEY, "
            f"embedding FLOAT[{int(dims)}] distance_metric=cosine)"
        )
    return name
