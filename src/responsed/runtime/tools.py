"""Request tools and tool_choice → what the engine is offered.

Function tools follow the hosted Responses API's strict mode: `strict: true` parameters
must be in the Structured Outputs subset (a 400 naming the schema path otherwise);
`strict` left unset means "strict when the schema can be made so": every object is
closed and every property required, and the tool falls back to non-strict when that
is not enough; `strict: false` is passed on as it is.
"""

from __future__ import annotations

from typing import Any

from responsed.engines.base import FunctionSpec, ToolChoice
from responsed.protocol.errors import invalid_request
from responsed.protocol.request import (
    AllowedTools,
    ContextFields,
    FunctionChoice,
    FunctionTool,
)
from responsed.protocol.strict_schema import check_strict_schema, strict_normalized

__all__ = ["offered_tools"]


def offered_tools(request: ContextFields) -> tuple[list[FunctionSpec], ToolChoice]:
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
        functions.append(_function_spec(index, tool))
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


def _function_spec(index: int, tool: FunctionTool) -> FunctionSpec:
    if tool.strict:
        check_strict_schema(
            tool.parameters,
            param=f"tools[{index}].parameters",
            owner=f"function '{tool.name}'",
            code="invalid_function_parameters",
        )
        return FunctionSpec(tool.name, tool.description, tool.parameters, True)
    if tool.strict is None and tool.parameters is not None:
        normalized = strict_normalized(tool.parameters)
        if normalized is not None:
            return FunctionSpec(tool.name, tool.description, normalized, True)
    return FunctionSpec(tool.name, tool.description, tool.parameters, tool.strict)
