"""The retrieval index measured in one run: ingestion, search latency, recall.

In process, no server, no network: `responsed.vectors.index.VectorIndex` on a real
`SQLiteResponseStore` (temp dir, WAL, the store's reader pool), as `file_search` and
the vector-store ingestion use it.

1. Ingestion: `add_chunks` with precomputed vectors (chunks/s into the index, and the
   time of each call: writes run inline on the event loop thread, so that is how long
   the loop is blocked), `LocalEmbedder` (all-MiniLM-L6-v2 on CPU) on ~200-token
   chunks of real text (the repo's *.md and the installed packages' METADATA texts,
   `chunk_text` with a static 200-token strategy), and end to end (`chunk_text` +
   `embed` + `add_chunks`, file by file, into another vector store of the same db).
2. Search latency at c1, k=10: hybrid, vector_only and keyword_only, without and with
   a selective attribute filter (eq on a per-file attribute, ~1% of the chunks; also a
   ~0.1% one for vector_only), at 10k and 100k chunks in one vector store (the 100k
   store is the 10k one grown). Configurations are interleaved query by query.
3. recall@10 of `vector_only` (sqlite-vec kNN; with a filter, exact cosine over the matches)
   against exact cosine search with numpy over the same float32 vectors (and the same
   filter).

The 10k/100k chunks are synthetic (embedding 100k real chunks with MiniLM would take
hours on a small CPU): unit vectors around a few hundred topic centroids (plus a file
direction, a shared mean direction and noise), with text drawn from MiniLM's WordPiece
vocabulary (function words, Zipf-distributed topic and background words) so FTS5 has
real postings. Queries are drawn the same way (topic centroid + noise; a few topic
words). A last section times the pieces (vec0 kNN, FTS5, count, filter) in direct SQL.

    .venv/bin/python bench/vector_search.py [--quick] [--json PATH] [--no-results]

`--quick`: 10k only, fewer queries and embeddings. A full run replaces the section
"## Vector search (bench/vector_search.py)" of bench/RESULTS.md with its report (not
with --quick or --no-results).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import signal
import sqlite3
import statistics
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead
from overhead import pct
from results import RESULTS, write_section

try:
    from responsed.store.base import DEFAULT_PROJECT
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from responsed.store.base import DEFAULT_PROJECT
from responsed.store.sqlite import SQLiteResponseStore
from responsed.vectors.chunking import Chunk, ChunkingStrategy, chunk_text, model_path
from responsed.vectors.embeddings import LocalEmbedder
from responsed.vectors.index import Mode, VectorIndex, fts_query

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Vector search (bench/vector_search.py)"
SEED = 20261122
DIMS = 384  # all-MiniLM-L6-v2
K = 10
STORE = "vs_bench"  # the synthetic chunks
REAL_STORE = "vs_real"  # the end-to-end ingestion of real text
BIG_STORE = "vs_big"  # one large file in one add_chunks call
VEC_TABLE = f"vector_embeddings_{DIMS}"
VEC_CHUNK = 1024  # vectors per vec0 chunk blob (its default chunk_size)
STRATEGY = ChunkingStrategy(max_chunk_size_tokens=200, chunk_overlap_tokens=0)
EMBED_PER_DOC = 8
PROSE_WORDS = 90  # per 200 tokens (English prose: ~150; technical docs: fewer)
E2E_MAX_CHARS = 40_000  # end-to-end files: typical documents, not the largest READMEs

# Synthetic corpus shape.
TOPICS = 300
TOPIC_WORDS = 150
CHUNKS_PER_FILE = 20
WORDS_PER_CHUNK = (150, 190)  # uniform; WordPiece-vocabulary words are one token each
# Shares of a chunk's words: function words, primary topic, secondary topic, background.
WORD_MIX = (0.35, 0.25, 0.10, 0.30)
# A vector: primary centroid + W_SECONDARY secondary centroid + W_MEAN shared direction
# + W_FILE the file's own direction + W_NOISE noise, then normalized.
W_SECONDARY, W_MEAN, W_FILE, W_NOISE = 0.45, 0.75, 0.5, 0.9
FUNCTION_WORDS = (
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "with", "was",
    "on", "be", "by", "this", "are", "or", "from", "at", "an", "which", "not", "can",
    "but", "have", "has", "will", "if", "their", "its", "more", "one", "also", "when",
)  # fmt: skip

FILTER_1 = {"type": "eq", "key": "team", "value": "team-07"}  # every 100th file
FILTER_01 = {  # every 1000th file
    "type": "and",
    "filters": [FILTER_1, {"type": "eq", "key": "year", "value": 2015}],
}
FILTERS: dict[str, dict[str, Any] | None] = {"none": None, "~1%": FILTER_1, "~0.1%": FILTER_01}
# (mode, filter name): the latency rows; vector_only rows also give recall.
CONFIGS: tuple[tuple[Mode, str], ...] = (
    ("hybrid", "none"),
    ("hybrid", "~1%"),
    ("vector_only", "none"),
    ("vector_only", "~1%"),
    ("vector_only", "~0.1%"),
    ("keyword_only", "none"),
    ("keyword_only", "~1%"),
)


@dataclass(frozen=True)
class Config:
    scales: tuple[int, ...]
    # Per scale, for each search configuration: at most `queries`, and after
    # `min_queries` no more once its searches took `config_budget_s` in all.
    queries: dict[int, int]
    min_queries: dict[int, int]
    config_budget_s: dict[int, float]
    embed_chunks: int
    embed_call: int  # texts per embed() call
    e2e_chunks: int
    component_queries: int
    big_file_chunks: int


FULL = Config(
    scales=(10_000, 100_000),
    queries={10_000: 300, 100_000: 150},
    min_queries={10_000: 30, 100_000: 12},
    config_budget_s={10_000: 6.0, 100_000: 14.0},
    embed_chunks=256,
    embed_call=64,
    e2e_chunks=128,
    component_queries=10,
    big_file_chunks=2000,
)
QUICK = Config(
    scales=(10_000,),
    queries={10_000: 100},
    min_queries={10_000: 15},
    config_budget_s={10_000: 2.0},
    embed_chunks=64,
    embed_call=32,
    e2e_chunks=32,
    component_queries=10,
    big_file_chunks=500,
)


# --------------------------------------------------------------------------------------
# Synthetic corpus
# --------------------------------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
    return out


def zipf(n: int, s: float, offset: float) -> np.ndarray:
    w = 1.0 / (np.arange(n) + offset) ** s
    out: np.ndarray = w / w.sum()
    return out


@dataclass
class Corpus:
    """The synthetic chunks generated so far (chunk i is chunk i % CPF of file i // CPF)."""

    texts: list[str] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)  # one (CPF, DIMS) per file
    file_topics: list[int] = field(default_factory=list)
    attributes: list[dict[str, Any]] = field(default_factory=list)  # per file

    @property
    def files(self) -> int:
        return len(self.file_topics)

    def matrix(self, n: int) -> np.ndarray:
        return np.concatenate(self.vectors)[:n]

    def mask(self, filter_name: str, n: int) -> np.ndarray:
        """Which of the first n chunks the named filter keeps."""
        keep = np.array([file_matches(a, filter_name) for a in self.attributes])
        return np.repeat(keep, CHUNKS_PER_FILE)[:n]


