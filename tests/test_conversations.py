"""The Conversations API through the official SDK, every reply checked against its types.

`tests/wire.py` validates only `/responses` replies, so the raw JSON of each reply here
is validated with the SDK's own models (`Conversation`, `ConversationItem`, …).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI
from openai.types.conversations import (
    Conversation,
    ConversationDeletedResource,
    ConversationItem,
    ConversationItemList,
)
from pydantic import TypeAdapter

from conftest import RunningServer
from responsed.protocol.errors import APIError
from responsed.runtime.conversations import ConversationService
from responsed.store.conversations import DuplicateItemError, SQLiteConversationStore
from responsed.store.sqlite import SQLiteResponseStore
from wire import assert_error

ITEM = TypeAdapter[Any](ConversationItem)


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def conversation_of(raw: Any) -> dict[str, Any]:
    """The wire object of a Conversation reply, validated by the SDK's type."""
    body: dict[str, Any] = raw.http_response.json()
    Conversation.model_validate(body)
    assert set(body) == {"id", "object", "created_at", "metadata"}
    assert body["object"] == "conversation"
    assert body["id"].startswith("conv_")
    return body


def items_of(raw: Any) -> dict[str, Any]:
    """The wire object of an item list reply; each item a valid `ConversationItem`."""
    body: dict[str, Any] = raw.http_response.json()
    assert set(body) == {"object", "data", "first_id", "last_id", "has_more"}
    assert body["object"] == "list"
    for item in body["data"]:
        ITEM.validate_python(item)
    if body["data"]:
        assert body["first_id"] == body["data"][0]["id"]
        assert body["last_id"] == body["data"][-1]["id"]
    return body


def texts(items: list[dict[str, Any]]) -> list[str]:
    return [item["content"][0]["text"] for item in items]


def sdk_texts(items: Iterable[Any]) -> list[str]:
    """Texts of the SDK's parsed message items."""
    return [item.content[0].text for item in items]


def new_conversation(client: OpenAI, texts_: list[str], **kwargs: Any) -> dict[str, Any]:
    raw = client.conversations.with_raw_response.create(
        items=[user(t) for t in texts_],  # type: ignore[misc]
        **kwargs,
    )
    return conversation_of(raw)


# -- conversations ----------------------------------------------------------------------


def test_create_retrieve_update_delete(client: OpenAI) -> None:
    created = new_conversation(client, ["hello"], metadata={"topic": "demo", "user": "u1"})
    assert created["metadata"] == {"topic": "demo", "user": "u1"}
    assert isinstance(created["created_at"], int)

    fetched = conversation_of(client.conversations.with_raw_response.retrieve(created["id"]))
    assert fetched == created

    raw = client.conversations.with_raw_response.update(created["id"], metadata={"topic": "x"})
    updated = conversation_of(raw)
    assert updated == {**created, "metadata": {"topic": "x"}}  # replaced, not merged
    assert client.conversations.retrieve(created["id"]).metadata == {"topic": "x"}

    cleared = conversation_of(
        client.conversations.with_raw_response.update(created["id"], metadata=None)
    )
    assert cleared["metadata"] == {}

    raw_deleted = client.conversations.with_raw_response.delete(created["id"])
    deleted = raw_deleted.http_response.json()
    ConversationDeletedResource.model_validate(deleted)
    assert deleted == {"id": created["id"], "object": "conversation.deleted", "deleted": True}

    with pytest.raises(openai.NotFoundError) as info:
        client.conversations.retrieve(created["id"])
    assert info.value.body == {
        "message": f"Conversation with id '{created['id']}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": "not_found",
    }
    with pytest.raises(openai.NotFoundError):
        client.conversations.delete(created["id"])
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(created["id"])


def test_create_without_anything(client: OpenAI) -> None:
    conversation = conversation_of(client.conversations.with_raw_response.create())
    assert conversation["metadata"] == {}
    page = items_of(client.conversations.items.with_raw_response.list(conversation["id"]))
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_initial_items_are_normalized_like_input_items(client: OpenAI) -> None:
    conversation = new_conversation(client, ["first", "second"])
    page = items_of(
        client.conversations.items.with_raw_response.list(conversation["id"], order="asc")
    )
    first, second = page["data"]
    assert first["id"].startswith("msg_") and second["id"].startswith("msg_")
    assert first == {
        "id": first["id"],
        "type": "message",
        "role": "user",
        "status": "completed",
        "content": [{"type": "input_text", "text": "first"}],
    }
    assert texts(page["data"]) == ["first", "second"]


