"""`text.format` → the engine's Chat Completions `response_format`.

A `json_schema` format with `strict: true` must be in the Structured Outputs subset, as
on the hosted API (a 400 naming the schema path otherwise); a non-strict one (`strict`
false or absent, the Responses API's default for `text.format`) is passed on unchecked.
"""

from __future__ import annotations

from typing import Any

from responsed.protocol.errors import invalid_request
from responsed.protocol.request import ContextFields
from responsed.protocol.strict_schema import check_strict_schema

__all__ = ["response_format"]


def response_format(request: ContextFields) -> dict[str, Any] | None:
    fmt = request.text.format if request.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if not fmt.name or fmt.schema_ is None:
        missing = "text.format.name" if not fmt.name else "text.format.schema"
        raise invalid_request(
            f"Missing required parameter: '{missing}'.",
            param=missing,
            code="missing_required_parameter",
        )
    if fmt.strict:
        check_strict_schema(
            fmt.schema_, param="text.format.schema", owner=f"response_format '{fmt.name}'"
        )
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
    if fmt.description:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}
