"""The retrieval core of vector stores: chunking, embedders, the hybrid index."""

from __future__ import annotations

import itertools
import os
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from aiohttp import web

from responsed.store.sqlite import SQLiteResponseStore
from responsed.vectors.chunking import (
    AUTO,
    Chunk,
    ChunkingError,
    ChunkingStrategy,
    chunk_text,
    default_tokenizer,
)
from responsed.vectors.embeddings import LocalEmbedder, OpenAIEmbedder
from responsed.vectors.filters import FilterError
from responsed.vectors.index import VectorIndex

# -- chunking ---------------------------------------------------------------------

LONG_TEXT = " ".join(
    f"Paragraph {i}: the lighthouse keeper logged wind speed, tide height and "
    f"visibility at dawn; ship number {i * 7} passed the reef unharmed."
    for i in range(120)
)


def _token_count(text: str) -> int:
    return len(default_tokenizer().spans(text))


def test_chunking_bounds_offsets_and_overlap() -> None:
    strategy = ChunkingStrategy(max_chunk_size_tokens=100, chunk_overlap_tokens=50)
    chunks = chunk_text(LONG_TEXT, strategy)
    assert len(chunks) > 10
    spans = default_tokenizer().spans(LONG_TEXT)
    for chunk in chunks:
        assert chunk.text == LONG_TEXT[chunk.start : chunk.end]  # offsets for citations
        assert chunk.tokens == _token_count(chunk.text) <= 100
        # Cuts snap to word boundaries, but not far; only the last chunk may be short.
        assert chunk.tokens >= 80 or chunk is chunks[-1]
    assert chunks[0].start == 0
    assert chunks[-1].end == spans[-1][1]
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.start < nxt.start < prev.end  # overlapping, always moving forward
        shared = sum(1 for s, e in spans if s >= nxt.start and e <= prev.end)
        assert 35 <= shared <= 50
        assert not LONG_TEXT[nxt.start - 1].isalnum()  # starts on a word
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_chunking_auto_defaults_and_no_overlap() -> None:
    assert (AUTO.max_chunk_size_tokens, AUTO.chunk_overlap_tokens) == (800, 400)
    assert ChunkingStrategy.from_param(None) is AUTO
    assert ChunkingStrategy.from_param({"type": "auto"}) is AUTO
    chunks = chunk_text(LONG_TEXT)
    assert all(c.tokens <= 800 for c in chunks)
    assert len(chunks) >= 3
    flat = chunk_text(LONG_TEXT, ChunkingStrategy(200, 0))
    for prev, nxt in itertools.pairwise(flat):
        assert nxt.start >= prev.end  # no overlap: consecutive, disjoint
    assert chunk_text("") == []
    assert chunk_text("short text") == [Chunk(0, "short text", 0, 10, 2)]


@pytest.mark.parametrize(
    ("size", "overlap", "param", "message"),
    [
        (99, 0, "max_chunk_size_tokens", "Expected a value >= 100, but got 99 instead."),
        (4097, 0, "max_chunk_size_tokens", "Expected a value <= 4096, but got 4097 instead."),
        (100, 51, "chunk_overlap_tokens", "must not exceed half of max_chunk_size_tokens"),
        (100, -1, "chunk_overlap_tokens", "Expected a value >= 0, but got -1 instead."),
    ],
)
def test_chunking_validation(size: int, overlap: int, param: str, message: str) -> None:
    raw = {"max_chunk_size_tokens": size, "chunk_overlap_tokens": overlap}
    with pytest.raises(ChunkingError, match=message) as info:
        ChunkingStrategy.from_param({"type": "static", "static": raw})
    assert info.value.param == f"chunking_strategy.static.{param}"
    assert str(info.value).startswith(f"Invalid 'chunking_strategy.static.{param}'")
    assert isinstance(info.value, ValueError)


def test_chunking_static_from_param() -> None:
    raw = {
        "type": "static",
        "static": {"max_chunk_size_tokens": 4096, "chunk_overlap_tokens": 2048},
    }
    strategy = ChunkingStrategy.from_param(raw)
    assert strategy == ChunkingStrategy(4096, 2048)
    assert strategy.to_param() == raw
    with pytest.raises(ChunkingError):
        ChunkingStrategy.from_param({"type": "static"})