def test_every_supported_item_type_round_trips(client: OpenAI) -> None:
    items: list[Any] = [
        {"role": "developer", "content": "be brief"},
        {"type": "message", "role": "assistant", "content": "calling", "id": "msg_given"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"q": "x"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
    ]
    conversation = conversation_of(client.conversations.with_raw_response.create(items=items))
    page = items_of(
        client.conversations.items.with_raw_response.list(conversation["id"], order="asc")
    )
    data = page["data"]
    assert [i["type"] for i in data] == [
        "message",
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
    ]
    assert data[1]["id"] == "msg_given"  # a client's id is kept
    assert data[1]["content"] == [{"type": "output_text", "text": "calling", "annotations": []}]
    assert data[2]["id"].startswith("fc_") and data[2]["status"] == "completed"
    assert data[3]["id"].startswith("fco_") and data[3]["output"] == "42"
    assert data[4]["id"].startswith("rs_")
    # The SDK parses each into its own class.
    parsed = list(client.conversations.items.list(conversation["id"], order="asc"))
    assert [type(i).__name__ for i in parsed] == [
        "Message",
        "Message",
        "ResponseFunctionToolCallItem",
        "ResponseFunctionToolCallOutputItem",
        "ResponseReasoningItem",
    ]


# -- items ------------------------------------------------------------------------------


def test_create_retrieve_and_delete_items(client: OpenAI) -> None:
    conversation = new_conversation(client, ["one"])
    cid = conversation["id"]
    raw = client.conversations.items.with_raw_response.create(
        cid,
        items=[user("two"), user("three")],  # type: ignore[list-item]
    )
    created = items_of(raw)
    ConversationItemList.model_validate(created)
    assert texts(created["data"]) == ["two", "three"]
    assert created["has_more"] is False

    two_id = created["first_id"]
    raw_item = client.conversations.items.with_raw_response.retrieve(two_id, conversation_id=cid)
    item = raw_item.http_response.json()
    ITEM.validate_python(item)
    assert item == created["data"][0]

    raw_after = client.conversations.items.with_raw_response.delete(two_id, conversation_id=cid)
    assert conversation_of(raw_after) == conversation  # deleting an item returns its conversation

    remaining = client.conversations.items.list(cid, order="asc").data
    assert sdk_texts(remaining) == ["one", "three"]

    with pytest.raises(openai.NotFoundError) as info:
        client.conversations.items.retrieve(two_id, conversation_id=cid)
    assert info.value.body["message"] == f"Item with id '{two_id}' not found."  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(two_id, conversation_id=cid)

    # Appending after a delete continues after the last item.
    client.conversations.items.create(cid, items=[user("four")])  # type: ignore[list-item]
    everything = client.conversations.items.list(cid, order="asc").data
    assert sdk_texts(everything) == ["one", "three", "four"]


def test_list_pages_both_orders(client: OpenAI) -> None:
    words = ["a", "b", "c", "d", "e"]
    cid = new_conversation(client, words)["id"]

    for order, expected in (("asc", words), ("desc", words[::-1])):
        seen: list[str] = []
        after: str | None = None
        pages: list[bool] = []
        while True:
            kwargs: dict[str, Any] = {"limit": 2, "order": order}
            if after is not None:
                kwargs["after"] = after
            page = items_of(client.conversations.items.with_raw_response.list(cid, **kwargs))
            seen += texts(page["data"])
            pages.append(page["has_more"])
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == expected, order
        assert pages == [True, True, False], order

    # The default order is desc and the default limit 20.
    assert (
        texts(items_of(client.conversations.items.with_raw_response.list(cid))["data"])
        == (words[::-1])
    )
    # The SDK's auto-pagination follows `last_id`.
    every = client.conversations.items.list(cid, limit=1, order="asc")
    assert sdk_texts(every) == words
    # An exact last page: has_more is false.
    last = items_of(client.conversations.items.with_raw_response.list(cid, limit=5))
    assert last["has_more"] is False and len(last["data"]) == 5


def test_include_is_accepted(client: OpenAI) -> None:
    cid = new_conversation(client, ["x"])["id"]
    include: Any = ["message.input_image.image_url", "reasoning.encrypted_content"]
    page = client.conversations.items.list(cid, include=include)
    assert len(page.data) == 1
    item_id = page.data[0].id
    assert item_id is not None
    assert client.conversations.items.retrieve(item_id, conversation_id=cid, include=include).id
    added = client.conversations.items.create(
        cid,
        items=[user("y")],  # type: ignore[list-item]
        include=include,
    )
    assert len(added.data) == 1


async def test_async_client(aclient: AsyncOpenAI) -> None:
    conversation = await aclient.conversations.create(metadata={"k": "v"})
    added = await aclient.conversations.items.create(
        conversation.id,
        items=[user("hi")],  # type: ignore[list-item]
    )
    listed = [item.id async for item in aclient.conversations.items.list(conversation.id)]
    assert listed == [added.first_id]
    deleted = await aclient.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.object == "conversation.deleted"


# -- errors -----------------------------------------------------------------------------


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as plain:
        yield plain


@pytest.fixture
def cid(client: OpenAI) -> str:
    return str(new_conversation(client, ["seed"])["id"])


def test_limit_and_order_are_checked(http: httpx.Client, cid: str) -> None:
    path = f"/conversations/{cid}/items"
    error = assert_error(
        http.get(path, params={"limit": 0}), 400, param="limit", code="integer_below_min_value"
    )
    assert error["message"] == (
        "Invalid 'limit': integer below minimum value. Expected a value >= 1, but got 0 instead."
    )
    assert_error(
        http.get(path, params={"limit": 101}), 400, param="limit", code="integer_above_max_value"
    )
    assert_error(http.get(path, params={"limit": "many"}), 400, param="limit")
    assert_error(http.get(path, params={"order": "up"}), 400, param="order", code="invalid_value")
    error = assert_error(
        http.get(path, params={"include[]": "bogus"}), 400, param="include[0]", code="invalid_value"
    )
    assert error["message"].startswith("Invalid value: 'bogus'. Supported values are: ")


def test_too_many_items(http: httpx.Client, cid: str) -> None:
    items = [user(str(i)) for i in range(21)]
    message = (
        "Invalid 'items': array too long. Expected an array with maximum length 20, "
        "but got an array with length 21 instead."
    )
    for path in ("/conversations", f"/conversations/{cid}/items"):
        error = assert_error(
            http.post(path, json={"items": items}),
            400,
            param="items",
            code="array_above_max_length",
        )
        assert error["message"] == message
    # Exactly 20 is fine, and nothing of the refused calls was written.
    assert http.post(f"/conversations/{cid}/items", json={"items": items[:20]}).status_code == 200
    listed = http.get(f"/conversations/{cid}/items", params={"limit": 100}).json()
    assert len(listed["data"]) == 21


def test_bad_bodies(http: httpx.Client, cid: str) -> None:
    cases: list[tuple[str, Any, str | None, str | None]] = [
        ("/conversations", {"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", None),
        ("/conversations", {"metadata": {"k" * 65: "v"}}, "metadata", None),
        ("/conversations", {"metadata": {"k": "v" * 513}}, "metadata", None),
        ("/conversations", {"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
        ("/conversations", {"itmes": []}, "itmes", "unknown_parameter"),
        ("/conversations", {"items": [{"type": "bogus"}]}, "items[0]", "invalid_value"),
        ("/conversations", {"items": [{"id": "msg_x"}]}, "items[0]", "unsupported_value"),
        ("/conversations", {"items": "hello"}, "items", "invalid_type"),
        (f"/conversations/{cid}", {}, "metadata", "missing_required_parameter"),
        (f"/conversations/{cid}", {"metadata": {"k": "v" * 513}}, "metadata", None),
        (f"/conversations/{cid}/items", {}, "items", "missing_required_parameter"),
        (f"/conversations/{cid}/items", {"items": []}, "items", "empty_array"),
        (
            f"/conversations/{cid}/items",
            {"items": [{"role": "robot", "content": "x"}]},
            "items[0].role",
            "invalid_value",
        ),
    ]
    for path, body, param, code in cases:
        assert_error(http.post(path, json=body), 400, param=param, code=code)
    assert_error(http.post("/conversations", content=b"{"), 400)
    # Still intact after all that.
    assert http.get(f"/conversations/{cid}").json()["metadata"] == {}


def test_duplicate_item_ids(http: httpx.Client, cid: str) -> None:
    given = {"type": "message", "role": "user", "content": "x", "id": "msg_mine"}
    assert http.post(f"/conversations/{cid}/items", json={"items": [given]}).status_code == 200
    error = assert_error(
        http.post(f"/conversations/{cid}/items", json={"items": [user("new"), given]}), 400
    )
    assert error["message"] == "Item with id 'msg_mine' already exists in this conversation."
    assert_error(http.post("/conversations", json={"items": [given, given]}), 400, param="items")
    listed = http.get(f"/conversations/{cid}/items", params={"order": "asc"}).json()["data"]
    assert [i["id"] for i in listed][1:] == ["msg_mine"]  # the refused call wrote nothing


def test_unknown_ids(http: httpx.Client, cid: str) -> None:
    missing = "conv_doesnotexist"
    for method, path, body in (
        ("GET", f"/conversations/{missing}", None),
        ("POST", f"/conversations/{missing}", {"metadata": {}}),
        ("DELETE", f"/conversations/{missing}", None),
        ("GET", f"/conversations/{missing}/items", None),
        ("POST", f"/conversations/{missing}/items", {"items": [user("x")]}),
        ("GET", f"/conversations/{missing}/items/msg_x", None),
        ("DELETE", f"/conversations/{missing}/items/msg_x", None),
    ):
        error = assert_error(http.request(method, path, json=body), 404, code="not_found")
        assert error["message"] == f"Conversation with id '{missing}' not found.", (method, path)
    for method in ("GET", "DELETE"):
        error = assert_error(
            http.request(method, f"/conversations/{cid}/items/msg_nope"), 404, param="item_id"
        )
        assert error["message"] == "Item with id 'msg_nope' not found."
    # An unknown cursor is nothing to list after.
    page = http.get(f"/conversations/{cid}/items", params={"after": "msg_nope"}).json()
    assert page["data"] == [] and page["has_more"] is False


# -- the store and the service beneath the routes ----------------------------------------


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteResponseStore]:
    store = SQLiteResponseStore(tmp_path / "conversations.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def test_projects_are_isolated(db: SQLiteResponseStore) -> None:
    store = SQLiteConversationStore(db)
    service = ConversationService(store)
    conversation = {"id": "conv_1", "object": "conversation", "created_at": 1, "metadata": {}}
    item = {"id": "msg_1", "type": "message", "role": "user", "status": "completed", "content": []}
    await store.create_conversation("proj_a", conversation, [item])

    assert await store.get_conversation("proj_b", "conv_1") is None
    assert await store.items("proj_b", "conv_1") is None
    assert await store.get_item("proj_b", "conv_1", "msg_1") is None
    assert await store.append_items("proj_b", "conv_1", [{**item, "id": "msg_2"}]) is None
    assert await store.update_metadata("proj_b", "conv_1", {"k": "v"}) is None
    assert await store.delete_item("proj_b", "conv_1", "msg_1") is None
    assert not await store.delete_conversation("proj_b", "conv_1")
    with pytest.raises(APIError) as info:
        await service.context_items("proj_b", "conv_1")
    assert info.value.status == 404 and info.value.param == "conversation"

    # The same ids may exist in another project.
    await store.create_conversation("proj_b", {**conversation, "metadata": {"p": "b"}}, [item])
    assert (await service.retrieve("proj_a", "conv_1"))["metadata"] == {}
    assert (await service.retrieve("proj_b", "conv_1"))["metadata"] == {"p": "b"}
    assert await service.context_items("proj_a", "conv_1") == [item]


async def test_context_items_and_idempotent_append(db: SQLiteResponseStore) -> None:
    store = SQLiteConversationStore(db)
    service = ConversationService(store)
    conversation = {"id": "conv_2", "object": "conversation", "created_at": 1, "metadata": {}}
    await store.create_conversation("p", conversation, [])
    assert await service.context_items("p", "conv_2") == []

    def msg(n: int) -> dict[str, Any]:
        return {"id": f"msg_{n}", "type": "message", "role": "user", "content": [str(n)]}

    assert await store.append_items("p", "conv_2", [msg(1), msg(2)]) == [msg(1), msg(2)]
    # Items given back (a response's input that repeats the conversation) are skipped.
    appended = await store.append_items("p", "conv_2", [msg(2), msg(3)], skip_existing=True)
    assert appended == [msg(3)]
    with pytest.raises(DuplicateItemError) as info:
        await store.append_items("p", "conv_2", [msg(4), msg(1)])
    assert info.value.item_id == "msg_1"
    assert await service.context_items("p", "conv_2") == [msg(1), msg(2), msg(3)]

    assert await store.delete_conversation("p", "conv_2")
    assert await store.items("p", "conv_2") is None  # its items went with it
