"""Structured Outputs' strict JSON Schema subset, checked the way the hosted API does.
(Over 400 lines: one walker carries every rule, limit and message of the subset.)

`check_strict_schema` refuses a schema outside the subset with the hosted API's 400
(`Invalid schema for response_format 'X': In context=('properties', 'a'), ...`): the
root is an object, every object closes `additionalProperties` and lists every property
in `required`, only the supported keywords appear, and the size limits hold.
`strict_normalized` is what the Responses API does with a function tool that leaves
`strict` unset: close every object and require every property, or give up (the tool is
then non-strict). `validate_output` checks model output against a schema.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped]

from responsed.protocol.errors import invalid_request

__all__ = [
    "MAX_DEPTH",
    "MAX_ENUM_VALUES",
    "MAX_PROPERTIES",
    "MAX_STRING_LENGTH",
    "SUPPORTED_FORMATS",
    "check_strict_schema",
    "strict_normalized",
    "strict_problem",
    "validate_output",
]

# Limits from the Structured Outputs guide ("Supported schemas").
MAX_PROPERTIES = 5000  # object properties in the whole schema
MAX_DEPTH = 10  # objects nested inside the root object
MAX_STRING_LENGTH = 120_000  # property, definition, enum and const names/values together
MAX_ENUM_VALUES = 1000  # enum values across the whole schema
_MAX_LEVELS = 100  # subschemas inside subschemas: bounds the walk's recursion
_LONG_ENUM = 250  # a string enum with more values than this …
_LONG_ENUM_LENGTH = 15_000  # … may hold at most this many characters

SUPPORTED_FORMATS = (
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
)
_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_NUMBER_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_ANNOTATIONS = frozenset({"title", "description"})
_KEYWORDS = frozenset(
    {
        *_ANNOTATIONS,
        *_NUMBER_BOUNDS,
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "anyOf",
        "$ref",
        "$defs",
        "definitions",
        "pattern",
        "format",
        "minItems",
        "maxItems",
    }
)
_ROOT_ONLY = frozenset({"$schema"})
# The hosted API names these at the root with its own message (a root `allOf` gets the
# ordinary "'allOf' is not permitted.").
_ROOT_UNIONS = ("oneOf", "anyOf", "enum", "not")

Path = tuple[str, ...]


class _Invalid(Exception):
    """A rule the schema breaks; the message is the hosted API's wording."""


def _at(path: Path, message: str) -> _Invalid:
    return _Invalid(f"In context={path!r}, {message}")


def check_strict_schema(
    schema: Any, *, param: str, owner: str, code: str = "invalid_json_schema"
) -> None:
    """Raise the hosted API's 400 when `schema` is outside the strict subset.

    `owner` names what the schema belongs to as the hosted message does:
    `response_format 'CalendarEvent'` or `function 'get_weather'`; `code` is
    `invalid_json_schema` for `text.format`, `invalid_function_parameters` for tools.
    """
    problem = strict_problem(schema)
    if problem is not None:
        raise invalid_request(f"Invalid schema for {owner}: {problem}", param=param, code=code)


def strict_problem(schema: Any) -> str | None:
    """The first rule `schema` breaks, in the hosted API's words, or None."""
    try:
        _Checker(schema).run()
    except _Invalid as exc:
        return str(exc)
    return None


def strict_normalized(schema: Any) -> dict[str, Any] | None:
    """A copy with every object closed and every property required, when that makes the
    schema strict; None when it cannot (open objects, unsupported keywords, …)."""
    if not isinstance(schema, dict) or _nesting(schema) > 2 * _MAX_LEVELS:
        return None
    normalized = copy.deepcopy(schema)
    if not _close_objects(normalized):
        return None
    return normalized if strict_problem(normalized) is None else None


