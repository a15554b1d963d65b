"""Turn pydantic validation errors into the hosted API's error messages and codes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from responsed.protocol.errors import APIError, invalid_request

__all__ = ["param_path", "parse_body"]

M = TypeVar("M", bound=BaseModel)

_TYPE_NAMES = {
    "string": "a string",
    "int": "an integer",
    "float": "a decimal",
    "bool": "a boolean",
    "dict": "an object",
    "list": "an array",
    "model": "an object",
}


# Union branches appear in locations under their type names; they are not parameters.
_TYPE_SEGMENTS = frozenset({"str", "int", "float", "bool", "dict", "list", "literal", "none"})


# pydantic's bound violations → the hosted API's error codes
_BOUND_CODES = {
    "greater_than_equal": "integer_below_min_value",
    "greater_than": "integer_below_min_value",
    "less_than_equal": "integer_above_max_value",
    "less_than": "integer_above_max_value",
    "string_too_long": "string_above_max_length",
    "too_long": "array_above_max_length",
    "string_too_short": "string_below_min_length",
    "too_short": "array_below_min_length",
}


def param_path(loc: tuple[int | str, ...]) -> str:
    """('input', 'list[...]', 0, '@message', 'content') → 'input[0].content'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("@") or "[" in part or "-" in part or part in _TYPE_SEGMENTS:
            continue
        else:
            out += f".{part}" if out else part
    return out


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _pick(errors: list[ErrorDetails]) -> ErrorDetails:
    """Unions report one error per branch; the deepest location is the most telling."""
    return max(
        errors, key=lambda e: len([p for p in e["loc"] if isinstance(p, int)]) * 10 + len(e["loc"])
    )


def _to_api_error(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False)
    err = _pick(errors)
    kind = err["type"]
    param = param_path(err["loc"]) or None
    if kind == "json_invalid":
        return invalid_request(
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload, but what was sent was not valid JSON.)",
        )
    if kind == "missing":
        return invalid_request(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind == "extra_forbidden":
        return invalid_request(
            f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter"
        )
    if kind == "model_type" and not err["loc"]:
        return invalid_request("The request body must be a JSON object.", code="invalid_type")
    if kind.endswith(("_type", "_parsing")) or kind == "model_attributes_type":
        expected = _TYPE_NAMES.get(
            kind.removesuffix("_type").removesuffix("_parsing"), "another type"
        )
        return invalid_request(
            f"Invalid type for '{param}': expected {expected}, but got {_got(err.get('input'))} "
            "instead.",
            param=param,
            code="invalid_type",
        )
    if kind in ("literal_error", "enum", "invalid_value", "union_tag_invalid"):
        return invalid_request(
            f"Invalid value for '{param}': {err['msg']}.", param=param, code="invalid_value"
        )
    if kind in _BOUND_CODES:
        return invalid_request(
            f"Invalid '{param}': {err['msg'].lower()}.", param=param, code=_BOUND_CODES[kind]
        )
    msg = err["msg"].removeprefix("Value error, ")
    return invalid_request(f"Invalid '{param}': {msg}", param=param, code="invalid_value")


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a raw JSON body strictly; raise the matching 400 APIError."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _to_api_error(exc) from None
