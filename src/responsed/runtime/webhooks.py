"""Signed, durable delivery of the hosted API's webhook events.

`notify` writes one outbox row per subscribed endpoint before it returns; a single loop
then POSTs due rows, signed per Standard Webhooks (`webhook-id` is the event id, the
same on every attempt; the timestamp and signature are fresh each time, since receivers
reject timestamps older than a few minutes). 2xx settles a row; anything else is
retried with exponential backoff until the row's retry window closes. Each endpoint has
its own in-flight slots, so a slow or dead endpoint only ever delays itself.

Delivery is at-least-once: a row whose POST was cut short by a shutdown or crash is
still pending and is sent again by the next process. One dispatcher per database: which
rows are in flight is known only in memory.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import orjson
import structlog
from standardwebhooks import Webhook

from responsed.config import WebhookConfig
from responsed.protocol.ids import new_id
from responsed.store.webhooks import Delivery, WebhookStore

__all__ = ["EVENT_TYPES", "WebhookDispatcher", "backoff_delay"]

log = structlog.get_logger(__name__)

EVENT_TYPES = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)

_BACKOFF_FACTOR = 5.0
_JITTER = 0.2  # ± this fraction, so a dead endpoint's backlog does not retry in lockstep
_ERROR_DETAIL_BYTES = 200  # of a refusal's body, kept in last_error
_PURGE_EVERY_MS = 3600 * 1000
_USER_AGENT = "responsed-webhooks/1"


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: base, 5 * base, 25 * base, …
    up to `cap`, each ±20%."""
    exponent = min(attempts - 1, 64)  # past that the cap applies anyway; no overflow
    delay = min(cap, base * _BACKOFF_FACTOR**exponent)
    return delay * random.uniform(1 - _JITTER, 1 + _JITTER)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class _Endpoint:
    config: WebhookConfig
    signer: Webhook
    events: frozenset[str]
    timeout: aiohttp.ClientTimeout
    in_flight: set[str] = field(default_factory=set)  # event ids being POSTed


