"""Narrow repository protocols for persisted state; SQL never leaves `store/`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["DEFAULT_PROJECT", "ItemPage", "ResponseRecord", "ResponseStore"]

DEFAULT_PROJECT = "proj_default"
"""Every stored object belongs to a project; one default project until multi-tenancy."""

Item = dict[str, Any]


@dataclass(slots=True)
class ResponseRecord:
    """One stored response: its wire object plus the items it read.

    `body` is the full Response object as returned to clients (its `output` holds the
    output items). `input_items` are this turn's input items, each with an `id`.
    """

    id: str
    project_id: str
    previous_response_id: str | None
    created_at: int
    status: str
    body: dict[str, Any]
    input_items: list[Item] = field(default_factory=list)
    # What the model was sent when it was not the whole context (truncation="auto"):
    # {"dropped_items": N}, the number of oldest context items left out.
    sent: dict[str, Any] | None = None
    # The conversation this response belongs to: when it completes (or is incomplete),
    # its input and output items are appended to it in the same transaction.
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemPage:
    data: list[Item]
    has_more: bool


class ResponseStore(Protocol):
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def aclose(self) -> None: ...

    async def put_response(self, record: ResponseRecord) -> None:
        """Insert the response, or update body/status of an existing one.

        Input items are written only on first insert; output items are (re)written from
        `body["output"]` on every call.
        """

    async def get_response(self, project_id: str, response_id: str) -> dict[str, Any] | None: ...

    async def get_sent(self, project_id: str, response_id: str) -> dict[str, Any] | None:
        """`ResponseRecord.sent` of a stored response (None: the whole context, or no
        such response)."""

    async def delete_response(self, project_id: str, response_id: str) -> bool: ...

    async def list_input_items(
        self,
        project_id: str,
        response_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> ItemPage | None:
        """A page of the response's input items; None if the response does not exist."""

    async def chain_items(self, project_id: str, response_id: str) -> list[Item] | None:
        """Input and output items of the whole `previous_response_id` chain ending at
        `response_id`, oldest first, fetched in a constant number of queries.
        None if `response_id` does not exist."""