# -- embedders --------------------------------------------------------------------


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    """The local model, loaded with every outgoing connection refused."""
    import asyncio

    local = LocalEmbedder()
    with (
        mock.patch.object(socket.socket, "connect", _no_network),
        mock.patch.object(socket, "create_connection", _no_network),
    ):
        asyncio.run(local.load())
    yield local
    local.close()


async def test_local_embedder_offline(embedder: LocalEmbedder) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert embedder.dimensions == 384
    with mock.patch.object(socket.socket, "connect", _no_network):
        cat, kitten, tax = await embedder.embed(
            ["The cat sleeps on the sofa.", "A kitten naps on the couch.", "Quarterly tax filing"]
        )
    assert len(cat) == 384
    assert abs(sum(x * x for x in cat) - 1.0) < 1e-4  # normalized

    def dot(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(cat, kitten) > dot(cat, tax) + 0.3
    assert await embedder.embed([]) == []


async def test_local_embedder_long_text_is_windowed(embedder: LocalEmbedder) -> None:
    # Past the model's 256-token window the tail still counts (not truncated away).
    head = "Bread baking needs flour, water, salt and yeast. " * 40
    (long_vec,) = await embedder.embed([head + "Volcanic eruptions spew lava and ash."])
    (head_vec,) = await embedder.embed([head])
    assert abs(sum(x * x for x in long_vec) - 1.0) < 1e-4
    assert sum(x * y for x, y in zip(long_vec, head_vec, strict=True)) < 0.999


async def test_openai_embedder_against_local_endpoint() -> None:
    seen: list[dict[str, Any]] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append({"auth": request.headers.get("Authorization"), **body})
        data = [
            {"object": "embedding", "index": i, "embedding": [3.0, 4.0, float(i)]}
            for i in range(len(body["input"]))
        ][::-1]  # out of order: the client sorts by index
        return web.json_response({"object": "list", "data": data, "model": body["model"]})

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = OpenAIEmbedder(f"http://127.0.0.1:{port}/v1", "emb", "sk-test", batch_size=2)
    try:
        vectors = await client.embed(["a", "b", "c"])
        assert client.dimensions == 3
        assert vectors[0] == pytest.approx([0.6, 0.8, 0.0])
        assert vectors[1][2] > 0  # index 1 kept its place (answer was reversed)
        assert vectors[2] == pytest.approx([0.6, 0.8, 0.0])  # index 0 of batch 2
        assert [len(s["input"]) for s in seen] == [2, 1]
        assert seen[0]["auth"] == "Bearer sk-test"
        assert seen[0]["model"] == "emb"
    finally:
        await client.aclose()
        await runner.cleanup()


# -- index: filters, deletes, isolation ---------------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteResponseStore]:
    store = SQLiteResponseStore(tmp_path / "db.sqlite3")
    await store.open()
    yield store
    await store.aclose()


def _unit(i: int, dims: int = 8) -> list[float]:
    return [1.0 if j == i % dims else 0.0 for j in range(dims)]


def _chunks(*texts: str) -> list[Chunk]:
    return [Chunk(i, t, 0, len(t), len(t.split())) for i, t in enumerate(texts)]


FILES: dict[str, dict[str, Any]] = {
    "file_a": {"author": "ann", "year": 2021, "score": 4.5, "draft": False, "tag": "alpha"},
    "file_b": {"author": "bob", "year": 2022, "score": 3.0, "draft": True, "tag": "beta"},
    "file_c": {"author": "cat", "year": 2023, "score": 5.0, "draft": False},
    "file_d": {"author": "dan", "year": "2024", "draft": False, "tag": "delta"},
}


async def _filter_index(db: SQLiteResponseStore) -> VectorIndex:
    index = VectorIndex(db, "proj_1")
    for i, (file_id, attrs) in enumerate(FILES.items()):
        await index.add_chunks(
            "vs_1",
            file_id,
            _chunks(f"shared report {file_id}"),
            [_unit(i)],
            attrs,
            f"{file_id}.txt",
        )
    return index


async def _matching(index: VectorIndex, filters: dict[str, Any]) -> set[str]:
    results = await index.search(["vs_1"], [_unit(0)], "shared report", k=10, filters=filters)
    return {r.file_id for r in results}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"type": "eq", "key": "author", "value": "bob"}, {"file_b"}),
        ({"type": "eq", "key": "draft", "value": True}, {"file_b"}),
        ({"type": "eq", "key": "year", "value": 2023}, {"file_c"}),
        ({"type": "eq", "key": "year", "value": "2024"}, {"file_d"}),  # strict types
        ({"type": "ne", "key": "author", "value": "bob"}, {"file_a", "file_c", "file_d"}),
        ({"type": "ne", "key": "tag", "value": "alpha"}, {"file_b", "file_c", "file_d"}),
        ({"type": "gt", "key": "year", "value": 2021}, {"file_b", "file_c"}),
        ({"type": "gte", "key": "year", "value": 2022}, {"file_b", "file_c"}),
        ({"type": "lt", "key": "score", "value": 4.5}, {"file_b"}),
        ({"type": "lte", "key": "score", "value": 4.5}, {"file_a", "file_b"}),
        ({"type": "gte", "key": "author", "value": "bz"}, {"file_c", "file_d"}),
        ({"type": "in", "key": "author", "value": ["ann", "dan", "zed"]}, {"file_a", "file_d"}),
        ({"type": "in", "key": "year", "value": [2021, 2023]}, {"file_a", "file_c"}),
        ({"type": "nin", "key": "tag", "value": ["alpha", "beta"]}, {"file_c", "file_d"}),
        ({"type": "in", "key": "author", "value": []}, set()),
        ({"type": "eq", "key": "missing", "value": "x"}, set()),
        (
            {
                "type": "and",
                "filters": [
                    {"type": "eq", "key": "draft", "value": False},
                    {"type": "gte", "key": "year", "value": 2021},
                ],
            },
            {"file_a", "file_c"},
        ),
        (
            {
                "type": "or",
                "filters": [
                    {"type": "eq", "key": "author", "value": "bob"},
                    {
                        "type": "and",
                        "filters": [
                            {"type": "gt", "key": "score", "value": 4},
                            {"type": "ne", "key": "tag", "value": "alpha"},
                        ],
                    },
                ],
            },
            {"file_b", "file_c"},
        ),
    ],
)
async def test_attribute_filters(
    db: SQLiteResponseStore, filters: dict[str, Any], expected: set[str]
) -> None:
    index = await _filter_index(db)
    assert await _matching(index, filters) == expected
    # The same filter applies to each ranking on its own.
    for mode in ("vector_only", "keyword_only"):
        results = await index.search(
            ["vs_1"], [_unit(0)], "shared report", k=10, filters=filters, mode=mode
        )
        assert {r.file_id for r in results} == expected, mode


