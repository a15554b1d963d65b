"""Request tools and tool_choice → what the engine is offered.

Function tools follow the hosted Responses API's strict mode: `strict: true` parameters
must be in the Structured Outputs subset (a 400 naming the schema path otherwise);
`strict` left unset means "strict when the schema can be made so": every object is
closed and every property required, and the tool falls back to non-strict when that
is not enough; `strict: false` is passed on as it is.
"""

from __future__ import annotations

from collections.abc import Callable
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
from responsed.tools.base import HostedTool

__all__ = ["MakeHosted", "Offered", "offered_tools"]

# (index in `tools`, the tool's fields) → the hosted tool, or None if not available here
MakeHosted = Callable[[int, dict[str, Any]], HostedTool | None]
# functions for the engine, its tool choice, and the hosted tools by function name
Offered = tuple[list[FunctionSpec], ToolChoice, dict[str, HostedTool]]


def offered_tools(request: ContextFields, make_hosted: MakeHosted | None = None) -> Offered:
    """Function tools the engine may call and the choice that constrains them.

    Hosted tools `make_hosted` knows are offered as functions the server runs itself;
    other hosted tool types are refused with a clear 400 rather than silently dropped.
    """
    functions: list[FunctionSpec] = []
    hosted: dict[str, HostedTool] = {}
    for index, tool in enumerate(request.tools or []):
        if isinstance(tool, FunctionTool):
            functions.append(_function_spec(index, tool))
            continue
        made = make_hosted(index, tool.model_dump()) if make_hosted is not None else None
        if made is None:
            raise invalid_request(
                f"Tool type '{tool.type}' is not supported by this server yet.",
                param=f"tools[{index}].type",
                code="unsupported_value",
            )
        if made.name in hosted:
            raise invalid_request(
                f"Only one '{tool.type}' tool may be given.", param=f"tools[{index}]"
            )
        hosted[made.name] = made
        functions.append(FunctionSpec(made.name, made.description, made.parameters, True))
    names = {f.name for f in functions}
    choice: Any = request.tool_choice or "auto"
    if isinstance(choice, str):
        if choice == "required" and not functions:
            raise invalid_request(
                "Tool choice 'required' must be specified with 'tools' parameter.",
                param="tool_choice",
            )
        return (functions if choice != "none" else []), choice, hosted
    if isinstance(choice, FunctionChoice):
        if choice.name not in names:
            raise invalid_request(
                f"Tool choice '{choice.name}' not found in 'tools' parameter.",
                param="tool_choice",
            )
        return functions, choice.name, hosted
    if isinstance(choice, AllowedTools):
        allowed = {str(t.get("name")) for t in choice.tools if t.get("type") == "function"}
        unknown = allowed - names
        if unknown:
            raise invalid_request(
                f"Tool '{sorted(unknown)[0]}' in allowed_tools not found in 'tools' parameter.",
                param="tool_choice.tools",
            )
        kinds = {str(t.get("type")) for t in choice.tools}  # {"type": "file_search"}, …
        subset = [
            f
            for f in functions
            if f.name in allowed
            or (f.name in hosted and hosted[f.name].item_type.removesuffix("_call") in kinds)
        ]
        return subset, choice.mode, hosted
    forced = next((t for t in hosted.values() if t.item_type == f"{choice.type}_call"), None)
    if forced is not None:  # {"type": "file_search"}: the model must call it
        return functions, forced.name, hosted
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