class WebhookDispatcher:
    """Turns terminal background responses into signed POSTs to configured endpoints."""

    def __init__(
        self,
        store: WebhookStore,
        endpoints: Sequence[WebhookConfig],
        *,
        retry_seconds: float,
        backoff_base: float = 5.0,
        backoff_cap: float = 3600.0,
        concurrency: int = 4,
        poll_interval: float = 1.0,
    ) -> None:
        """`concurrency` bounds the POSTs in flight per endpoint; `poll_interval` is the
        longest the loop sleeps before looking for due rows it was not woken for."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._store = store
        self._endpoints: dict[str, _Endpoint] = {}
        for config in endpoints:
            if config.url in self._endpoints:  # deliveries are keyed by (event, url)
                raise ValueError(f"webhook url configured twice: {config.url}")
            signer = Webhook(config.signing_key())
            timeout = aiohttp.ClientTimeout(total=config.timeout)
            self._endpoints[config.url] = _Endpoint(
                config, signer, frozenset(config.events), timeout
            )
        self._retry_ms = int(retry_seconds * 1000)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._concurrency = concurrency
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._next_retry: float = math.inf  # ms: the earliest retry this process scheduled
        self._last_purge = 0
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start delivering, beginning with every row a previous process left pending."""
        if self._loop_task is not None or not self._endpoints:
            return
        connector = aiohttp.TCPConnector(limit=self._concurrency * len(self._endpoints))
        self._session = aiohttp.ClientSession(
            connector=connector, headers={"User-Agent": _USER_AGENT}
        )
        self._loop_task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def aclose(self) -> None:
        """Stop; POSTs cut short stay pending and are sent again after a restart."""
        loop_task, self._loop_task = self._loop_task, None
        tasks = [*self._tasks]
        if loop_task is not None:
            tasks.append(loop_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def notify(self, event_type: str, response_id: str) -> str | None:
        """Persist the event for every endpoint subscribed to `event_type`; the event
        id, or None when none is. The rows are committed when this returns."""
        if event_type not in EVENT_TYPES:
            raise ValueError(f"not a webhook event type: {event_type!r}")
        targets = [ep for ep in self._endpoints.values() if event_type in ep.events]
        if not targets:
            return None
        event_id = new_id("evt")
        now = time.time()
        body = orjson.dumps(
            {
                "id": event_id,
                "object": "event",
                "created_at": int(now),
                "type": event_type,
                "data": {"id": response_id},
            }
        )
        now_ms = int(now * 1000)
        expires = now_ms + self._retry_ms
        await self._store.enqueue(
            [
                Delivery(event_id, ep.config.url, body, "pending", 0, now_ms, expires, None, now_ms)
                for ep in targets
            ]
        )
        self._wake.set()
        return event_id

    # -- the loop ------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._dispatch_due()
                await self._maybe_purge()
            except Exception:  # the store failing must not end delivery for good
                log.exception("webhook dispatch failed")
            timeout = self._poll_interval
            if self._next_retry < math.inf:
                timeout = min(timeout, max(0.0, (self._next_retry - _now_ms()) / 1000))
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _dispatch_due(self) -> None:
        now = _now_ms()
        if self._next_retry <= now:
            self._next_retry = math.inf  # due now, so the queries below find it
        for ep in self._endpoints.values():
            free = self._concurrency - len(ep.in_flight)
            if free <= 0:
                continue
            # Rows in flight are still pending: ask for enough to skip past them. One that
            # settles while the read runs can come back stale; skipping every row that was
            # in flight when the read began keeps it from being sent twice.
            busy = set(ep.in_flight)
            rows = await self._store.due(now, free + len(busy), ep.config.url)
            for row in rows:
                if free == 0:
                    break
                if row.id in busy or row.id in ep.in_flight:
                    continue
                free -= 1
                ep.in_flight.add(row.id)
                task = asyncio.create_task(self._deliver(ep, row))
                self._tasks.add(task)
                task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()  # a slot is free

    async def _deliver(self, ep: _Endpoint, row: Delivery) -> None:
        try:
            error = await self._attempt(ep, row)
            now = _now_ms()
            if error is None:
                await self._store.mark_delivered(row.id, row.url)
            elif now >= row.expires_at:
                await self._store.mark_failed(row.id, row.url, error)
                log.warning("webhook delivery failed", url=row.url, id=row.id, error=error)
            else:
                delay = backoff_delay(row.attempts + 1, self._backoff_base, self._backoff_cap)
                # The last attempt falls on the deadline, so the whole window is used.
                next_at = min(row.expires_at, now + max(1, int(delay * 1000)))
                await self._store.mark_retry(row.id, row.url, next_at, error)
                self._next_retry = min(self._next_retry, next_at)
        except Exception:
            log.exception("webhook delivery bookkeeping failed", url=row.url, id=row.id)
            # The row is still due: hold the slot a while rather than resend in a loop.
            await asyncio.sleep(self._poll_interval)
        finally:
            ep.in_flight.discard(row.id)

    async def _attempt(self, ep: _Endpoint, row: Delivery) -> str | None:
        """POST once; None on 2xx, else why not."""
        assert self._session is not None
        timestamp = int(time.time())
        signature = ep.signer.sign(
            row.id, datetime.fromtimestamp(timestamp, tz=UTC), row.body.decode()
        )
        headers = {
            "Content-Type": "application/json",
            "webhook-id": row.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        try:
            async with self._session.post(
                row.url,
                data=row.body,
                headers=headers,
                timeout=ep.timeout,
                allow_redirects=False,  # 3xx is a refusal, as Standard Webhooks has it
            ) as response:
                if 200 <= response.status < 300:
                    return None
                detail = await response.content.read(_ERROR_DETAIL_BYTES)
                text = detail.decode(errors="replace").strip()
                return f"HTTP {response.status}: {text}" if text else f"HTTP {response.status}"
        except TimeoutError:
            return f"no response within {ep.config.timeout:g} s"
        except Exception as exc:  # unreachable, reset, bad URL, …: all retried alike
            return f"{type(exc).__name__}: {exc}"

    async def _maybe_purge(self) -> None:
        # Settled rows are kept one more retry window after theirs closed, then dropped,
        # so the table does not grow without bound.
        now = _now_ms()
        if now - self._last_purge < _PURGE_EVERY_MS:
            return
        self._last_purge = now
        await self._store.purge(now - self._retry_ms)
