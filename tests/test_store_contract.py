"""Contract tests for `ResponseStore`, run against every implementation.

Each implementation is a `Backend` (how to build a store on a location, inspect its
schema, and count the statements it issues); add one to `BACKENDS` to run the suite.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from responsed.store.base import DEFAULT_PROJECT, ItemPage, ResponseRecord, ResponseStore
from responsed.store.migrations import LATEST_VERSION
from responsed.store.sqlite import SQLiteResponseStore

# -- backends -------------------------------------------------------------------


class Backend(Protocol):
    def location(self, tmp_path: Path) -> Any: ...
    def make(self, location: Any) -> ResponseStore: ...
    def columns(self, location: Any, table: str) -> set[str]: ...
    def schema_versions(self, location: Any) -> list[int]: ...
    def count_statements(self, store: ResponseStore) -> Any: ...


class SQLiteBackend:
    def location(self, tmp_path: Path) -> Path:
        return tmp_path / "data" / "responsed.sqlite3"

    def make(self, location: Path) -> ResponseStore:
        return SQLiteResponseStore(location)

    def columns(self, location: Path, table: str) -> set[str]:
        with sqlite3.connect(location) as conn:
            return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    def schema_versions(self, location: Path) -> list[int]:
        with sqlite3.connect(location) as conn:
            return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]

    @contextmanager
    def count_statements(self, store: ResponseStore) -> Iterator[list[str]]:
        assert isinstance(store, SQLiteResponseStore)
        seen: list[str] = []
        store.set_trace_callback(seen.append)
        try:
            yield seen
        finally:
            store.set_trace_callback(None)


BACKENDS: dict[str, Callable[[], Backend]] = {"sqlite": SQLiteBackend}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]()


@pytest.fixture
def location(backend: Backend, tmp_path: Path) -> Any:
    return backend.location(tmp_path)


@pytest.fixture
async def store(backend: Backend, location: Any) -> AsyncIterator[ResponseStore]:
    s = backend.make(location)
    await s.open()
    yield s
    await s.aclose()


# -- helpers --------------------------------------------------------------------

P = DEFAULT_PROJECT


def msg(item_id: str, text: str, role: str = "user") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": role,
        "content": [{"type": "input_text" if role == "user" else "output_text", "text": text}],
    }


def fc(item_id: str, call_id: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }


def fco(item_id: str, call_id: str) -> dict[str, Any]:
    return {"type": "function_call_output", "id": item_id, "call_id": call_id, "output": "sunny"}


def rec(
    rid: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None = None,
    *,
    prev: str | None = None,
    status: str = "completed",
    project: str = P,
) -> ResponseRecord:
    body = {
        "id": rid,
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "previous_response_id": prev,
        "output": outputs or [],
        "metadata": {"k": "v", "unicode": "héllo ✓"},
    }
    return ResponseRecord(rid, project, prev, 1_700_000_000, status, body, inputs)


def ids(items: list[dict[str, Any]] | None) -> list[str]:
    assert items is not None
    return [i["id"] for i in items]


# -- basic CRUD -----------------------------------------------------------------


async def test_put_get_roundtrip(store: ResponseStore) -> None:
    r = rec("resp_1", [msg("msg_in", "hi")], [msg("msg_out", "hello", role="assistant")])
    await store.put_response(r)
    assert await store.get_response(P, "resp_1") == r.body
    assert await store.get_response(P, "resp_missing") is None


async def test_update_keeps_inputs_and_rewrites_outputs(store: ResponseStore) -> None:
    await store.put_response(
        rec("resp_1", [msg("msg_a", "a"), msg("msg_b", "b")], [], status="in_progress")
    )
    done = rec(
        "resp_1", [msg("msg_ignored", "x")], [fc("fc_1", "c1"), msg("msg_o", "o", "assistant")]
    )
    await store.put_response(done)

    got = await store.get_response(P, "resp_1")
    assert got is not None
    assert got["status"] == "completed"
    assert got == done.body
    page = await store.list_input_items(P, "resp_1", after=None, limit=10, order="asc")
    assert page is not None
    assert ids(page.data) == ["msg_a", "msg_b"]
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_a", "msg_b", "fc_1", "msg_o"]

    # A shorter output list replaces, not merges.
    await store.put_response(rec("resp_1", [], [msg("msg_final", "f", "assistant")]))
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_a", "msg_b", "msg_final"]


async def test_delete(store: ResponseStore) -> None:
    await store.put_response(rec("resp_1", [msg("msg_a", "a")], [msg("msg_o", "o", "assistant")]))
    assert await store.delete_response(P, "resp_1") is True
    assert await store.get_response(P, "resp_1") is None
    assert await store.list_input_items(P, "resp_1", after=None, limit=10, order="asc") is None
    assert await store.chain_items(P, "resp_1") is None
    assert await store.delete_response(P, "resp_1") is False
    # Items went with it: the id can be reused from scratch.
    await store.put_response(rec("resp_1", [msg("msg_new", "n")]))
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_new"]


async def test_project_isolation(store: ResponseStore) -> None:
    await store.put_response(rec("resp_1", [msg("msg_a", "a")], [msg("msg_o", "o", "assistant")]))
    other = "proj_other"
    assert await store.get_response(other, "resp_1") is None
    assert await store.list_input_items(other, "resp_1", after=None, limit=10, order="asc") is None
    assert await store.chain_items(other, "resp_1") is None
    assert await store.delete_response(other, "resp_1") is False
    assert await store.get_response(P, "resp_1") is not None

    # The same id in another project is a different response; chains don't cross.
    await store.put_response(rec("resp_1", [msg("msg_x", "x")], project=other))
    await store.put_response(rec("resp_2", [msg("msg_y", "y")], prev="resp_1", project=other))
    assert ids(await store.chain_items(other, "resp_2")) == ["msg_x", "msg_y"]
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_a", "msg_o"]
    assert await store.chain_items(P, "resp_2") is None


# -- list_input_items -----------------------------------------------------------


async def test_list_input_items_pagination(store: ResponseStore) -> None:
    items = [msg(f"msg_{i}", str(i)) for i in range(5)]
    await store.put_response(rec("resp_1", items, [msg("msg_out", "o", "assistant")]))

    async def page(after: str | None, limit: int, order: Any) -> tuple[list[str], bool]:
        p = await store.list_input_items(P, "resp_1", after=after, limit=limit, order=order)
        assert isinstance(p, ItemPage)
        return ids(p.data), p.has_more

    assert await page(None, 2, "asc") == (["msg_0", "msg_1"], True)
    assert await page("msg_1", 2, "asc") == (["msg_2", "msg_3"], True)
    assert await page("msg_3", 2, "asc") == (["msg_4"], False)
    assert await page("msg_4", 2, "asc") == ([], False)
    assert await page(None, 5, "asc") == ([f"msg_{i}" for i in range(5)], False)
    assert await page(None, 100, "asc") == ([f"msg_{i}" for i in range(5)], False)

    assert await page(None, 2, "desc") == (["msg_4", "msg_3"], True)
    assert await page("msg_3", 2, "desc") == (["msg_2", "msg_1"], True)
    assert await page("msg_1", 2, "desc") == (["msg_0"], False)
    assert await page("msg_0", 2, "desc") == ([], False)

    # Output items are not input items, and unknown cursors find nothing.
    assert await page("msg_out", 2, "asc") == ([], False)
    assert await page("msg_nope", 2, "desc") == ([], False)
    full = await store.list_input_items(P, "resp_1", after=None, limit=1, order="asc")
    assert full is not None
    assert full.data == [items[0]]


# -- chains ---------------------------------------------------------------------


async def _three_turns(store: ResponseStore) -> None:
    await store.put_response(rec("resp_1", [msg("msg_u1", "weather?")], [fc("fc_1", "call_1")]))
    await store.put_response(
        rec(
            "resp_2", [fco("fco_1", "call_1")], [msg("msg_a2", "sunny", "assistant")], prev="resp_1"
        )
    )
    await store.put_response(
        rec(
            "resp_3",
            [msg("msg_u3", "thanks"), msg("msg_u3b", "bye")],
            [msg("msg_a3", "np", "assistant")],
            prev="resp_2",
        )
    )


async def test_chain_three_turns(store: ResponseStore) -> None:
    await _three_turns(store)
    chain = await store.chain_items(P, "resp_3")
    assert ids(chain) == ["msg_u1", "fc_1", "fco_1", "msg_a2", "msg_u3", "msg_u3b", "msg_a3"]
    assert chain is not None
    assert chain[1] == fc("fc_1", "call_1")
    assert chain[2] == fco("fco_1", "call_1")
    assert ids(await store.chain_items(P, "resp_2")) == ["msg_u1", "fc_1", "fco_1", "msg_a2"]
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_u1", "fc_1"]


async def test_chain_with_deleted_middle(store: ResponseStore) -> None:
    await _three_turns(store)
    assert await store.delete_response(P, "resp_2")
    assert ids(await store.chain_items(P, "resp_3")) == ["msg_u3", "msg_u3b", "msg_a3"]
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_u1", "fc_1"]


async def test_chain_unknown_and_edge_cases(store: ResponseStore) -> None:
    assert await store.chain_items(P, "resp_nope") is None
    # Dangling previous id: the chain is just this response.
    await store.put_response(rec("resp_1", [msg("msg_a", "a")], prev="resp_gone"))
    assert ids(await store.chain_items(P, "resp_1")) == ["msg_a"]
    # A response with no items exists: empty list, not None.
    await store.put_response(rec("resp_empty", [], status="in_progress"))
    assert await store.chain_items(P, "resp_empty") == []


async def test_chain_cycle_terminates(store: ResponseStore) -> None:
    # Only reachable by id reuse after a delete, but it must not hang.
    await store.put_response(rec("resp_a", [msg("msg_a", "a")], prev="resp_b"))
    await store.put_response(rec("resp_b", [msg("msg_b", "b")], prev="resp_a"))
    chain = await asyncio.wait_for(store.chain_items(P, "resp_a"), timeout=30)
    assert chain is not None
    assert chain[-1]["id"] == "msg_a"


async def test_long_chain_constant_queries(store: ResponseStore, backend: Backend) -> None:
    turns = 1000
    prev = None
    for t in range(turns):
        outputs = [fc(f"fc_{t}", f"call_{t}")] if t % 2 else [msg(f"msg_o{t}", "o", "assistant")]
        await store.put_response(rec(f"resp_{t}", [msg(f"msg_i{t}", "i")], outputs, prev=prev))
        prev = f"resp_{t}"
    await store.put_response(
        rec("resp_single", [msg("msg_s", "s")], [msg("msg_so", "o", "assistant")])
    )

    with backend.count_statements(store) as one:
        short = await store.chain_items(P, "resp_single")
    with backend.count_statements(store) as many:
        chain = await store.chain_items(P, f"resp_{turns - 1}")

    assert ids(short) == ["msg_s", "msg_so"]
    assert chain is not None
    assert len(chain) == 2 * turns
    expected: list[str] = []
    for t in range(turns):
        expected += [f"msg_i{t}", f"fc_{t}" if t % 2 else f"msg_o{t}"]
    assert ids(chain) == expected
    assert len(one) >= 1
    assert len(many) == len(one)
    assert len(many) <= 2


async def test_concurrent_puts_and_gets(store: ResponseStore) -> None:
    async def one(i: int) -> None:
        r = rec(f"resp_{i}", [msg(f"msg_{i}", str(i))], status="in_progress")
        await store.put_response(r)
        assert await store.get_response(P, f"resp_{i}") == r.body

    await asyncio.gather(*(one(i) for i in range(50)))
    assert all([await store.get_response(P, f"resp_{i}") for i in range(50)])


# -- schema and lifecycle -------------------------------------------------------


async def test_migrations_idempotent(backend: Backend, location: Any) -> None:
    for _ in range(2):
        s = backend.make(location)
        await s.open()
        await s.aclose()
    assert backend.schema_versions(location) == list(range(1, LATEST_VERSION + 1))


async def test_schema_tables_and_columns(
    store: ResponseStore, backend: Backend, location: Any
) -> None:
    assert backend.columns(location, "responses") == {
        "project_id",
        "id",
        "previous_response_id",
        "created_at",
        "status",
        "body",
        "sent",
    }
    assert backend.columns(location, "response_items") == {
        "project_id",
        "response_id",
        "kind",
        "position",
        "item_id",
        "body",
    }
    assert {"version"} <= backend.columns(location, "schema_version")


async def test_sent_records_what_truncation_left_out(store: ResponseStore) -> None:
    r = rec("resp_t", [msg("msg_t", "t")])
    r.sent = {"dropped_items": 3}
    await store.put_response(r)
    await store.put_response(rec("resp_u", [msg("msg_u", "u")]))
    assert await store.get_sent(P, "resp_t") == {"dropped_items": 3}
    assert await store.get_sent(P, "resp_u") is None
    assert await store.get_sent(P, "resp_missing") is None


async def test_persistence_across_reopen(backend: Backend, location: Any) -> None:
    s = backend.make(location)
    await s.open()
    await s.put_response(rec("resp_1", [msg("msg_a", "a")], [fc("fc_1", "c")]))
    await s.put_response(rec("resp_2", [fco("fco_1", "c")], prev="resp_1"))
    await s.aclose()

    s2 = backend.make(location)
    await s2.open()
    try:
        got = await s2.get_response(P, "resp_1")
        assert got is not None
        assert got["output"] == [fc("fc_1", "c")]
        assert ids(await s2.chain_items(P, "resp_2")) == ["msg_a", "fc_1", "fco_1"]
    finally:
        await s2.aclose()