@pytest.mark.parametrize(
    "filters",
    [
        {"type": "like", "key": "a", "value": 1},
        {"type": "eq", "key": "a", "value": [1]},
        {"type": "in", "key": "a", "value": "x"},
        {"type": "and", "filters": []},
        {"type": "eq", "value": 1},
    ],
)
async def test_malformed_filters_raise(db: SQLiteResponseStore, filters: dict[str, Any]) -> None:
    index = await _filter_index(db)
    with pytest.raises(FilterError):
        await _matching(index, filters)


async def test_filtered_knn_fetches_past_unmatched_neighbours(db: SQLiteResponseStore) -> None:
    index = VectorIndex(db, "proj_1")
    for i in range(300):  # 300 near neighbours, then the one the filter wants
        await index.add_chunks("vs_1", f"f{i}", _chunks("noise"), [_unit(0)], {"n": i}, "n")
    await index.add_chunks("vs_1", "wanted", _chunks("signal"), [_unit(1)], {"n": -1}, "w")
    results = await index.search(
        ["vs_1"], [_unit(0)], "", k=3, filters={"type": "lt", "key": "n", "value": 0},
        mode="vector_only",
    )  # fmt: skip
    assert [r.file_id for r in results] == ["wanted"]


def _counts(path: Path) -> tuple[int, int, int]:
    from responsed.store.sqlite_ext import install_sqlite_vec, load_sqlite_vec

    install_sqlite_vec()
    conn = sqlite3.connect(path)
    load_sqlite_vec(conn)
    try:
        conn.execute("INSERT INTO vector_chunks_fts (vector_chunks_fts) VALUES ('integrity-check')")
        rows = conn.execute("SELECT count(*) FROM vector_chunks").fetchone()[0]
        fts = conn.execute(
            "SELECT count(*) FROM vector_chunks_fts WHERE vector_chunks_fts MATCH 'shared'"
        ).fetchone()[0]
        vecs = conn.execute("SELECT count(*) FROM vector_embeddings_8").fetchone()[0]
        return rows, fts, vecs
    finally:
        conn.close()


