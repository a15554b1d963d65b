"""Webhook delivery: signed per Standard Webhooks, durable in SQLite, retried with backoff.

Every delivery lands on a real aiohttp receiver on a loopback port, which checks it the
way a user's endpoint would: with the official SDK's `webhooks.unwrap`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from openai import OpenAI
from openai.types.webhooks import (
    ResponseCancelledWebhookEvent,
    ResponseCompletedWebhookEvent,
    ResponseFailedWebhookEvent,
    ResponseIncompleteWebhookEvent,
)

from conftest import free_port
from responsed.config import WebhookConfig
from responsed.runtime.webhooks import WebhookDispatcher, backoff_delay
from responsed.store.sqlite import SQLiteResponseStore
from responsed.store.webhooks import SQLiteWebhookStore

pytestmark = pytest.mark.timeout(60)

FAST = {"backoff_base": 0.05, "backoff_cap": 0.2, "poll_interval": 0.2}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: Any  # what the SDK's unwrap made of it


class Receiver:
    """A webhook endpoint: answers `statuses` in order (then 200), or holds every
    request open while `hang` is set; verifies each request with the SDK."""

    def __init__(self, secret: str, port: int | None = None) -> None:
        self.secret = secret
        self.url = f"http://127.0.0.1:{port or free_port()}/hook"
        self.statuses: list[int] = []
        self.hang = False
        self.received: list[Received] = []
        self._release = asyncio.Event()
        self._sdk = OpenAI(api_key="x", webhook_secret=secret)
        self._runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        return self

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._sdk.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        # Raises (so the dispatcher sees a 500 and the test never completes) on a bad
        # signature or a stale timestamp.
        event = self._sdk.webhooks.unwrap(body, headers)
        self.received.append(Received(headers, body, event))
        if self.hang:
            await self._release.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="busy" if status >= 500 else "")

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.received]


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SQLiteResponseStore]:
    store = SQLiteResponseStore(tmp_path / "db.sqlite3")
    await store.open()
    yield store
    await store.aclose()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def make(secret: str | None = None, port: int | None = None) -> Receiver:
        receiver = await Receiver(secret or new_secret(), port).start()
        started.append(receiver)
        return receiver

    yield make
    for receiver in started:
        await receiver.stop()


@pytest.fixture
async def dispatchers() -> AsyncIterator[Callable[..., Awaitable[WebhookDispatcher]]]:
    made: list[WebhookDispatcher] = []

    async def make(
        db: SQLiteResponseStore,
        endpoints: list[WebhookConfig],
        *,
        start: bool = True,
        retry_seconds: float = 60.0,
        **kwargs: Any,
    ) -> WebhookDispatcher:
        options = {**FAST, **kwargs}
        dispatcher = WebhookDispatcher(
            SQLiteWebhookStore(db), endpoints, retry_seconds=retry_seconds, **options
        )
        made.append(dispatcher)
        if start:
            await dispatcher.start()
        return dispatcher

    yield make
    for dispatcher in made:
        await dispatcher.aclose()


def endpoint(receiver: Receiver, **kwargs: Any) -> WebhookConfig:
    return WebhookConfig(url=receiver.url, secret=receiver.secret, **kwargs)


async def test_every_terminal_event_is_delivered_and_verifies_with_the_sdk(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    receiver = await receivers()
    dispatcher = await dispatchers(db, [endpoint(receiver)])
    kinds = {
        "response.completed": ResponseCompletedWebhookEvent,
        "response.failed": ResponseFailedWebhookEvent,
        "response.cancelled": ResponseCancelledWebhookEvent,
        "response.incomplete": ResponseIncompleteWebhookEvent,
    }
    before = int(time.time())
    sent = {}
    for i, event_type in enumerate(kinds):
        event_id = await dispatcher.notify(event_type, f"resp_{i}")
        assert event_id is not None and event_id.startswith("evt_")
        sent[event_id] = (event_type, f"resp_{i}")

    async def all_received() -> bool:
        return len(receiver.received) == len(kinds)

    await eventually(all_received)
    store = SQLiteWebhookStore(db)
    for got in receiver.received:
        event = got.event
        event_type, response_id = sent[event.id]
        assert isinstance(event, kinds[event_type])
        assert (event.type, event.data.id, event.object) == (event_type, response_id, "event")
        assert before <= event.created_at <= time.time()
        assert got.headers["webhook-id"] == event.id
        assert got.headers["content-type"] == "application/json"
        assert got.headers["webhook-signature"].startswith("v1,")
        row = await store.get(event.id, receiver.url)
        assert row is not None and row.body == got.body
        assert (row.state, row.attempts, row.last_error) == ("delivered", 1, None)


async def test_refused_twice_then_delivered_with_the_same_webhook_id(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    receiver = await receivers()
    receiver.statuses = [500, 500]
    dispatcher = await dispatchers(db, [endpoint(receiver)])
    event_id = await dispatcher.notify("response.completed", "resp_retry")
    store = SQLiteWebhookStore(db)

    async def delivered() -> bool:
        row = await store.get(event_id, receiver.url)
        return row is not None and row.state == "delivered"

    await eventually(delivered)
    assert receiver.ids() == [event_id] * 3  # each one signed validly (unwrap passed)
    assert {r.event.data.id for r in receiver.received} == {"resp_retry"}
    row = await store.get(event_id, receiver.url)
    assert row is not None
    assert row.attempts == 3
    assert row.last_error == "HTTP 500: busy"  # why the earlier attempts failed


async def test_endpoints_receive_only_the_events_they_subscribed_to(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    failures_only = await receivers()
    everything = await receivers()
    dispatcher = await dispatchers(
        db, [endpoint(failures_only, events=["response.failed"]), endpoint(everything)]
    )
    completed = await dispatcher.notify("response.completed", "resp_ok")
    failed = await dispatcher.notify("response.failed", "resp_bad")

    async def settled() -> bool:
        return len(everything.received) == 2 and len(failures_only.received) == 1

    await eventually(settled)
    await asyncio.sleep(0.1)  # nothing more arrives
    assert sorted(everything.ids()) == sorted([completed, failed])
    assert failures_only.ids() == [failed]
    assert failures_only.received[0].event.type == "response.failed"
    store = SQLiteWebhookStore(db)
    assert completed is not None
    assert await store.get(completed, failures_only.url) is None  # no row either

    nobody = await dispatchers(db, [endpoint(everything, events=["response.failed"])])
    assert await nobody.notify("response.cancelled", "resp_x") is None
    with pytest.raises(ValueError, match="not a webhook event type"):
        await nobody.notify("response.done", "resp_x")


async def test_notify_commits_before_returning(
    tmp_path: Path, db: SQLiteResponseStore, dispatchers: Any
) -> None:
    config = WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", secret=new_secret())
    dispatcher = await dispatchers(db, [config], start=False)
    event_id = await dispatcher.notify("response.completed", "resp_1")
    # Another connection on the file sees it: committed, not just buffered.
    other = SQLiteResponseStore(tmp_path / "db.sqlite3")
    await other.open()
    try:
        row = await SQLiteWebhookStore(other).get(event_id, config.url)
    finally:
        await other.aclose()
    assert row is not None
    assert (row.state, row.attempts) == ("pending", 0)
    assert row.expires_at - row.created_at == 60_000


async def test_pending_deliveries_survive_a_restart(
    tmp_path: Path, receivers: Any, dispatchers: Any
) -> None:
    path = tmp_path / "db.sqlite3"
    port = free_port()  # the receiver is down at first
    secret = new_secret()
    config = WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret=secret)

    first = SQLiteResponseStore(path)
    await first.open()
    dispatcher = await dispatchers(first, [config])
    event_id = await dispatcher.notify("response.incomplete", "resp_durable")
    store = SQLiteWebhookStore(first)

    async def refused_once() -> bool:
        row = await store.get(event_id, config.url)
        return row is not None and row.attempts >= 1

    await eventually(refused_once)
    await dispatcher.aclose()
    row = await store.get(event_id, config.url)
    assert row is not None and row.state == "pending"
    assert row.last_error is not None and "Connect" in row.last_error
    await first.aclose()

    receiver = await receivers(secret, port)
    second = SQLiteResponseStore(path)
    await second.open()
    restarted = await dispatchers(second, [config])
    try:

        async def received() -> bool:
            return len(receiver.received) == 1

        await eventually(received)
        event = receiver.received[0].event
        assert (event.id, event.type, event.data.id) == (
            event_id,
            "response.incomplete",
            "resp_durable",
        )
        row = await SQLiteWebhookStore(second).get(event_id, config.url)
        assert row is not None and row.state == "delivered"
    finally:
        await restarted.aclose()  # before its store closes
        await second.aclose()


async def test_a_post_cut_short_by_shutdown_is_sent_again(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    receiver = await receivers()
    receiver.hang = True
    first = await dispatchers(db, [endpoint(receiver)])
    event_id = await first.notify("response.completed", "resp_cut")

    async def arrived() -> bool:
        return len(receiver.received) == 1

    await eventually(arrived)
    await first.aclose()  # the POST was never answered
    store = SQLiteWebhookStore(db)
    row = await store.get(event_id, receiver.url)
    assert row is not None and (row.state, row.attempts) == ("pending", 0)

    receiver.hang = False
    await dispatchers(db, [endpoint(receiver)])

    async def delivered() -> bool:
        row = await store.get(event_id, receiver.url)
        return row is not None and row.state == "delivered"

    await eventually(delivered)
    assert receiver.ids() == [event_id, event_id]  # at least once


async def test_gives_up_when_the_retry_window_closes(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    receiver = await receivers()
    receiver.statuses = [503] * 1000
    dispatcher = await dispatchers(db, [endpoint(receiver)], retry_seconds=0.5)
    event_id = await dispatcher.notify("response.failed", "resp_gone")
    store = SQLiteWebhookStore(db)

    async def failed() -> bool:
        row = await store.get(event_id, receiver.url)
        return row is not None and row.state == "failed"

    await eventually(failed)
    row = await store.get(event_id, receiver.url)
    assert row is not None
    assert row.last_error == "HTTP 503: busy"
    assert row.attempts == len(receiver.received) >= 3
    # Backoff spaced the attempts out: no more than base, 5 * base, then cap-sized gaps.
    assert row.attempts <= 10
    await asyncio.sleep(0.3)
    assert len(receiver.received) == row.attempts  # and it stopped


async def test_a_dead_or_slow_endpoint_does_not_delay_the_others(
    db: SQLiteResponseStore, receivers: Any, dispatchers: Any
) -> None:
    slow = await receivers()
    slow.hang = True
    fast = await receivers()
    dead = WebhookConfig(url=f"http://127.0.0.1:{free_port()}/hook", secret=new_secret())
    dispatcher = await dispatchers(
        db, [endpoint(slow, timeout=30), dead, endpoint(fast)], concurrency=2
    )
    started = time.monotonic()
    ids = [await dispatcher.notify("response.completed", f"resp_{i}") for i in range(6)]

    async def fast_has_all() -> bool:
        return len(fast.received) == len(ids)

    await eventually(fast_has_all, within=5)
    assert time.monotonic() - started < 2
    assert sorted(fast.ids()) == sorted(ids)
    await asyncio.sleep(0.1)
    assert len(slow.received) == 2  # bounded: `concurrency` requests held open, no more
    rows = [await SQLiteWebhookStore(db).get(i, dead.url) for i in ids if i is not None]
    assert all(r is not None and r.state == "pending" and r.attempts >= 1 for r in rows)


def test_backoff_grows_from_base_to_cap_with_jitter() -> None:
    for attempts, nominal in [(1, 5), (2, 25), (3, 125), (4, 625), (5, 3125), (6, 3600)]:
        delay = backoff_delay(attempts, 5.0, 3600.0)
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert backoff_delay(10_000, 5.0, 3600.0) <= 3600 * 1.2
    assert len({backoff_delay(1, 5.0, 3600.0) for _ in range(20)}) > 1


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("c2VjcmV0", "must start with 'whsec_'"),
        ("whsec_not*base64", "not valid base64"),
        ("whsec_c2VjcmV", "not valid base64"),  # unpadded: the SDK could not decode it
        ("whsec_", "empty"),
    ],
)
def test_secrets_the_sdk_could_not_verify_are_refused(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookConfig(url="http://127.0.0.1:9/hook", secret=secret)