def _nesting(value: Any) -> int:
    """How deeply dicts and lists nest in `value`, without recursing."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, dict | list):
                stack.append((child, level + 1))
        deepest = max(deepest, level)
    return deepest


def _close_objects(node: Any) -> bool:
    if isinstance(node, list):
        return all(_close_objects(item) for item in node)
    if not isinstance(node, dict):
        return True
    if _is_object(node) and isinstance(node.get("properties"), dict):
        if node.setdefault("additionalProperties", False) is not False:
            return False
        node["required"] = list(node["properties"])
    children = [node.get(key) for key in ("items", "anyOf")]
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            children.extend(node[key].values())
    return all(_close_objects(child) for child in children)


def _is_object(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    return kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node


def _types(node: dict[str, Any]) -> list[str]:
    kind = node.get("type")
    return kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []


class _Checker:
    """One walk over the schema; raises `_Invalid` at the first broken rule."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.properties = 0
        self.enum_values = 0
        self.string_length = 0
        self.level = 0

    def run(self) -> None:
        root = self.root
        kind = root.get("type") if isinstance(root, dict) else None
        if not isinstance(root, dict) or kind != "object":
            if isinstance(root, dict) and "type" not in root and "anyOf" in root:
                raise _Invalid("schema must have a 'type' key.")
            raise _Invalid(
                f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'."
            )
        for key in _ROOT_UNIONS:
            if key in root:
                raise _Invalid(
                    "schema must have type 'object' and not have "
                    f"'oneOf'/'anyOf'/'allOf'/'enum'/'not' at the top level. Found '{key}'."
                )
        self.node(root, (), depth=0, root=True)
        self.limits()

    def limits(self) -> None:
        if self.properties > MAX_PROPERTIES:
            raise _Invalid(
                f"The schema has {self.properties} object properties; "
                f"at most {MAX_PROPERTIES} are permitted."
            )
        if self.enum_values > MAX_ENUM_VALUES:
            raise _Invalid(
                f"The schema has {self.enum_values} enum values; "
                f"at most {MAX_ENUM_VALUES} are permitted."
            )
        if self.string_length > MAX_STRING_LENGTH:
            raise _Invalid(
                f"The total string length of property names, definition names, enum values "
                f"and const values is {self.string_length}; at most {MAX_STRING_LENGTH} "
                "characters are permitted."
            )

    def node(self, node: Any, path: Path, *, depth: int, root: bool = False) -> None:
        self.level += 1
        try:
            self.check_node(node, path, depth=depth, root=root)
        finally:
            self.level -= 1

    def check_node(self, node: Any, path: Path, *, depth: int, root: bool) -> None:
        if self.level > _MAX_LEVELS:
            raise _at(path, f"schemas may be nested at most {_MAX_LEVELS} levels deep.")
        if not isinstance(node, dict):
            raise _at(path, "schema must be a JSON object.")
        for key in node:
            if key not in _KEYWORDS and not (root and key in _ROOT_ONLY):
                raise _at(path, f"'{key}' is not permitted.")
        if "$ref" in node:
            self.ref(node, path)
            return
        if not any(key in node for key in ("type", "anyOf", "enum", "const")):
            raise _at(path, "schema must have a 'type' key.")
        self.type(node, path)
        self.values(node, path)
        self.string(node, path)
        self.number(node, path)
        if _is_object(node):
            depth += 1
            if depth > MAX_DEPTH + 1:
                raise _at(path, f"objects may be nested at most {MAX_DEPTH} levels deep.")
            self.object(node, path, depth)
        if "array" in _types(node) or "items" in node:
            self.array(node, path, depth)
        if "anyOf" in node:
            variants = node["anyOf"]
            if not isinstance(variants, list) or not variants:
                raise _at(path, "'anyOf' must be a non-empty array of schemas.")
            for index, variant in enumerate(variants):
                self.node(variant, (*path, "anyOf", str(index)), depth=depth)
        for key in ("$defs", "definitions"):
            if key in node:
                self.definitions(node[key], (*path, key), depth)

    def ref(self, node: dict[str, Any], path: Path) -> None:
        ref = node["$ref"]
        others = [key for key in node if key != "$ref"]
        if others:
            raise _at(path, f"'$ref' cannot be combined with other keywords; found '{others[0]}'.")
        if not isinstance(ref, str) or _resolve(self.root, ref) is None:
            raise _at(path, f"reference to component '{ref}' which was not found in the schema.")

    def type(self, node: dict[str, Any], path: Path) -> None:
        if "type" not in node:
            return
        kind = node["type"]
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or len(set(map(str, kinds))) != len(kinds):
            raise _at(path, "'type' must be a type name or a non-empty array of distinct names.")
        for name in kinds:
            if not isinstance(name, str) or name not in _TYPES:
                raise _at(path, f"'{name}' is not a valid type; expected one of {sorted(_TYPES)}.")

    def values(self, node: dict[str, Any], path: Path) -> None:
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not values:
                raise _at(path, "'enum' must be a non-empty array.")
            self.enum_values += len(values)
            strings = [v for v in values if isinstance(v, str)]
            length = sum(len(v) for v in strings)
            self.string_length += length
            if len(strings) > _LONG_ENUM and length > _LONG_ENUM_LENGTH:
                raise _at(
                    path,
                    f"an enum with more than {_LONG_ENUM} string values may total at most "
                    f"{_LONG_ENUM_LENGTH} characters; this one has {length}.",
                )
        if isinstance(node.get("const"), str):
            self.string_length += len(node["const"])

    def string(self, node: dict[str, Any], path: Path) -> None:
        if "pattern" in node and not isinstance(node["pattern"], str):
            raise _at(path, "'pattern' must be a string.")
        if "format" in node and node["format"] not in SUPPORTED_FORMATS:
            raise _at(
                path,
                f"'format' {node['format']!r} is not supported; supported formats are "
                f"{', '.join(SUPPORTED_FORMATS)}.",
            )

    def number(self, node: dict[str, Any], path: Path) -> None:
        for key in _NUMBER_BOUNDS:
            value = node.get(key)
            if key in node and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise _at(path, f"'{key}' must be a number.")
        if "multipleOf" in node and node["multipleOf"] <= 0:
            raise _at(path, "'multipleOf' must be greater than 0.")

    def object(self, node: dict[str, Any], path: Path, depth: int) -> None:
        if node.get("additionalProperties", True) is not False:
            raise _at(path, "'additionalProperties' is required to be supplied and to be false.")
        properties = node.get("properties")
        if not isinstance(properties, dict):
            raise _at(path, "object schema missing properties.")
        required = node.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise _at(path, "'required' must be an array of property names.")
        for name in properties:
            if name not in required:
                raise _at(
                    path,
                    "'required' is required to be supplied and to be an array including "
                    f"every key in properties. Missing '{name}'.",
                )
        for name in required:
            if name not in properties:
                raise _at(path, f"Extra required key '{name}' supplied.")
        self.properties += len(properties)
        for name, child in properties.items():
            self.string_length += len(name)
            self.node(child, (*path, "properties", name), depth=depth)

    def array(self, node: dict[str, Any], path: Path, depth: int) -> None:
        for key in ("minItems", "maxItems"):
            value = node.get(key)
            if key in node and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise _at(path, f"'{key}' must be a non-negative integer.")
        if "items" not in node:
            raise _at(path, "array schema missing items.")
        self.node(node["items"], (*path, "items"), depth=depth)

    def definitions(self, defs: Any, path: Path, depth: int) -> None:
        if not isinstance(defs, dict):
            raise _at(path, "definitions must be an object of schemas.")
        for name, child in defs.items():
            self.string_length += len(name)
            self.node(child, (*path, name), depth=max(depth - 1, 0))


