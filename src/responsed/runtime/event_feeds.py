"""Followers of background responses' event logs in this process.

A follower reads the stored log after its cursor, then takes the batches the writer
hands over once they are durable (`publish`), without reading them back; a gap or a
quiet spell (events written by another process) sends it back to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from responsed.runtime.translator import Event
from responsed.store.base import ResponseStore
from responsed.store.jobs import JobStore

__all__ = ["TERMINAL_EVENTS", "TERMINAL_STATUSES", "EventFeeds"]

TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
TERMINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})
_POLL = 1.0  # s; followers also re-read the log this often (other replicas write it)

Key = tuple[str, str]  # (project_id, response_id)


class EventFeeds:
    def __init__(self, jobs: JobStore, responses: ResponseStore) -> None:
        self.jobs = jobs
        self.responses = responses
        self._feeds: dict[Key, set[_Feed]] = {}

    def publish(self, key: Key, events: list[Event], *, ended: bool = False) -> None:
        """Hand events just made durable to this process's followers (no re-read)."""
        # At the end the feeds are dropped here: a stream that was never iterated (its
        # client left before the first byte) does not keep its batches alive.
        feeds = self._feeds.pop(key, ()) if ended else self._feeds.get(key, ())
        for feed in feeds:
            if events:
                feed.batches.append(events)
            feed.ended |= ended
            feed.ready.set()

    def follow(
        self, key: Key, cursor: int, first: list[Event] | None = None
    ) -> AsyncIterator[Event]:
        """The log after `cursor`, then live events to the end. Subscribed at once (not
        when iteration starts), so a stream opened with `submit` misses nothing; `first`:
        the events known to be at the start of the log, read instead of the log."""
        feed = _Feed()
        self._feeds.setdefault(key, set()).add(feed)
        return self._follow(key, cursor, feed, first)

    async def _follow(
        self, key: Key, cursor: int, feed: _Feed, first: list[Event] | None
    ) -> AsyncIterator[Event]:
        """An event is in the first read, in a published batch, or both (duplicates are
        skipped by sequence number). A batch that would leave a gap, and a quiet spell
        (events written by another process), send the follower back to the log."""
        try:
            events = first if first is not None else await self.jobs.events(*key, cursor)
            while True:
                for event in events:
                    number = event["sequence_number"]
                    if number <= cursor:
                        continue
                    if number != cursor + 1:
                        break  # missed a batch: the log has it
                    yield event
                    cursor = number
                    if event["type"] in TERMINAL_EVENTS:
                        return
                else:
                    if feed.batches:
                        events = [e for batch in feed.batches for e in batch]
                        feed.batches.clear()
                        continue
                    if not feed.ended:
                        feed.ready.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(feed.ready.wait(), _POLL)
                        if feed.batches or feed.ended:
                            continue
                    events = await self.jobs.events(*key, cursor)
                    if events:
                        continue
                    # Nothing new: the end, if the response is over (cancelled ones have
                    # no terminal event) or gone.
                    body = await self.responses.get_response(*key)
                    if body is None or body["status"] in TERMINAL_STATUSES:
                        for event in await self.jobs.events(*key, cursor):
                            yield event
                        return
                    continue
                events = await self.jobs.events(*key, cursor)
        finally:
            feeds = self._feeds.get(key)
            if feeds is not None:
                feeds.discard(feed)
                if not feeds:
                    del self._feeds[key]


class _Feed:
    """One follower's inbox of published batches."""

    __slots__ = ("batches", "ended", "ready")

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []
        self.ended = False
        self.ready = asyncio.Event()
