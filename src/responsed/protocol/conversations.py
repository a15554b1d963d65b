"""`/v1/conversations` request bodies and query checks, with the hosted API's limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict

from responsed.protocol.errors import invalid_request
from responsed.protocol.items import InputItem
from responsed.protocol.request import INCLUDABLE, Metadata, check_metadata

__all__ = [
    "MAX_ITEMS_PER_CALL",
    "CreateConversationRequest",
    "CreateItemsRequest",
    "UpdateConversationRequest",
    "check_include",
    "check_item_count",
    "check_list_query",
]

MAX_ITEMS_PER_CALL = 20
"""Items one create call may add (the SDK: "You may add up to 20 items at a time")."""

LimitedMetadata = Annotated[Metadata, AfterValidator(check_metadata)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateConversationRequest(_Strict):
    """`POST /v1/conversations`."""

    items: list[InputItem] | None = None
    metadata: LimitedMetadata | None = None


class UpdateConversationRequest(_Strict):
    """`POST /v1/conversations/{id}`: `metadata` is required (null clears it)."""

    metadata: LimitedMetadata | None


class CreateItemsRequest(_Strict):
    """`POST /v1/conversations/{id}/items`."""

    items: list[InputItem]


def check_item_count(items: Sequence[Any], *, allow_empty: bool) -> None:
    """The hosted array-length errors, worded and coded as the hosted API words them."""
    if len(items) > MAX_ITEMS_PER_CALL:
        raise invalid_request(
            f"Invalid 'items': array too long. Expected an array with maximum length "
            f"{MAX_ITEMS_PER_CALL}, but got an array with length {len(items)} instead.",
            param="items",
            code="array_above_max_length",
        )
    if not items and not allow_empty:
        raise invalid_request(
            "Invalid 'items': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="items",
            code="empty_array",
        )


def _supported(values: Sequence[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def check_include(include: Sequence[str] | None) -> None:
    """`include` values are checked (a typo is a 400) though none changes an item yet."""
    for index, value in enumerate(include or ()):
        if value not in INCLUDABLE:
            raise invalid_request(
                f"Invalid value: '{value}'. Supported values are: {_supported(INCLUDABLE)}.",
                param=f"include[{index}]",
                code="invalid_value",
            )


def check_list_query(limit: int, order: str) -> None:
    if limit < 1:
        raise invalid_request(
            f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got "
            f"{limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > 100:
        raise invalid_request(
            f"Invalid 'limit': integer above maximum value. Expected a value <= 100, but got "
            f"{limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    if order not in ("asc", "desc"):
        raise invalid_request(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