def _resolve(root: Any, ref: str) -> Any:
    """The subschema a local reference (`#`, `#/$defs/Name`) points at, or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    target = root
    for part in ref[2:].split("/"):
        key = part.replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
            target = target[int(key)]
        else:
            return None
    return target if isinstance(target, dict) else None


# -- output validation -----------------------------------------------------------------

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$")
_DURATION = re.compile(
    r"^P(?!$)(\d+W|(\d+Y)?(\d+M)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?)$"
)
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_FORMATS = FormatChecker(formats=("date", "email", "ipv4", "ipv6", "uuid"))


@_FORMATS.checks("date-time")  # type: ignore[untyped-decorator]
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@_FORMATS.checks("time")  # type: ignore[untyped-decorator]
def _is_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    match = _TIME.match(value)
    if match is None:
        return False
    hour, minute, second = (int(match.group(i)) for i in (1, 2, 3))
    return hour < 24 and minute < 60 and second < 61


@_FORMATS.checks("duration")  # type: ignore[untyped-decorator]
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or _DURATION.match(value) is not None


@_FORMATS.checks("hostname")  # type: ignore[untyped-decorator]
def _is_hostname(value: object) -> bool:
    if not isinstance(value, str):
        return True
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


_CACHE_SIZE = 256
_validators: OrderedDict[str, Any] = OrderedDict()
_validators_lock = threading.Lock()


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per distinct schema, least recently used dropped first."""
    key = json.dumps(schema, sort_keys=True, default=str)
    with _validators_lock:
        found = _validators.get(key)
        if found is not None:
            _validators.move_to_end(key)
            return found
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=_FORMATS)
    with _validators_lock:
        _validators[key] = validator
        while len(_validators) > _CACHE_SIZE:
            _validators.popitem(last=False)
    return validator


def validate_output(schema: dict[str, Any], text: str) -> str | None:
    """None when `text` is JSON valid against `schema`; else a short reason with the
    JSON path of the first error (`$.items[1].price: -3 is less than the minimum of 0`)."""
    try:
        instance = json.loads(text)
    except ValueError as exc:
        return f"the output is not valid JSON: {exc}"
    except RecursionError:
        return "the output nests too deeply to be checked"
    try:
        validator = _validator(schema)
        error = next(iter(validator.iter_errors(instance)), None)
    except SchemaError as exc:
        return f"the schema is not valid JSON Schema: {exc.message}"
    except re.error as exc:
        return f"the schema has a pattern that cannot be checked: {exc}"
    except RecursionError:
        return "the schema or the output nests too deeply to be checked"
    if error is None:
        return None
    return f"{error.json_path}: {error.message}"
