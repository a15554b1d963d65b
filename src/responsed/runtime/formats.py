"""`text.format` → the engine's Chat Completions `response_format`."""

from __future__ import annotations

from typing import Any

from responsed.protocol.errors import invalid_request
from responsed.protocol.request import CreateResponseRequest

__all__ = ["response_format"]


def response_format(request: CreateResponseRequest) -> dict[str, Any] | None:
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
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
    if fmt.description:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}
