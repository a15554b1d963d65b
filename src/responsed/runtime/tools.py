"""Request tools and tool_choice → what the engine is offered."""

from __future__ import annotations

from typing import Any

from responsed.engines.base import FunctionSpec, ToolChoice
from responsed.protocol.errors import invalid_request
from responsed.protocol.request import (
    AllowedTools,
    CreateResponseRequest,
    FunctionChoice,
    FunctionTool,
)

__all__ = ["offered_tools"]


def offered_tools(request: CreateResponseRequest) -> tuple[list[FunctionSpec], ToolChoice]:
    """Function tools the engine may call and the choice that constrains them.

    Hosted tool types are refused with a clear 400 until they are implemented, rather
    than silently dropped.
    """
    functions: list[FunctionSpec] = []
    for index, tool in enumerate(request.tools or []):
        if not isinstance(tool, FunctionTool):
            raise invalid_request(
                f"Tool type '{tool.type}' is not supported by this server yet.",
                param=f"tools[{index}].type",
                code="unsupported_value",
            )
        functions.append(FunctionSpec(tool.name, tool.description, tool.parameters, tool.strict))
    names = {f.name for f in functions}
    choice: Any = request.tool_choice or "auto"
    if isinstance(choice, str):
        if choice == "required" and not functions:
            raise invalid_request(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                param="tool_choice",
            )
        return (functions if choice != "none" else []), choice
    if isinstance(choice, FunctionChoice):
        if choice.name not in names:
            raise invalid_request(
                f"Tool choice '{choice.name}' not found in 'tools' parameter.",
                param="tool_choice",
            )
        return functions, choice.name
    if isinstance(choice, AllowedTools):
        allowed = {str(t.get("name")) for t in choice.tools if t.get("type") == "function"}
        unknown = allowed - names
        if unknown:
            raise invalid_request(
                f"Tool '{sorted(unknown)[0]}' in allowed_tools not found in 'tools' parameter.",
                param="tool_choice.tools",
            )
        subset = [f for f in functions if f.name in allowed]
        return subset, choice.mode
    raise invalid_request(
        f"Tool choice type '{choice.type}' is not supported by this server yet.",
        param="tool_choice",
        code="unsupported_value",
    )