async def test_delete_file_and_store_clear_both_indexes(
    db: SQLiteResponseStore, tmp_path: Path
) -> None:
    index = VectorIndex(db, "proj_1")
    other_project = VectorIndex(db, "proj_2")
    two = _chunks("shared alpha text", "shared beta text")
    await index.add_chunks("vs_1", "file_a", two, [_unit(0), _unit(1)], {}, "a.txt")
    await index.add_chunks("vs_1", "file_b", _chunks("shared gamma"), [_unit(2)], {}, "b.txt")
    await index.add_chunks("vs_2", "file_a", _chunks("shared delta"), [_unit(3)], {}, "a.txt")
    await other_project.add_chunks("vs_1", "file_a", _chunks("shared x"), [_unit(0)], {}, "x")
    assert _counts(tmp_path / "db.sqlite3") == (5, 5, 5)

    async def files(idx: VectorIndex, stores: list[str], mode: Any = "hybrid") -> list[str]:
        got = await idx.search(stores, [_unit(0)], "shared", k=10, mode=mode)
        return sorted(r.file_id for r in got)

    assert await files(index, ["vs_1"]) == ["file_a", "file_a", "file_b"]
    assert await files(index, ["vs_1", "vs_2"]) == ["file_a", "file_a", "file_a", "file_b"]
    assert await files(other_project, ["vs_1"]) == ["file_a"]

    # Re-adding a file replaces its chunks.
    await index.add_chunks("vs_1", "file_a", _chunks("shared again"), [_unit(4)], {}, "a.txt")
    assert _counts(tmp_path / "db.sqlite3") == (4, 4, 4)

    assert await index.delete_file("vs_1", "file_a") == 1
    assert await index.delete_file("vs_1", "file_a") == 0
    assert _counts(tmp_path / "db.sqlite3") == (3, 3, 3)
    for mode in ("vector_only", "keyword_only"):
        assert await files(index, ["vs_1"], mode) == ["file_b"]
    assert await files(index, ["vs_2"]) == ["file_a"]  # the same file in another store
    assert await files(other_project, ["vs_1"]) == ["file_a"]  # another project

    assert await index.delete_store("vs_2") == 1
    assert _counts(tmp_path / "db.sqlite3") == (2, 2, 2)
    assert await files(index, ["vs_2"]) == []


async def test_scores_threshold_and_result_shape(db: SQLiteResponseStore) -> None:
    index = VectorIndex(db, "proj_1")
    await index.add_chunks("vs_1", "file_a", _chunks("apple pie"), [_unit(0)], {"k": 1}, "a.md")
    await index.add_chunks("vs_1", "file_b", _chunks("pear tart"), [_unit(1)], {}, "b.md")
    results = await index.search(["vs_1"], [_unit(0)], "apple", k=5)
    assert results[0].file_id == "file_a"
    assert results[0].score == 1.0  # first in both rankings
    assert results[0].content == [{"type": "text", "text": "apple pie"}]
    assert results[0].attributes == {"k": 1}
    assert results[0].filename == "a.md"
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert [r.file_id for r in await index.search(["vs_1"], [_unit(0)], "apple", 5, None, 0.9)] == [
        "file_a"
    ]
    vec = await index.search(["vs_1"], [_unit(0)], "", k=5, mode="vector_only")
    assert [(r.file_id, r.score) for r in vec] == [("file_a", 1.0), ("file_b", 0.0)]
    kw = await index.search(["vs_1"], [], "tart", k=5, mode="keyword_only")
    assert [r.file_id for r in kw] == ["file_b"]
    assert 0 < kw[0].score < 1
    # Query text that is all punctuation or FTS syntax is never an error.
    assert await index.search(["vs_1"], [], 'NOT "(* OR', k=5, mode="keyword_only") == []


