"""Background responses: a durable queue, a bounded worker pool, cancellation, recovery
after a crash, and replay of the persisted event log from any cursor.

A submitted response is stored `queued` with its first two events and a job row in one
transaction, then returned. A worker claims the job under a lease it renews while
running; events are written as they are produced (those of one loop tick in one
transaction) and followers are woken after each write, so nobody ever sees an event
that a crash could lose. A job whose lease lapsed belongs to a dead process: it is
failed from its event log, or run again (`background_recovery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import orjson
import structlog

from responsed.protocol.errors import APIError, invalid_request
from responsed.protocol.ids import new_id
from responsed.protocol.request import CreateResponseRequest
from responsed.protocol.response import new_response
from responsed.protocol.validation import parse_body
from responsed.runtime.event_feeds import TERMINAL_STATUSES, EventFeeds
from responsed.runtime.event_log import close_interrupted
from responsed.runtime.run import ResponseRun
from responsed.runtime.service import ResponseService
from responsed.runtime.translator import Event
from responsed.store.base import ResponseRecord
from responsed.store.jobs import Job, JobStore

__all__ = ["BackgroundRunner"]

log = structlog.get_logger(__name__)

_STOPPED = "The server stopped while this response was in progress."
_SERVER_ERROR = "The server had an error while running this response."

Key = tuple[str, str]  # (project_id, response_id)
Notify = Callable[[str, str], Awaitable[object]]  # (event type, response id)


def _ms() -> int:
    return int(time.time() * 1000)


class _EventWriter:
    """Writes a run's events to the log, the events of one loop tick in one transaction,
    and wakes followers once they are durable."""

    def __init__(self, runner: BackgroundRunner, run: ResponseRun) -> None:
        self.runner = runner
        self.run = run
        self.key: Key = (run.project_id, run.response["id"])
        self.pending: list[Event] = []
        self.persisted = run.resume_at - 1
        self._flushing: asyncio.Task[None] | None = None

    def add(self, event: Event) -> None:
        if event["sequence_number"] <= self.persisted:
            return  # written by `finish` with the response it ends
        self.pending.append(event)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        await asyncio.sleep(0)  # gather what the run produces in this tick
        while self.pending:  # more may arrive while a write is awaited
            events, self.pending = self.pending, []
            # The run's start is where the stored status becomes in_progress.
            started = any(e["type"] == "response.in_progress" for e in events)
            record = self.run.record() if started else None
            if not await self.runner.jobs.append(*self.key, events, record):
                self.runner.abandon(self.key)  # deleted meanwhile: stop generating
                return
            self.persisted = events[-1]["sequence_number"]
            self.runner.feeds.publish(self.key, events)

    async def drain(self) -> None:
        if self._flushing is not None:
            await self._flushing
        await self.flush()

    async def finish(self, record: ResponseRecord, closing: list[Event]) -> bool:
        await self.drain()
        if not await self.runner.jobs.finish(record, closing):
            return False
        if closing:
            self.persisted = closing[-1]["sequence_number"]
        self.runner.feeds.publish(self.key, closing, ended=True)
        return True


class BackgroundRunner:
    def __init__(
        self,
        service: ResponseService,
        jobs: JobStore,
        *,
        lease_seconds: float = 10.0,
        recovery: Literal["fail", "restart"] = "fail",
        notify: Notify | None = None,
    ) -> None:
        self.service = service
        self.jobs = jobs
        self.lease_ms = int(lease_seconds * 1000)
        self.recovery = recovery
        self.notify = notify
        self.owner = uuid.uuid4().hex
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._runs: dict[Key, ResponseRun] = {}  # prepared at submission, not yet started
        self._cancelling: set[Key] = set()  # asked to cancel by a client
        self._ended: set[Key] = set()  # terminal and stored, while its task winds down
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.feeds = EventFeeds(jobs, service.store)  # followers in this process
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover()
        self._heartbeat = asyncio.create_task(self._beat())

    async def aclose(self) -> None:
        """Stop without finishing anything: running jobs keep their rows, their leases
        are released, and the next process recovers them (`background_recovery`)."""
        self._closing = True
        tasks = [t for t in (self._heartbeat, *self._tasks.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.jobs.release(self.owner)

    async def _beat(self) -> None:
        last_scan = time.monotonic()
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                flagged = await self.jobs.renew(self.owner, _ms() + self.lease_ms)
                for key in flagged:  # cancel asked on another replica
                    self._cancel_local(key)
                if time.monotonic() - last_scan >= self.lease_ms / 1000:
                    last_scan = time.monotonic()
                    await self._recover()
            except Exception as exc:  # a store hiccup must not end the heartbeat
                log.warning("background heartbeat failed", error=str(exc))

    async def _recover(self) -> None:
        """Run queued jobs no worker here holds, and end or restart orphaned ones."""
        for job in await self.jobs.pending(_ms()):
            key = (job.project_id, job.response_id)
            if key not in self._tasks:
                self._spawn(key, job.model, job)

    # -- submission -------------------------------------------------------------------

    async def submit(
        self, request: CreateResponseRequest, raw: bytes, project_id: str
    ) -> tuple[dict[str, Any], AsyncIterator[Event] | None]:
        """Store the response `queued` and return it (and its live stream when the
        request streams); a worker runs it."""
        response = new_response(
            request, response_id=new_id("resp"), created_at=int(time.time()), status="queued"
        )
        run = await self.service.prepare_run(request, project_id, response)
        run.resume_at = 2
        first: list[Event] = [
            {"type": "response.created", "sequence_number": 0, "response": _copy(response)},
            {"type": "response.queued", "sequence_number": 1, "response": _copy(response)},
        ]
        # The job keeps the input as normalized, so a run prepared again after a restart
        # has the same item ids as the stored input (and the conversation it extends).
        body = orjson.loads(raw)
        body["input"] = run.input_items
        await self.jobs.enqueue(run.record(), request.model, orjson.dumps(body), first)
        key = (project_id, response["id"])
        self._runs[key] = run
        stream = self.feeds.follow(key, -1, first) if request.stream else None
        self._spawn(key, request.model, None)
        queued: dict[str, Any] = first[0]["response"]
        return queued, stream

    def _spawn(self, key: Key, model: str, job: Job | None) -> None:
        task = asyncio.create_task(self._work(key, model, job))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._forget(key))

    def _forget(self, key: Key) -> None:
        self._tasks.pop(key, None)
        self._runs.pop(key, None)
        self._cancelling.discard(key)
        self._ended.discard(key)

    def _slot(self, model: str) -> asyncio.Semaphore:
        slot = self._slots.get(model)
        if slot is None:
            config = self.service.models.configs.get(model)
            limit = config.background_concurrency if config else None
            if limit is None:
                limit = config.instances if config and config.engine == "llamacpp" else 4
            slot = self._slots[model] = asyncio.Semaphore(limit)
        return slot

    # -- running ----------------------------------------------------------------------

    async def _work(self, key: Key, model: str, job: Job | None) -> None:
        try:
            async with self._slot(model):
                now = _ms()
                if not await self.jobs.claim(*key, self.owner, now, now + self.lease_ms):
                    return  # finished, cancelled, or another replica holds it
                if job is not None and job.state == "running":
                    if self.recovery == "fail":
                        await self._end_from_log(key, "failed")
                        return
                    await self.jobs.reset(*key)  # "restart": from the top, same id
                await self._execute(key, job)
        except asyncio.CancelledError:
            # Cancelled before the run could store its own end (still queued, or being
            # prepared): end it from its log. Shutting down: leave it for recovery.
            if key in self._cancelling and key not in self._ended:
                await asyncio.shield(self._end_from_log(key, "cancelled"))
            raise
        except Exception as exc:
            log.exception("background job failed", response_id=key[1], exc_info=exc)
            if key not in self._ended:
                with contextlib.suppress(Exception):
                    await self._end_from_log(key, "failed", _SERVER_ERROR)

    async def _execute(self, key: Key, job: Job | None) -> None:
        run = self._runs.pop(key, None)
        if run is None:  # prepared again from the stored request (after a restart)
            assert job is not None
            response = await self.service.retrieve(*key)
            response["status"] = "queued"
            response["output"] = []
            try:
                request = parse_body(CreateResponseRequest, job.request)
                run = await self.service.prepare_run(request, key[0], response)
            except APIError as exc:
                await self._end_from_log(key, "failed", exc.message)
                return
            run.resume_at = 2
        writer = _EventWriter(self, run)
        run.finalize = self._finalizer(writer)
        while True:
            try:
                await run.start()
                break
            except APIError as exc:
                if exc.status != 429:  # a refusal the create call could not foresee
                    await self._end_from_log(key, "failed", exc.message)
                    return
                await asyncio.sleep(float((exc.headers or {}).get("Retry-After", 1)))
        async for event in run.events():
            writer.add(event)

    def _finalizer(self, writer: _EventWriter) -> Callable[[ResponseRecord, list[Event]], Any]:
        async def finalize(record: ResponseRecord, closing: list[Event]) -> None:
            key = (record.project_id, record.id)
            if self._closing and key not in self._cancelling:
                return  # shutting down: leave the job to the next process
            self._ended.add(key)
            if await writer.finish(record, closing):
                await self._notify(record.status, record.id)

        return finalize

    async def _end_from_log(self, key: Key, status: str, message: str = _STOPPED) -> None:
        """End a response from its event log: the open item closed as incomplete, then
        `response.failed` (or nothing more, when cancelled)."""
        events = await self.jobs.events(*key, -1)
        closing, final = close_interrupted(events, status, message)
        self._ended.add(key)
        if await self.jobs.finish(_record(key, final), closing):
            self.feeds.publish(key, closing, ended=True)
            await self._notify(status, key[1])

    async def _notify(self, status: str, response_id: str) -> None:
        if self.notify is not None:
            try:
                await self.notify(f"response.{status}", response_id)
            except Exception as exc:  # the response is stored; a lost hook is logged
                log.warning("webhook enqueue failed", response_id=response_id, error=str(exc))

    # -- cancel -----------------------------------------------------------------------

    def abandon(self, key: Key) -> None:
        """Stop a local run without storing anything (its response was deleted)."""
        task = self._tasks.get(key)
        if task is not None:
            self._ended.add(key)
            task.cancel()

    def _cancel_local(self, key: Key) -> bool:
        task = self._tasks.get(key)
        if task is None:
            return False
        self._cancelling.add(key)
        task.cancel()
        return True

    async def cancel(self, project_id: str, response_id: str) -> dict[str, Any]:
        key = (project_id, response_id)
        body = await self.service.retrieve(*key)
        if not body.get("background"):
            raise invalid_request("Cannot cancel a synchronous response.", param="response_id")
        if body["status"] in TERMINAL_STATUSES:
            return body  # idempotent; a finished response is returned unchanged
        task = self._tasks.get(key)
        if self._cancel_local(key) and task is not None:
            await asyncio.wait([task])
            return await self.service.retrieve(*key)
        job = await self.jobs.request_cancel(*key)
        if job is not None and job.state == "queued":
            await self._end_from_log(key, "cancelled")
        # Running on another replica: its heartbeat sees the flag and stops it.
        deadline = time.monotonic() + 3 * self.lease_ms / 1000
        while True:
            body = await self.service.retrieve(*key)
            if body["status"] in TERMINAL_STATUSES or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.05)

    # -- following --------------------------------------------------------------------

    async def stream(
        self, project_id: str, response_id: str, after: int | None
    ) -> AsyncIterator[Event]:
        """Check, then return the event stream from `after` + 1 (errors before the first
        byte are HTTP errors)."""
        body = await self.service.retrieve(project_id, response_id)
        if not body.get("background"):
            raise invalid_request(
                "Only responses created with background=true can be streamed again.",
                param="stream",
            )
        return self.feeds.follow((project_id, response_id), -1 if after is None else after)


def _copy(response: dict[str, Any]) -> dict[str, Any]:
    return {**response, "output": list(response["output"])}


def _record(key: Key, body: dict[str, Any]) -> ResponseRecord:
    """A record updating a stored response (input items were written when it was queued)."""
    return ResponseRecord(
        id=key[1],
        project_id=key[0],
        previous_response_id=body.get("previous_response_id"),
        created_at=body["created_at"],
        status=body["status"],
        body=body,
    )