def file_attributes(i: int) -> dict[str, Any]:
    return {"team": f"team-{i % 100:02d}", "year": 2015 + (i // 100) % 10, "lang": "en"}


def file_matches(attrs: dict[str, Any], filter_name: str) -> bool:
    if filter_name == "none":
        return True
    team = attrs["team"] == FILTER_1["value"]
    return team if filter_name == "~1%" else team and attrs["year"] == 2015


class Synth:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        vocab = (model_path() / "vocab.txt").read_text().split()
        stop = set(FUNCTION_WORDS)
        words = sorted({w for w in vocab if w.isascii() and w.isalpha() and len(w) >= 3} - stop)
        self.rng.shuffle(words)
        self.words = np.array(words, dtype=object)
        self.fn_words = np.array(FUNCTION_WORDS, dtype=object)
        self.p_fn = zipf(len(FUNCTION_WORDS), 1.0, 2.0)
        self.p_bg = zipf(len(words), 1.05, 10.0)
        # Topic words: outside the 300 most frequent background words.
        self.topic_words = np.stack(
            [self.rng.choice(np.arange(300, len(words)), TOPIC_WORDS, replace=False)
             for _ in range(TOPICS)]
        )  # fmt: skip
        self.p_topic = zipf(TOPIC_WORDS, 0.9, 1.0)
        self.centroids = unit_rows(self.rng.standard_normal((TOPICS, DIMS)))
        self.mean_dir = unit_rows(self.rng.standard_normal(DIMS))

    def _noise(self, *shape: int) -> np.ndarray:
        out: np.ndarray = self.rng.standard_normal(shape) / np.sqrt(DIMS)
        return out

    def add_files(self, corpus: Corpus, n_files: int) -> None:
        rng = self.rng
        for _ in range(n_files):
            i = corpus.files
            topic = int(rng.integers(TOPICS))
            second = rng.integers(TOPICS, size=CHUNKS_PER_FILE)
            lengths = rng.integers(WORDS_PER_CHUNK[0], WORDS_PER_CHUNK[1] + 1, CHUNKS_PER_FILE)
            total = int(lengths.sum())
            kind = rng.choice(4, total, p=WORD_MIX)
            words = np.empty(total, dtype=object)
            m = kind == 0
            words[m] = rng.choice(self.fn_words, int(m.sum()), p=self.p_fn)
            m = kind == 1
            words[m] = self.words[
                self.topic_words[topic, rng.choice(TOPIC_WORDS, int(m.sum()), p=self.p_topic)]
            ]
            m = kind == 2
            sec = np.repeat(second, lengths)[m]
            words[m] = self.words[
                self.topic_words[sec, rng.choice(TOPIC_WORDS, len(sec), p=self.p_topic)]
            ]
            m = kind == 3
            words[m] = self.words[rng.choice(len(self.words), int(m.sum()), p=self.p_bg)]
            flat = words.tolist()
            ends = np.cumsum(lengths).tolist()
            starts = [0, *ends[:-1]]
            corpus.texts.extend(" ".join(flat[a:b]) for a, b in zip(starts, ends, strict=True))
            v = (
                self.centroids[topic]
                + W_SECONDARY * self.centroids[second]
                + W_MEAN * self.mean_dir
                + W_FILE * self._noise(DIMS)
                + W_NOISE * self._noise(CHUNKS_PER_FILE, DIMS)
            )
            corpus.vectors.append(unit_rows(v))
            corpus.file_topics.append(topic)
            corpus.attributes.append(file_attributes(i))

    def query(self, corpus: Corpus) -> tuple[np.ndarray, str]:
        """A query about the topic of a random file: its vector and its words."""
        rng = self.rng
        topic = corpus.file_topics[int(rng.integers(corpus.files))]
        v = (
            self.centroids[topic]
            + W_SECONDARY * self.centroids[int(rng.integers(TOPICS))]
            + W_MEAN * self.mean_dir
            + W_NOISE * self._noise(DIMS)
        )
        topic_words = self.words[
            self.topic_words[topic, rng.choice(TOPIC_WORDS, 4, p=self.p_topic)]
        ].tolist()
        words = [
            *topic_words,
            str(rng.choice(self.fn_words, p=self.p_fn)),
            str(self.words[rng.choice(len(self.words), p=self.p_bg)]),
        ]
        rng.shuffle(words)
        return unit_rows(v), " ".join(words)


def file_chunks(corpus: Corpus, i: int) -> list[Chunk]:
    """File i's chunks (offsets as if its chunks were joined by one space)."""
    out, pos = [], 0
    for c in range(CHUNKS_PER_FILE):
        text = corpus.texts[i * CHUNKS_PER_FILE + c]
        out.append(Chunk(c, text, pos, pos + len(text), text.count(" ") + 1))
        pos += len(text) + 1
    return out


def file_id(i: int) -> str:
    return f"file-{i:06d}"


def row_of(file: str, chunk_index: int) -> int:
    return int(file.removeprefix("file-")) * CHUNKS_PER_FILE + chunk_index


# --------------------------------------------------------------------------------------
# 1. Ingestion
# --------------------------------------------------------------------------------------


async def ingest_synthetic(
    index: VectorIndex, corpus: Corpus, first_file: int, last_file: int
) -> dict[str, Any]:
    calls: list[float] = []
    written = io_written()
    start = time.perf_counter()
    for i in range(first_file, last_file):
        chunks = file_chunks(corpus, i)
        vectors = corpus.vectors[i].tolist()  # what an embedder hands over
        t0 = time.perf_counter()
        await index.add_chunks(
            STORE, file_id(i), chunks, vectors, corpus.attributes[i], f"doc-{i}.txt"
        )
        calls.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    written = io_written() - written
    chunks = (last_file - first_file) * CHUNKS_PER_FILE
    # The slowest 2% of calls: how many of them started a new vec0 chunk (vec0 stores a
    # partition's vectors in blobs of 1024, allocated zero-filled when one is full)?
    slow = sorted(range(len(calls)), key=calls.__getitem__)[-max(1, len(calls) // 50) :]

    def crosses(j: int) -> bool:
        before = (first_file + j) * CHUNKS_PER_FILE  # vectors in the store before call j
        return (before + CHUNKS_PER_FILE - 1) // VEC_CHUNK != (before - 1) // VEC_CHUNK

    crossing = sum(crosses(j) for j in slow)
    return {
        "written_per_chunk": written / chunks,
        "slow_calls": len(slow),
        "slow_crossing": crossing,
        "slow_ms_min": calls[slow[0]] * 1e3,
        "crossing_share": sum(crosses(j) for j in range(len(calls))) / len(calls),
        "files": last_file - first_file,
        "chunks": chunks,
        "add_s": sum(calls),
        "wall_s": wall,
        "chunks_per_s": chunks / sum(calls),
        "call_ms_p50": pct(calls, 0.5) * 1e3,
        "call_ms_p99": pct(calls, 0.99) * 1e3,
        "call_ms_max": max(calls) * 1e3,
    }


async def ingest_big_file(index: VectorIndex, synth: Synth, n: int) -> dict[str, Any]:
    """One file of n chunks in one add_chunks call (one transaction)."""
    corpus = Corpus()
    synth.add_files(corpus, -(-n // CHUNKS_PER_FILE))
    chunks, pos = [], 0
    for c, text in enumerate(corpus.texts[:n]):
        chunks.append(Chunk(c, text, pos, pos + len(text), text.count(" ") + 1))
        pos += len(text) + 1
    vectors = corpus.matrix(n).tolist()
    t0 = time.perf_counter()
    await index.add_chunks(BIG_STORE, "file-big", chunks, vectors, {"team": "x"}, "big.txt")
    add = time.perf_counter() - t0
    t0 = time.perf_counter()
    await index.add_chunks(BIG_STORE, "file-big", chunks, vectors, {"team": "x"}, "big.txt")
    replace = time.perf_counter() - t0
    return {"chunks": n, "add_s": add, "replace_s": replace}


async def insert_breakdown(corpus: Corpus, files: int, tmp: Path) -> dict[str, Any]:
    """The three tables add_chunks writes, each alone in its own fresh database: raw
    INSERTs of the same chunks, one transaction per file (as add_chunks does)."""
    sql = {
        "vector_chunks": "INSERT INTO vector_chunks (id, project_id, vector_store_id, file_id,"
        " chunk_index, filename, attributes, text, start_char, end_char, dimensions)"
        " VALUES (?, 'p', 's', ?, ?, 'f', '{}', ?, 0, 1, 384)",
        "FTS5": "INSERT INTO vector_chunks_fts (rowid, text) VALUES (?, ?)",
        "vec0": f"INSERT INTO {VEC_TABLE} (rowid, partition, embedding) VALUES (?, 'p', ?)",
    }
    out: dict[str, Any] = {}
    for table, statement in sql.items():
        store = SQLiteResponseStore(tmp / f"{table}.sqlite3")
        await store.open()
        calls: list[float] = []
        try:
            for i in range(files):

                def work(
                    conn: sqlite3.Connection,
                    i: int = i,
                    table: str = table,
                    statement: str = statement,
                ) -> None:
                    for c in range(CHUNKS_PER_FILE):
                        row = i * CHUNKS_PER_FILE + c
                        if table == "vector_chunks":
                            args: tuple[Any, ...] = (row + 1, str(i), c, corpus.texts[row])
                        elif table == "FTS5":
                            args = (row + 1, corpus.texts[row])
                        else:
                            args = (row + 1, corpus.vectors[i][c].tobytes())
                        conn.execute(statement, args)

                t0 = time.perf_counter()
                await store.write(work)
                calls.append(time.perf_counter() - t0)
        finally:
            await store.aclose()
        out[table] = {
            "s": sum(calls),
            "p50_ms": pct(calls, 0.5) * 1e3,
            "p99_ms": pct(calls, 0.99) * 1e3,
            "max_ms": max(calls) * 1e3,
        }
    return out


def io_written() -> int:
    """Bytes this process passed to write() so far (the WAL and checkpoints)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def source_documents() -> list[tuple[str, str]]:
    """Real prose available offline: this repo's *.md, then installed packages' METADATA
    long descriptions (sorted, so every run reads the same texts)."""
    docs = [(p.name, p.read_text()) for p in sorted(ROOT.glob("*.md"))]
    site = Path(sysconfig.get_paths()["purelib"])
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        text = meta.read_text(errors="replace")
        body = text.split("\n\n", 1)[1] if "\n\n" in text else ""
        if len(body) > 2000:
            docs.append((meta.parent.name.split("-")[0] + ".md", body))
    return docs


async def embedding_bench(
    cfg: Config, index: VectorIndex, embedder: LocalEmbedder
) -> dict[str, Any]:
    docs = source_documents()
    t0 = time.perf_counter()
    chunk_text("warm the tokenizer", STRATEGY)
    tokenizer_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await embedder.load()
    load_s = time.perf_counter() - t0
    await embedder.embed(["a warm-up text about nothing in particular"] * 8)

    # End to end: whole files (of typical size), in order, until e2e_chunks.
    e2e = {"files": 0, "chunks": 0, "tokens": 0, "chunk_s": 0.0, "embed_s": 0.0, "add_s": 0.0}
    rest: list[str] = []
    for name, text in docs:
        if e2e["chunks"] >= cfg.e2e_chunks or len(text) > E2E_MAX_CHARS:
            rest.append(text)
            continue
        t0 = time.perf_counter()
        chunks = chunk_text(text, STRATEGY)
        t1 = time.perf_counter()
        vectors = await embedder.embed([c.text for c in chunks])
        t2 = time.perf_counter()
        e2e["files"] += 1
        await index.add_chunks(REAL_STORE, f"real-{e2e['files']}", chunks, vectors, None, name)
        t3 = time.perf_counter()
        e2e["chunks"] += len(chunks)
        e2e["tokens"] += sum(c.tokens for c in chunks)
        e2e["chunk_s"] += t1 - t0
        e2e["embed_s"] += t2 - t1
        e2e["add_s"] += t3 - t2
    e2e["total_s"] = e2e["chunk_s"] + e2e["embed_s"] + e2e["add_s"]

    # Embedding alone: full-size chunks of the other documents.
    texts: list[str] = []
    tokens: list[int] = []
    for text in rest:
        if len(texts) >= cfg.embed_chunks:
            break
        # Full-size chunks of text, not of badge URLs or tables.
        full = [
            c
            for c in chunk_text(text, STRATEGY)
            if c.tokens >= 150 and len(c.text.split()) >= PROSE_WORDS
        ]
        for c in full[:EMBED_PER_DOC]:  # many documents rather than a few long ones
            if len(texts) < cfg.embed_chunks:
                texts.append(c.text)
                tokens.append(c.tokens)
    rates, vectors_all = [], []
    start = time.perf_counter()
    for i in range(0, len(texts), cfg.embed_call):
        batch = texts[i : i + cfg.embed_call]
        t0 = time.perf_counter()
        vectors_all.extend(await embedder.embed(batch))
        rates.append(len(batch) / (time.perf_counter() - t0))
    embed_s = time.perf_counter() - start
    query_times = []
    for i in range(20):
        t0 = time.perf_counter()
        await embedder.embed([f"how do I configure the retry policy number {i}"])
        query_times.append(time.perf_counter() - t0)
    real = np.asarray(vectors_all, dtype=np.float32)
    return {
        "tokenizer_load_s": tokenizer_s,
        "model_load_s": load_s,
        "texts": len(texts),
        "tokens_mean": statistics.mean(tokens),
        "chars_mean": statistics.mean(len(t) for t in texts),
        "words_mean": statistics.mean(len(t.split()) for t in texts),
        "embed_s": embed_s,
        "chunks_per_s": len(texts) / embed_s,
        "call_rate_min": min(rates),
        "call_rate_max": max(rates),
        "query_ms_p50": pct(query_times, 0.5) * 1e3,
        "e2e": e2e,
        "real_pair_cos": pair_cosine(real),
    }


def pair_cosine(m: np.ndarray) -> dict[str, float]:
    """Mean cosine of distinct pairs and mean nearest-neighbour cosine (realism check)."""
    sims = m @ m.T
    np.fill_diagonal(sims, np.nan)
    return {
        "mean": float(np.nanmean(sims)),
        "nn_mean": float(np.nanmean(np.nanmax(sims, axis=1))),
        "n": int(m.shape[0]),
    }


# --------------------------------------------------------------------------------------
# 2 and 3. Search latency and recall
# --------------------------------------------------------------------------------------


async def search_bench(
    cfg: Config, store: SQLiteResponseStore, index: VectorIndex, synth: Synth, corpus: Corpus,
    n: int,
) -> dict[str, Any]:  # fmt: skip
    matrix = corpus.matrix(n)
    masks = {name: corpus.mask(name, n) for name in FILTERS}
    times: dict[tuple[str, str], list[float]] = {c: [] for c in CONFIGS}
    recall: dict[str, list[float]] = {name: [] for name in FILTERS}
    short: dict[str, int] = dict.fromkeys(FILTERS, 0)
    spent: dict[tuple[str, str], float] = dict.fromkeys(CONFIGS, 0.0)
    scans: dict[tuple[str, str], int] = dict.fromkeys(CONFIGS, 0)
    most, least, budget = cfg.queries[n], cfg.min_queries[n], cfg.config_budget_s[n]

    def wanted(c: tuple[str, str]) -> bool:
        done = len(times[c])
        return done < most and (done < least or spent[c] < budget)

    queries: list[tuple[np.ndarray, str]] = []
    # Count the kNN statements of each search (the trace callback costs ~1 µs a statement).
    sqls: list[str] = []
    store.set_trace_callback(sqls.append)
    start = time.perf_counter()
    try:
        while any(wanted(c) for c in CONFIGS):
            vec, text = synth.query(corpus)
            qi = len(queries)
            queries.append((vec, text))
            qvec = [vec.tolist()]
            scores = matrix @ vec
            for j in range(len(CONFIGS)):  # rotate the order query by query
                mode, fname = c = CONFIGS[(qi + j) % len(CONFIGS)]
                if not wanted(c):
                    continue
                sqls.clear()
                t0 = time.perf_counter()
                results = await index.search([STORE], qvec, text, K, FILTERS[fname], mode=mode)
                dt = time.perf_counter() - t0
                times[c].append(dt)
                spent[c] += dt
                scans[c] += sum("embedding MATCH" in s for s in sqls)
                if mode != "vector_only":
                    continue
                masked = np.where(masks[fname], scores, -np.inf)
                want = min(K, int(masks[fname].sum()))
                truth = set(np.argpartition(-masked, want)[:want].tolist())
                got = {row_of(r.file_id, r.chunk_index) for r in results}
                recall[fname].append(len(truth & got) / want)
                short[fname] += len(results) < want
    finally:
        store.set_trace_callback(None)
    elapsed = time.perf_counter() - start

    rows = []
    for mode, fname in CONFIGS:
        t = times[mode, fname]
        rows.append({
            "mode": mode,
            "filter": fname,
            "matching": int(masks[fname].sum()),
            "n": len(t),
            "p50_ms": pct(t, 0.5) * 1e3,
            "p99_ms": pct(t, 0.99) * 1e3,
            "mean_ms": statistics.mean(t) * 1e3,
            "knn_per_search": scans[mode, fname] / len(t),
        })  # fmt: skip
    rec = [
        {
            "filter": fname,
            "matching": int(masks[fname].sum()),
            "n": len(recall[fname]),
            "recall_mean": statistics.mean(recall[fname]),
            "recall_min": min(recall[fname]),
            "perfect": sum(r == 1.0 for r in recall[fname]),
            "short": short[fname],
        }
        for fname in FILTERS
    ]
    return {"chunks": n, "queries": len(queries), "elapsed_s": elapsed, "rows": rows,
            "recall": rec, "sample": queries[: cfg.component_queries]}  # fmt: skip


# --------------------------------------------------------------------------------------
# 4. Where the time goes: the index's statements, timed alone on a reader connection
# --------------------------------------------------------------------------------------


async def timed_read(
    store: SQLiteResponseStore, fn: Callable[[sqlite3.Connection], T]
) -> tuple[float, T]:
    def run(conn: sqlite3.Connection) -> tuple[float, T]:
        t0 = time.perf_counter()
        out = fn(conn)
        return time.perf_counter() - t0, out

    return await store.read(run)


async def components(
    store: SQLiteResponseStore, corpus: Corpus, n: int, sample: list[tuple[np.ndarray, str]]
) -> dict[str, Any]:
    part = f"{DEFAULT_PROJECT}\x1f{STORE}"  # VectorIndex's partition key
    knn_sql = (
        f"SELECT rowid, distance FROM {VEC_TABLE} WHERE embedding MATCH ? AND k = ? "
        "AND partition = ?"
    )
    fts_sql = (
        "SELECT c.id, bm25(vector_chunks_fts) AS s FROM vector_chunks_fts "
        "JOIN vector_chunks c ON c.id = vector_chunks_fts.rowid "
        "WHERE vector_chunks_fts MATCH ? AND c.project_id = ? AND c.vector_store_id IN (?) "
        "AND 1 ORDER BY s LIMIT 50"
    )
    team = "json_extract(c.attributes, '$.\"team\"') IS 'team-07'"
    filter_sql = (
        f"SELECT count(*) FROM vector_chunks c WHERE c.project_id = ? "
        f"AND c.vector_store_id = ? AND {team}"
    )
    first_sql = (  # filter first, then exact cosine over the survivors
        f"SELECT c.id, vec_distance_cosine(e.embedding, ?) AS d FROM vector_chunks c "
        f"JOIN {VEC_TABLE} e ON e.rowid = c.id WHERE c.project_id = ? "
        f"AND c.vector_store_id = ? AND {team} ORDER BY d LIMIT 50"
    )
    count_sql = "SELECT count(*) FROM vector_chunks WHERE project_id = ? AND vector_store_id = ?"
    matrix = corpus.matrix(n)
    out: dict[str, list[float]] = {
        k: []
        for k in ("knn50", "knn200", "knn4096", "fts", "fts_matches", "count", "filter",
                  "filter_first", "numpy")
    }  # fmt: skip
    first_error = ""
    for vec, text in sample:
        blob = vec.astype(np.float32).tobytes()
        for k in (50, 200, 4096):
            dt, _ = await timed_read(
                store, lambda c, k=k, blob=blob: c.execute(knn_sql, (blob, k, part)).fetchall()
            )
            out[f"knn{k}"].append(dt)
        q = fts_query(text)
        dt, _ = await timed_read(
            store, lambda c, q=q: c.execute(fts_sql, (q, DEFAULT_PROJECT, STORE)).fetchall()
        )
        out["fts"].append(dt)
        _, matches = await timed_read(
            store,
            lambda c, q=q: c.execute(
                "SELECT count(*) FROM vector_chunks_fts WHERE vector_chunks_fts MATCH ?", (q,)
            ).fetchone()[0],
        )
        out["fts_matches"].append(float(matches))
        dt, _ = await timed_read(
            store, lambda c: c.execute(count_sql, (DEFAULT_PROJECT, STORE)).fetchone()
        )
        out["count"].append(dt)
        dt, _ = await timed_read(
            store, lambda c: c.execute(filter_sql, (DEFAULT_PROJECT, STORE)).fetchone()
        )
        out["filter"].append(dt)
        try:
            dt, _ = await timed_read(
                store,
                lambda c, blob=blob: c.execute(
                    first_sql, (blob, DEFAULT_PROJECT, STORE)
                ).fetchall(),
            )
            out["filter_first"].append(dt)
        except sqlite3.Error as exc:
            first_error = str(exc)
        t0 = time.perf_counter()
        scores = matrix @ vec
        np.argpartition(-scores, K)[:K]
        out["numpy"].append(time.perf_counter() - t0)
    med = {k: (statistics.median(v) if v else float("nan")) for k, v in out.items()}
    med["fts_matches_mean"] = statistics.mean(out["fts_matches"])
    med["n"] = len(sample)
    med["filter_first_error"] = first_error  # type: ignore[assignment]
    return med


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


async def measure(cfg: Config, tmp: Path) -> dict[str, Any]:
    db_path = tmp / "bench.sqlite3"
    store = SQLiteResponseStore(db_path)
    await store.open()
    index = VectorIndex(store, DEFAULT_PROJECT)
    embedder = LocalEmbedder()
    res: dict[str, Any] = {"ingest": {}, "search": {}, "components": {}, "db": {}}
    try:
        res["versions"] = await store.read(
            lambda c: c.execute("SELECT sqlite_version(), vec_version()").fetchone()
        )
        print("embedding real text ...", file=sys.stderr, flush=True)
        res["embed"] = await embedding_bench(cfg, index, embedder)
        embedder.close()
        synth = Synth(SEED)
        corpus = Corpus()
        for n in cfg.scales:
            files = n // CHUNKS_PER_FILE
            first = corpus.files
            print(f"generating chunks {first * CHUNKS_PER_FILE} → {n} ...", file=sys.stderr)
            t0 = time.perf_counter()
            synth.add_files(corpus, files - first)
            gen_s = time.perf_counter() - t0
            print(f"indexing {n - first * CHUNKS_PER_FILE} chunks ...", file=sys.stderr)
            ing = await ingest_synthetic(index, corpus, first, files)
            ing["gen_s"] = gen_s
            res["ingest"][n] = ing
            if first == 0:
                res["breakdown"] = await insert_breakdown(corpus, files, tmp)
            print(f"searching {n} ...", file=sys.stderr, flush=True)
            s = await search_bench(cfg, store, index, synth, corpus, n)
            sample = s.pop("sample")
            res["search"][n] = s
            res["components"][n] = await components(store, corpus, n, sample)
            res["db"][n] = db_bytes(tmp)
        n = cfg.scales[-1]
        texts = corpus.texts[:n]
        res["synthetic_text"] = {
            "words_mean": statistics.mean(t.count(" ") + 1 for t in texts),
            "chars_mean": statistics.mean(len(t) for t in texts),
        }
        sample_rows = np.random.default_rng(1).choice(n, 400, replace=False)
        res["synthetic_pair_cos"] = pair_cosine(corpus.matrix(n)[sample_rows])
        print("one large file ...", file=sys.stderr, flush=True)
        res["big"] = await ingest_big_file(index, synth, cfg.big_file_chunks)
    finally:
        embedder.close()
        await store.aclose()
    return res


def db_bytes(tmp: Path) -> dict[str, int]:
    return {
        kind: p.stat().st_size if p.exists() else 0
        for kind, p in (("db", tmp / "bench.sqlite3"), ("wal", tmp / "bench.sqlite3-wal"))
    }


def report(res: dict[str, Any], cfg: Config, info: dict[str, Any]) -> str:
    kind = "quick" if cfg is QUICK else "full"
    em, e2e = res["embed"], res["embed"]["e2e"]
    sqlite_v, vec_v = res["versions"]
    syn, syn_cos, real_cos = res["synthetic_text"], res["synthetic_pair_cos"], em["real_pair_cos"]
    lines = [
        f"responsed vector-search bench ({kind} run, {info['date']}, in process, no network)",
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {platform.python_version()},"
        f" SQLite {sqlite_v}, sqlite-vec {vec_v}, numpy {np.__version__},"
        f" torch {info['torch']} ({info['torch_threads']} threads);"
        f" other busy processes at start: {', '.join(info['noise_before']) or 'none'};"
        f" 1-min load average at the end: {info['loadavg_after']:.2f}",
        f"synthetic chunks: {TOPICS} topics, {CHUNKS_PER_FILE} chunks a file, mean"
        f" {syn['words_mean']:.0f} words / {syn['chars_mean']:.0f} chars (real 200-token"
        f" chunks: {em['words_mean']:.0f} words / {em['chars_mean']:.0f} chars); mean pair"
        f" cosine {syn_cos['mean']:.2f}, nearest-neighbour cosine in a {syn_cos['n']} sample"
        f" {syn_cos['nn_mean']:.2f} (MiniLM on the {real_cos['n']} real chunks:"
        f" {real_cos['mean']:.2f} / {real_cos['nn_mean']:.2f})",
        f"the 10k/100k chunks and their vectors are synthetic: embedding 100k real chunks at"
        f" the rate below would take {100_000 / em['chunks_per_s'] / 60:.0f} min",
        "",
        "## 1. ingestion",
        "| what | chunks | s | chunks/s |",
        "|---|---:|---:|---:|",
    ]
    prev = 0
    for n, ing in res["ingest"].items():
        lines.append(
            f"| add_chunks, precomputed vectors, {prev // 1000}k → {n // 1000}k"
            f" ({ing['files']} files of {CHUNKS_PER_FILE}) | {ing['chunks']} |"
            f" {ing['add_s']:.1f} | {ing['chunks_per_s']:.0f} |"
        )
        prev = n
    big = res["big"]
    lines += [
        f"| add_chunks, one {big['chunks']}-chunk file into an empty store |"
        f" {big['chunks']} | {big['add_s']:.2f} | {big['chunks'] / big['add_s']:.0f} |",
        f"| LocalEmbedder.embed, {em['texts']} chunks of {em['tokens_mean']:.0f} tokens"
        f" (calls of {cfg.embed_call}) | {em['texts']} | {em['embed_s']:.1f} |"
        f" {em['chunks_per_s']:.1f} |",
        f"| end to end: chunk_text + embed + add_chunks, {e2e['files']} real files"
        f" (mean {e2e['tokens'] / e2e['chunks']:.0f} tokens a chunk) | {e2e['chunks']} |"
        f" {e2e['total_s']:.1f} | {e2e['chunks'] / e2e['total_s']:.1f} |",
        "",
    ]
    for n, ing in res["ingest"].items():
        lines.append(
            f"add_chunks of {CHUNKS_PER_FILE} chunks growing to {n // 1000}k (the event loop"
            f" thread is busy for all of it): p50 {ing['call_ms_p50']:.1f} ms, p99"
            f" {ing['call_ms_p99']:.1f} ms, max {ing['call_ms_max']:.1f} ms; of the slowest"
            f" {ing['slow_calls']} (≥ {ing['slow_ms_min']:.1f} ms), {ing['slow_crossing']}"
            f" started a new {VEC_CHUNK}-vector vec0 chunk ({ing['crossing_share']:.1%} of"
            f" all calls do); write() bytes a chunk (WAL + checkpoints):"
            f" {ing['written_per_chunk'] / 1e3:.1f} KB"
        )
    n0 = next(iter(res["ingest"]))
    parts = "; ".join(
        f"{table} {b['s']:.2f} s (p50 {b['p50_ms']:.2f} / p99 {b['p99_ms']:.1f} /"
        f" max {b['max_ms']:.1f} ms)"
        for table, b in res["breakdown"].items()
    )
    lines += [
        f"the same first {n0 // 1000}k chunks as raw INSERTs, one table alone per fresh"
        f" database, a transaction per {CHUNKS_PER_FILE}: {parts}",
        f"one {big['chunks']}-chunk file: {big['add_s'] * 1e3:.0f} ms in one transaction on"
        f" the loop thread; replacing it (delete + insert) {big['replace_s'] * 1e3:.0f} ms",
        f"embedding: per-call rate {em['call_rate_min']:.1f}-{em['call_rate_max']:.1f}"
        f" chunks/s; model load {em['model_load_s']:.1f} s; a one-line query"
        f" {em['query_ms_p50']:.1f} ms p50",
        f"end to end, share of time: chunking {e2e['chunk_s'] / e2e['total_s']:.1%},"
        f" embedding {e2e['embed_s'] / e2e['total_s']:.1%}, index"
        f" {e2e['add_s'] / e2e['total_s']:.1%}",
        "",
    ]
    lines += [
        f"## 2. search latency (c1, k={K}, one vector store, configurations interleaved"
        " query by query; wall time of `await index.search` incl. the reader-pool hop;"
        " query embedding not included)",
        "(a configuration stops after its searches took"
        f" {' / '.join(f'{b:.0f}' for b in cfg.config_budget_s.values())} s in all, so the"
        " slow ones have fewer queries; with n < 100, p99 is the slowest search)",
        "| chunks | mode | filter (matching chunks) | n | p50 ms | p99 ms | kNN scans/search |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for n, s in res["search"].items():
        for r in s["rows"]:
            lines.append(
                f"| {n // 1000}k | {r['mode']} | {r['filter']} ({r['matching']}) | {r['n']} |"
                f" {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['knn_per_search']:.1f} |"
            )
    lines += [
        "",
        f"## 3. recall@{K} of vector_only (sqlite-vec kNN; filtered: exact over matches) vs"
        " exact numpy cosine over the same vectors",
        "| chunks | filter (matching chunks) | queries | mean recall | min |"
        " queries with recall 1 | queries with < 10 results |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, s in res["search"].items():
        for r in s["recall"]:
            lines.append(
                f"| {n // 1000}k | {r['filter']} ({r['matching']}) | {r['n']} |"
                f" {r['recall_mean']:.3f} | {r['recall_min']:.1f} | {r['perfect']} |"
                f" {r['short']} |"
            )
    lines += [
        "",
        "## 4. where the time goes (direct SQL on a reader connection, median of"
        f" {cfg.component_queries} queries, ms)",
        "| chunks | vec0 kNN k=50 | k=200 | k=4096 | FTS5 MATCH+bm25 (mean matches) |"
        " count(*) of the store | filter scan (json_extract) | filter first + exact cosine"
        " | numpy exact (M @ q) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, c in res["components"].items():
        lines.append(
            f"| {n // 1000}k | {c['knn50'] * 1e3:.2f} | {c['knn200'] * 1e3:.2f} |"
            f" {c['knn4096'] * 1e3:.2f} | {c['fts'] * 1e3:.2f} ({c['fts_matches_mean']:.0f}) |"
            f" {c['count'] * 1e3:.2f} | {c['filter'] * 1e3:.2f} |"
            f" {c['filter_first'] * 1e3:.2f} | {c['numpy'] * 1e3:.2f} |"
        )
        if c["filter_first_error"]:
            lines.append(f"(filter first failed: {c['filter_first_error']})")
    sizes = ", ".join(
        f"{n // 1000}k: database {b['db'] / 1e6:.0f} MB ({b['db'] / n / 1e3:.1f} KB a chunk),"
        f" WAL file {b['wal'] / 1e6:.0f} MB"
        for n, b in res["db"].items()
    )
    lines.append(f"size after ingestion and search: {sizes}")
    return "\n".join(lines)


def write_results(text: str, command: str, date: str) -> None:
    write_section(SECTION, text, command, date)


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10k chunks only, fewer queries")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--no-results", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # Belt and braces: nothing may be fetched (the embedder sets these too).
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    noise = overhead.busy_processes({os.getpid()})
    if noise:
        print(f"WARNING: machine not idle, results will be noisy: {noise}", file=sys.stderr)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="responsed-bench-vec-") as tmp:
        res = asyncio.run(measure(cfg, Path(tmp)))
    import torch

    info = {
        "noise_before": noise,
        "loadavg_after": overhead.load_average(),
        "nproc": os.cpu_count(),
        "cpu": overhead.cpu_model(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "run_s": time.perf_counter() - started,
    }
    text = report(res, cfg, info) + f"\nwhole run: {info['run_s']:.0f} s"
    print(text, flush=True)
    if args.json:
        args.json.write_bytes(
            orjson.dumps(
                jsonable({"info": info, "results": res}),
                option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
            )
        )
    if not (args.quick or args.no_results):
        write_results(text, ".venv/bin/python bench/vector_search.py", str(info["date"]))
        print(f"updated {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