# -- retrieval quality ------------------------------------------------------------

# Distinct topics, plus a family of near-identical error-code notes whose only
# difference is a rare exact term: vectors cannot tell those apart, keywords can.
PASSAGES: dict[str, str] = {
    "sourdough": "A sourdough starter is a fermented mix of flour and water that hosts wild "
    "yeast and lactobacilli; feed it daily to keep it active before baking bread.",
    "volcano": "Stratovolcanoes build steep cones from alternating layers of lava and ash; "
    "their eruptions are explosive because the magma is viscous and gas-rich.",
    "bees": "Honeybee workers perform a waggle dance to tell nestmates the direction and "
    "distance of flowers relative to the sun.",
    "marathon": "Runners preparing for 42 kilometre races taper their mileage during the "
    "final three weeks so their legs recover before race day.",
    "tides": "Ocean tides rise and fall twice a day mainly because of the Moon's "
    "gravitational pull on the Earth's seas.",
    "chess": "In chess, castling moves the king two squares toward a rook and places the "
    "rook on the square the king crossed.",
    "photosynthesis": "Chlorophyll in leaves captures sunlight to turn carbon dioxide and "
    "water into glucose, releasing oxygen.",
    "vaccines": "Vaccines train the immune system by exposing it to a harmless piece of a "
    "pathogen so that antibodies are ready for a real infection.",
    "mortgage": "A fixed-rate home loan keeps the same interest rate for its whole term, so "
    "the monthly repayment never changes.",
    "jazz": "Bebop musicians of the 1940s played fast tempos and complex chord changes, "
    "improvising long melodic lines over them.",
    "glacier": "Glaciers carve U-shaped valleys as the moving ice grinds the bedrock beneath "
    "it over thousands of years.",
    "coffee": "Espresso is brewed by forcing near-boiling water through finely ground beans "
    "at about nine bars of pressure.",
    "bicycle": "To fix a flat tyre, lever the tyre off the rim, patch or replace the inner "
    "tube, and reinflate it to the pressure printed on the sidewall.",
    "sleep": "Adults who get less than seven hours of rest a night show poorer memory, "
    "weaker immunity and slower reaction times.",
    "python_gil": "CPython's global interpreter lock lets only one thread execute Python "
    "bytecode at a time, which limits CPU-bound multithreading.",
    "compost": "Kitchen scraps and dry leaves decompose into rich humus when the heap is "
    "kept moist, aerated and turned every few weeks.",
    "solar_panels": "Photovoltaic cells made of silicon convert light into electric current; "
    "their output drops when they get hot.",
    "roman_roads": "The ancient Romans paved their highways with layered gravel and fitted "
    "stone, letting legions march quickly across the empire.",
    "knitting": "A purl stitch is the reverse of a knit stitch: the yarn is held in front "
    "and the needle enters the loop from behind.",
    "whales": "Humpback whales migrate thousands of miles each year between cold feeding "
    "waters and warm tropical breeding grounds.",
    "tax": "Self-employed workers usually pay estimated income tax in quarterly "
    "instalments rather than through payroll withholding.",
    "earthquake": "Seismometers record ground shaking; the moment magnitude scale measures "
    "the energy a fault releases when it slips.",
    "wine": "Red wine gets its colour from grape skins, which stay in contact with the "
    "juice during fermentation.",
    "origami": "Origami cranes are folded from a single square sheet of paper without any "
    "cuts or glue.",
    "aurora": "Auroras appear near the poles when charged particles from the solar wind "
    "strike oxygen and nitrogen high in the atmosphere.",
    "dns": "The Domain Name System translates human-readable hostnames into the numeric IP "
    "addresses that computers use to route packets.",
    "part_qx": "Replacement part QX-88 fits the left hinge of the cabinet door model sold "
    "before 2019.",
    "part_zr": "Replacement part ZR-41 fits the right hinge of the cabinet door model sold "
    "before 2019.",
}
# Twelve notes that differ only in their code (the codes share digits, so sub-word
# tokens do not tell them apart either) and the advice.
_CAUSES = [
    "restart the link after a short wait",
    "reinstall the firmware",
    "check that the cable is plugged in",
    "renew the subscription",
    "move it somewhere with airflow",
    "wait an hour after too many wrong passwords",
    "check the power adapter",
    "reset it to factory settings",
    "call the provider about an outage",
    "update the router's clock",
    "replace the antenna",
    "turn off the guest network",
]
_CODES = ["E3390", "E3309", "E3903", "E9330", "E9033", "E0339", "E3093", "E0933", "E9303",
          "E3039", "E0393", "E9930"]  # fmt: skip
