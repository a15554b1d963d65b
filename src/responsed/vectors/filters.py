"""The hosted attribute filters, compiled to SQL over a JSON `attributes` column.

Comparison: {"type": eq|ne|gt|gte|lt|lte|in|nin, "key", "value"}; compound:
{"type": and|or, "filters": [...]}. Types compare strictly: a string never equals a
number, and gt/gte/lt/lte match only attributes of the value's type (numbers with
numbers, strings by code point). An attribute that is missing matches `ne` and `nin`
only. Booleans are stored by SQLite's JSON as 1/0, so `true` also equals the number 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["FilterError", "compile_filter"]

_ORDER = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
_NUMBER_TYPES = "('integer', 'real')"


class FilterError(ValueError):
    pass


def compile_filter(spec: Mapping[str, Any] | None, column: str) -> tuple[str, list[Any]]:
    """(SQL boolean expression, parameters) for `spec` over the JSON text `column`."""
    if spec is None:
        return "1", []
    params: list[Any] = []
    return _compile(spec, column, params, "filters"), params


def _compile(spec: Any, column: str, params: list[Any], where: str) -> str:
    if not isinstance(spec, Mapping):
        raise FilterError(f"Invalid '{where}': expected an object.")
    kind = spec.get("type")
    if kind in ("and", "or"):
        parts = spec.get("filters")
        if not isinstance(parts, list) or not parts:
            raise FilterError(f"Invalid '{where}.filters': expected a non-empty array.")
        sqls = [_compile(p, column, params, f"{where}.filters[{i}]") for i, p in enumerate(parts)]
        return "(" + f" {kind.upper()} ".join(sqls) + ")"
    if kind not in ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"):
        raise FilterError(f"Invalid '{where}.type': unknown filter type {kind!r}.")
    key = spec.get("key")
    if not isinstance(key, str) or not key or '"' in key or "\\" in key:
        raise FilterError(f"Invalid '{where}.key': expected an attribute name.")
    value = spec.get("value")
    path = f'$."{key}"'
    attr = f"json_extract({column}, ?)"
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(_scalar(v) for v in value):
            raise FilterError(f"Invalid '{where}.value': expected an array of scalars.")
        if not value:
            return "0" if kind == "in" else "1"
        params.append(path)
        params.extend(_sql_value(v) for v in value)
        marks = ", ".join("?" * len(value))
        if kind == "in":
            return f"({attr} IN ({marks}))"
        # A missing attribute is not in the list.
        return f"(coalesce({attr} NOT IN ({marks}), 1))"
    if not _scalar(value):
        raise FilterError(f"Invalid '{where}.value': expected a string, number or boolean.")
    if kind == "eq":
        params.extend((path, _sql_value(value)))
        return f"({attr} IS ?)"
    if kind == "ne":
        params.extend((path, _sql_value(value)))
        return f"({attr} IS NOT ?)"
    # Ordering: only against attributes of the same JSON type (SQLite would otherwise
    # order every number before every string).
    types = "('text')" if isinstance(value, str) else _NUMBER_TYPES
    params.extend((path, path, _sql_value(value)))
    return f"(json_type({column}, ?) IN {types} AND {attr} {_ORDER[kind]} ?)"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value