for _code, _cause in zip(_CODES, _CAUSES, strict=True):
    PASSAGES[f"router_{_code}"] = (
        f"Router status note: fault {_code} means the device lost its connection; "
        f"to fix it, {_cause}."
    )

# (query, relevant passage). Paraphrases share (almost) no words with their passage;
# the code queries name only a rare exact term.
QUERIES: list[tuple[str, str]] = [
    ("how do insects tell the hive where nectar is", "bees"),
    ("why is the sea level at the beach different in the morning and evening", "tides"),
    ("getting a puncture repaired on my bike", "bicycle"),
    ("how do plants make food from light", "photosynthesis"),
    ("consequences of not sleeping enough", "sleep"),
    ("what causes the northern lights", "aurora"),
    ("turning food waste into garden soil", "compost"),
    ("why threads don't speed up number crunching in python", "python_gil"),
    ("how shots protect you from getting sick", "vaccines"),
    ("big mammals travelling between oceans to give birth", "whales"),
    ("what is the special move with the king and a castle piece", "chess"),
    ("yeast culture for making bread at home", "sourdough"),
    ("how does the name of a website become an address", "dns"),
    ("what does E3390 mean", "router_E3390"),
    ("E9033", "router_E9033"),
    ("router fault E0339", "router_E0339"),
    ("status E3093", "router_E3093"),
    ("E9303 what do I do", "router_E9303"),
    ("meaning of E0393", "router_E0393"),
    ("where does ZR-41 go", "part_zr"),
    ("QX-88 hinge", "part_qx"),
]


async def test_retrieval_quality_hybrid_beats_each_ranking(
    db: SQLiteResponseStore, embedder: LocalEmbedder
) -> None:
    index = VectorIndex(db, "proj_1")
    keys = list(PASSAGES)
    vectors = await embedder.embed([PASSAGES[k] for k in keys])
    for key, vector in zip(keys, vectors, strict=True):
        text = PASSAGES[key]
        await index.add_chunks(
            "vs_q", key, [Chunk(0, text, 0, len(text), 0)], [vector], {}, f"{key}.txt"
        )
    query_vectors = await embedder.embed([q for q, _ in QUERIES])
    recall: dict[str, float] = {}
    misses: dict[str, list[str]] = {}
    for mode in ("vector_only", "keyword_only", "hybrid"):
        hits = 0
        for (query, relevant), qv in zip(QUERIES, query_vectors, strict=True):
            results = await index.search(["vs_q"], [qv], query, k=5, mode=mode)
            if relevant in {r.file_id for r in results}:
                hits += 1
            else:
                misses.setdefault(mode, []).append(query)
        recall[mode] = hits / len(QUERIES)
    report = (
        f"recall@5 hybrid={recall['hybrid']:.2f} keyword_only={recall['keyword_only']:.2f} "
        f"vector_only={recall['vector_only']:.2f} (misses: {misses})"
    )
    print(report)
    assert recall["hybrid"] >= max(recall["keyword_only"], recall["vector_only"]), report
    # Each ranking fails where it should, or the test would not show anything.
    assert recall["keyword_only"] < 1.0, report
    assert recall["vector_only"] < 1.0, report
