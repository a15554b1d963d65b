"""The strict JSON Schema subset (Structured Outputs), its wiring into `text.format` and
function tools, and output validation."""

from __future__ import annotations

import copy
import datetime
import enum
import uuid
from typing import Any, Literal

import pytest
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from responsed.protocol import strict_schema
from responsed.protocol.errors import APIError
from responsed.protocol.request import CreateResponseRequest
from responsed.protocol.strict_schema import (
    SUPPORTED_FORMATS,
    check_strict_schema,
    strict_normalized,
    strict_problem,
    validate_output,
)
from responsed.runtime.formats import response_format
from responsed.runtime.tools import offered_tools


def obj(**properties: Any) -> dict[str, Any]:
    """A strict object schema with these properties."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


STR = {"type": "string"}
INT = {"type": "integer"}


def context(path: tuple[str, ...], message: str) -> str:
    return f"In context={path!r}, {message}"


# -- accepted ---------------------------------------------------------------------------

NODE = {
    "$defs": {"Node": obj(name=STR, children={"type": "array", "items": {"$ref": "#/$defs/Node"}})},
    **obj(root={"$ref": "#/$defs/Node"}),
}
ACCEPTED: dict[str, dict[str, Any]] = {
    "flat": obj(name=STR, age=INT, ok={"type": "boolean"}, score={"type": "number"}),
    "empty object": obj(),
    "nested": obj(address=obj(street=STR, city=STR)),
    "array": obj(tags={"type": "array", "items": STR, "minItems": 1, "maxItems": 3}),
    "array of objects": obj(rows={"type": "array", "items": obj(a=INT)}),
    "enum and const": obj(
        unit={"type": "string", "enum": ["c", "f"]}, kind={"const": "x"}, n={"enum": [1, 2, None]}
    ),
    "anyOf": obj(value={"anyOf": [STR, INT, obj(column=STR)]}),
    "nullable type list": obj(nick={"type": ["string", "null"]}),
    "nullable anyOf": obj(nick={"anyOf": [STR, {"type": "null"}]}),
    "$defs recursion": NODE,
    "root recursion": obj(name=STR, child={"anyOf": [{"$ref": "#"}, {"type": "null"}]}),
    "definitions": {"definitions": {"A": obj(x=INT)}, **obj(a={"$ref": "#/definitions/A"})},
    "string constraints": obj(
        code={"type": "string", "pattern": "^[A-Z]{3}$"},
        **{f"f{i}": {"type": "string", "format": f} for i, f in enumerate(SUPPORTED_FORMATS)},
    ),
    "number constraints": obj(
        n={
            "type": "number",
            "minimum": 0,
            "maximum": 10.5,
            "exclusiveMinimum": -1,
            "exclusiveMaximum": 11,
            "multipleOf": 0.5,
        }
    ),
    "annotations": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "T",
        "description": "D",
        **obj(a={**STR, "title": "A", "description": "a"}),
    },
}


@pytest.mark.parametrize("schema", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted(schema: dict[str, Any]) -> None:
    assert strict_problem(schema) is None
    check_strict_schema(schema, param="p", owner="response_format 'x'")


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str


class Everything(BaseModel):
    """Every construct the SDK produces from a pydantic model."""

    name: str
    address: Address
    colour: Colour
    size: Literal["s", "m", "l"]
    nick: str | None
    value: int | str
    shape: Address | Colour
    tags: list[str] = Field(min_length=1, max_length=3)
    stars: int = Field(ge=1, le=5)
    code: str = Field(pattern=r"^[A-Z]{3}$")
    day: datetime.date
    at: datetime.datetime
    id: uuid.UUID


class Tree(BaseModel):
    name: str
    children: list[Tree]


@pytest.mark.parametrize("model", [Everything, Tree, Address])
def test_sdk_schemas_accepted(model: type[BaseModel]) -> None:
    assert strict_problem(to_strict_json_schema(model)) is None


def test_depth_limit() -> None:
    schema: dict[str, Any] = obj(leaf=STR)
    for _ in range(10):  # ten objects nested in the root: the documented limit
        schema = obj(child=schema)
    assert strict_problem(schema) is None
    deeper = obj(child=schema)
    path = ("properties", "child") * 11
    assert strict_problem(deeper) == context(path, "objects may be nested at most 10 levels deep.")


def test_deep_nesting_refused_not_crashed() -> None:
    """Arrays in arrays are not bounded by the object depth limit; the walk still is."""
    deep: dict[str, Any] = STR
    for _ in range(900):
        deep = {"type": "array", "items": deep}
    problem = strict_problem(obj(a=deep))
    assert problem is not None
    assert problem.endswith("schemas may be nested at most 100 levels deep.")
    assert strict_normalized({"type": "object", "properties": {"a": deep}}) is None
    assert validate_output(obj(a=deep), "[" * 5000 + "]" * 5000) is not None


# -- rejected ---------------------------------------------------------------------------

ADDITIONAL = "'additionalProperties' is required to be supplied and to be false."


def open_(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    schema = {k: v for k, v in schema.items() if k != "additionalProperties"}
    return {**schema, **extra}


REJECTED: dict[str, tuple[Any, str]] = {
    "root array": (
        {"type": "array", "items": STR},
        "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.",
    ),
    "root anyOf": ({"anyOf": [obj(a=STR), obj(b=STR)]}, "schema must have a 'type' key."),
    "root $ref": (
        {"$defs": {"A": obj(a=STR)}, "$ref": "#/$defs/A"},
        "schema must be a JSON Schema of 'type: \"object\"', got 'type: \"None\"'.",
    ),
    "root object with anyOf": (
        {**obj(a=STR), "anyOf": [obj(a=STR)]},
        "schema must have type 'object' and not have 'oneOf'/'anyOf'/'allOf'/'enum'/'not' "
        "at the top level. Found 'anyOf'.",
    ),
    "root without additionalProperties": (open_(obj(a=STR)), context((), ADDITIONAL)),
    "additionalProperties true": (
        open_(obj(a=STR), additionalProperties=True),
        context((), ADDITIONAL),
    ),
    "additionalProperties schema": (
        open_(obj(a=STR), additionalProperties=STR),
        context((), ADDITIONAL),
    ),
    "nested without additionalProperties": (
        obj(address=open_(obj(city=STR))),
        context(("properties", "address"), ADDITIONAL),
    ),
    "items without additionalProperties": (
        obj(rows={"type": "array", "items": open_(obj(a=INT))}),
        context(("properties", "rows", "items"), ADDITIONAL),
    ),
    "anyOf variant without additionalProperties": (
        obj(u={"anyOf": [open_(obj(a=STR)), STR]}),
        context(("properties", "u", "anyOf", "0"), ADDITIONAL),
    ),
    "$defs without additionalProperties": (
        {"$defs": {"A": open_(obj(a=STR))}, **obj(a={"$ref": "#/$defs/A"})},
        context(("$defs", "A"), ADDITIONAL),
    ),
    "property not required": (
        {**obj(a=STR, b=STR), "required": ["a"]},
        context(
            (),
            "'required' is required to be supplied and to be an array including every key "
            "in properties. Missing 'b'.",
        ),
    ),
    "required absent": (
        {k: v for k, v in obj(a=STR).items() if k != "required"},
        context(
            (),
            "'required' is required to be supplied and to be an array including every key "
            "in properties. Missing 'a'.",
        ),
    ),
    "extra required key": (
        {**obj(a=STR), "required": ["a", "b"]},
        context((), "Extra required key 'b' supplied."),
    ),
    "object without properties": (
        obj(meta={"type": "object", "additionalProperties": False}),
        context(("properties", "meta"), "object schema missing properties."),
    ),
    "no type": (
        obj(a={"description": "anything"}),
        context(("properties", "a"), "schema must have a 'type' key."),
    ),
    "unknown type": (
        obj(a={"type": "text"}),
        context(
            ("properties", "a"),
            "'text' is not a valid type; expected one of "
            "['array', 'boolean', 'integer', 'null', 'number', 'object', 'string'].",
        ),
    ),
    "unsupported format": (
        obj(a={"type": "string", "format": "uri"}),
        context(
            ("properties", "a"),
            "'format' 'uri' is not supported; supported formats are date-time, time, date, "
            "duration, email, hostname, ipv4, ipv6, uuid.",
        ),
    ),
    "missing $ref": (
        obj(a={"$ref": "#/$defs/Missing"}),
        context(
            ("properties", "a"),
            "reference to component '#/$defs/Missing' which was not found in the schema.",
        ),
    ),
    "remote $ref": (
        obj(a={"$ref": "https://example.com/schema.json"}),
        context(
            ("properties", "a"),
            "reference to component 'https://example.com/schema.json' which was not found "
            "in the schema.",
        ),
    ),
    "$ref with siblings": (
        {"$defs": {"A": obj(x=INT)}, **obj(a={"$ref": "#/$defs/A", "description": "d"})},
        context(
            ("properties", "a"),
            "'$ref' cannot be combined with other keywords; found 'description'.",
        ),
    ),
    "array without items": (
        obj(a={"type": "array"}),
        context(("properties", "a"), "array schema missing items."),
    ),
    "negative minItems": (
        obj(a={"type": "array", "items": STR, "minItems": -1}),
        context(("properties", "a"), "'minItems' must be a non-negative integer."),
    ),
    "string minimum": (
        obj(a={"type": "number", "minimum": "0"}),
        context(("properties", "a"), "'minimum' must be a number."),
    ),
    "zero multipleOf": (
        obj(a={"type": "number", "multipleOf": 0}),
        context(("properties", "a"), "'multipleOf' must be greater than 0."),
    ),
    "empty enum": (
        obj(a={"enum": []}),
        context(("properties", "a"), "'enum' must be a non-empty array."),
    ),
    "empty anyOf": (
        obj(a={"anyOf": []}),
        context(("properties", "a"), "'anyOf' must be a non-empty array of schemas."),
    ),
    "boolean schema": (obj(a=True), context(("properties", "a"), "schema must be a JSON object.")),
    "nested $schema": (
        obj(a={**STR, "$schema": "x"}),
        context(("properties", "a"), "'$schema' is not permitted."),
    ),
}


@pytest.mark.parametrize(("schema", "message"), REJECTED.values(), ids=REJECTED.keys())
def test_rejected(schema: Any, message: str) -> None:
    assert strict_problem(schema) == message


UNSUPPORTED: dict[str, Any] = {
    "allOf": [STR],
    "oneOf": [STR, INT],
    "not": STR,
    "if": STR,
    "then": STR,
    "else": STR,
    "patternProperties": {"^x": STR},
    "dependentRequired": {"a": ["b"]},
    "dependentSchemas": {"a": STR},
    "unevaluatedProperties": False,
    "propertyNames": STR,
    "minProperties": 1,
    "maxProperties": 2,
    "minLength": 1,
    "maxLength": 2,
    "uniqueItems": True,
    "contains": STR,
    "prefixItems": [STR],
    "default": "x",
    "examples": ["x"],
    "nullable": True,
}


@pytest.mark.parametrize(("keyword", "value"), UNSUPPORTED.items(), ids=UNSUPPORTED.keys())
def test_unsupported_keyword_named(keyword: str, value: Any) -> None:
    nested = obj(outer=obj(inner={**STR, keyword: value}))
    assert strict_problem(nested) == context(
        ("properties", "outer", "properties", "inner"), f"'{keyword}' is not permitted."
    )
    root = {**obj(a=STR), keyword: value}
    expected = context((), f"'{keyword}' is not permitted.")
    if keyword in ("oneOf", "not"):  # the hosted API words these differently at the root
        expected = (
            "schema must have type 'object' and not have 'oneOf'/'anyOf'/'allOf'/'enum'/'not' "
            f"at the top level. Found '{keyword}'."
        )
    assert strict_problem(root) == expected


def test_limits() -> None:
    many = obj(**{f"p{i}": INT for i in range(5001)})
    assert strict_problem(many) == (
        "The schema has 5001 object properties; at most 5000 are permitted."
    )
    assert strict_problem(obj(**{f"p{i}": INT for i in range(5000)})) is None
    enums = obj(**{f"e{i}": {"enum": list(range(100))} for i in range(11)})
    assert strict_problem(enums) == "The schema has 1100 enum values; at most 1000 are permitted."
    long_enum = obj(e={"type": "string", "enum": [f"{i:03d}" + "x" * 60 for i in range(251)]})
    assert strict_problem(long_enum) == context(
        ("properties", "e"),
        "an enum with more than 250 string values may total at most 15000 characters; "
        "this one has 15813.",
    )
    short_enum = obj(e={"type": "string", "enum": [f"{i:03d}" for i in range(300)]})
    assert strict_problem(short_enum) is None
    names = obj(**{f"{i:03d}" + "n" * 1000: INT for i in range(121)})
    problem = strict_problem(names)
    assert problem is not None
    assert problem.startswith("The total string length of property names")
    assert "at most 120000 characters" in problem


def test_check_raises_the_hosted_error() -> None:
    schema = obj(address=open_(obj(city=STR)))
    with pytest.raises(APIError) as caught:
        check_strict_schema(schema, param="text.format.schema", owner="response_format 'Person'")
    error = caught.value
    assert error.status == 400
    assert error.envelope() == {
        "error": {
            "message": "Invalid schema for response_format 'Person': "
            + context(("properties", "address"), ADDITIONAL),
            "type": "invalid_request_error",
            "param": "text.format.schema",
            "code": "invalid_json_schema",
        }
    }


# -- normalization (function tools that leave `strict` unset) ---------------------------


def test_normalized_closes_and_requires() -> None:
    loose = {
        "type": "object",
        "properties": {
            "city": STR,
            "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            "rows": {"type": "array", "items": {"type": "object", "properties": {"a": INT}}},
        },
        "required": ["city"],
    }
    before = copy.deepcopy(loose)
    normalized = strict_normalized(loose)
    assert loose == before  # not mutated
    assert normalized is not None
    assert strict_problem(normalized) is None
    assert normalized["required"] == ["city", "where", "rows"]
    assert normalized["additionalProperties"] is False
    assert normalized["properties"]["where"]["required"] == ["lat"]
    assert normalized["properties"]["rows"]["items"]["additionalProperties"] is False


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object"},  # no properties: a free-form object
        {**obj(a=STR), "additionalProperties": True},
        obj(a={"type": "string", "minLength": 1}),
        obj(meta={"type": "object", "additionalProperties": {"type": "string"}, "properties": {}}),
        {"type": "array", "items": STR},
    ],
)
def test_normalized_gives_up(schema: dict[str, Any]) -> None:
    assert strict_normalized(schema) is None


# -- wiring: text.format and tools ------------------------------------------------------


def request(**fields: Any) -> CreateResponseRequest:
    return CreateResponseRequest.model_validate({"model": "m", "input": "x", **fields})


def text_format(schema: dict[str, Any], strict: bool | None) -> dict[str, Any]:
    fmt = {"type": "json_schema", "name": "Event", "schema": schema}
    return {"format": fmt if strict is None else {**fmt, "strict": strict}}


def test_strict_text_format_checked() -> None:
    with pytest.raises(APIError) as caught:
        response_format(request(text=text_format(open_(obj(a=STR)), strict=True)))
    assert caught.value.param == "text.format.schema"
    assert caught.value.code == "invalid_json_schema"
    assert caught.value.message == "Invalid schema for response_format 'Event': " + context(
        (), ADDITIONAL
    )


@pytest.mark.parametrize("strict", [False, None])
def test_non_strict_text_format_passed_on(strict: bool | None) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string", "minLength": 2}}}
    fmt = response_format(request(text=text_format(loose, strict)))
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "Event", "schema": loose, "strict": False},
    }


def function(name: str, parameters: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": parameters, **extra}


def test_strict_function_checked() -> None:
    good = function("ok", obj(a=STR), strict=True)
    bad = function("get_weather", {**obj(city=STR, unit=STR), "required": ["city"]}, strict=True)
    with pytest.raises(APIError) as caught:
        offered_tools(request(tools=[good, bad]))
    error = caught.value
    assert error.param == "tools[1].parameters"
    assert error.code == "invalid_function_parameters"
    assert error.message == (
        "Invalid schema for function 'get_weather': In context=(), 'required' is required to "
        "be supplied and to be an array including every key in properties. Missing 'unit'."
    )


def test_strict_function_without_parameters_rejected() -> None:
    with pytest.raises(APIError) as caught:
        offered_tools(request(tools=[function("f", None, strict=True)]))
    assert caught.value.param == "tools[0].parameters"
    assert caught.value.message == (
        "Invalid schema for function 'f': schema must be a JSON Schema of "
        "'type: \"object\"', got 'type: \"None\"'."
    )


def test_unset_strict_normalized_or_falls_back() -> None:
    loose = {"type": "object", "properties": {"city": STR}}
    free_form = {"type": "object", "properties": {"q": {"type": "string", "minLength": 1}}}
    tools = [
        function("normalized", loose),
        function("fallback", free_form),
        function("opted_out", loose, strict=False),
        function("no_parameters", None),
    ]
    specs, _, _ = offered_tools(request(tools=tools))
    normalized, fallback, opted_out, no_parameters = specs
    assert normalized.strict is True
    assert normalized.parameters == {**loose, "additionalProperties": False, "required": ["city"]}
    assert (fallback.strict, fallback.parameters) == (None, free_form)
    assert (opted_out.strict, opted_out.parameters) == (False, loose)
    assert (no_parameters.strict, no_parameters.parameters) == (None, None)


# -- output validation ------------------------------------------------------------------

EVENT = obj(
    name=STR,
    date={"type": "string", "format": "date"},
    participants={"type": "array", "items": STR},
)


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        (EVENT, '{"name": "Fair", "date": "2024-05-06", "participants": ["Alice", "Bob"]}'),
        (NODE, '{"root": {"name": "a", "children": [{"name": "b", "children": []}]}}'),
        (obj(n={"type": ["integer", "null"]}), '{"n": null}'),
        (obj(v={"anyOf": [STR, INT]}), '{"v": 3}'),
        (
            obj(**{f: {"type": "string", "format": f} for f in SUPPORTED_FORMATS}),
            """{"date-time": "2024-05-06T10:30:00Z", "time": "10:30:00+02:00",
               "date": "2024-05-06", "duration": "P1DT2H", "email": "a@b.io",
               "hostname": "api.example.com", "ipv4": "10.0.0.1", "ipv6": "::1",
               "uuid": "12345678-1234-5678-1234-567812345678"}""",
        ),
    ],
)
def test_valid_output(schema: dict[str, Any], text: str) -> None:
    assert validate_output(schema, text) is None


@pytest.mark.parametrize(
    ("schema", "text", "reason"),
    [
        (EVENT, '{"name": "Fair"', "the output is not valid JSON: "),
        (
            EVENT,
            '{"name": "Fair", "date": "2024-05-06"}',
            "$: 'participants' is a required property",
        ),
        (
            EVENT,
            '{"name": "Fair", "date": "2024-05-06", "participants": ["A", 3]}',
            "$.participants[1]: 3 is not of type 'string'",
        ),
        (
            EVENT,
            '{"name": "F", "date": "2024-12-06", "participants": [], "x": 1}',
            "$: Additional properties are not allowed ('x' was unexpected)",
        ),
        (
            EVENT,
            '{"name": "F", "date": "Friday", "participants": []}',
            "$.date: 'Friday' is not a 'date'",
        ),
        (
            obj(n={"type": "integer", "minimum": 1, "maximum": 5}),
            '{"n": 7}',
            "$.n: 7 is greater than the maximum of 5",
        ),
        (
            obj(c={"type": "string", "pattern": "^[A-Z]{3}$"}),
            '{"c": "abc"}',
            "$.c: 'abc' does not match '^[A-Z]{3}$'",
        ),
        (
            obj(u={"type": "string", "enum": ["c", "f"]}),
            '{"u": "k"}',
            "$.u: 'k' is not one of ['c', 'f']",
        ),
        (
            obj(t={"type": "array", "items": STR, "maxItems": 1}),
            '{"t": ["a", "b"]}',
            "$.t: ['a', 'b'] is too long",
        ),
        (
            obj(at={"type": "string", "format": "date-time"}),
            '{"at": "2024-05-06T10:30:00"}',
            "$.at: '2024-05-06T10:30:00' is not a 'date-time'",
        ),
        (
            obj(t={"type": "string", "format": "time"}),
            '{"t": "25:00:00Z"}',
            "$.t: '25:00:00Z' is not a 'time'",
        ),
        (
            obj(d={"type": "string", "format": "duration"}),
            '{"d": "P"}',
            "$.d: 'P' is not a 'duration'",
        ),
        (
            obj(h={"type": "string", "format": "hostname"}),
            '{"h": "-bad-.com"}',
            "$.h: '-bad-.com' is not a 'hostname'",
        ),
        (
            obj(i={"type": "string", "format": "uuid"}),
            '{"i": "nope"}',
            "$.i: 'nope' is not a 'uuid'",
        ),
        (
            obj(i={"type": "string", "format": "ipv4"}),
            '{"i": "1.2.3"}',
            "$.i: '1.2.3' is not a 'ipv4'",
        ),
        (
            NODE,
            '{"root": {"name": "a", "children": [{"name": 1, "children": []}]}}',
            "$.root.children[0].name: 1 is not of type 'string'",
        ),
        ({"type": "frob"}, "1", "the schema is not valid JSON Schema: "),
    ],
)
def test_invalid_output(schema: dict[str, Any], text: str, reason: str) -> None:
    found = validate_output(schema, text)
    assert found is not None
    assert found.startswith(reason), found


def test_validators_cached_and_bounded() -> None:
    first = strict_schema._validator(EVENT)
    assert strict_schema._validator(copy.deepcopy(EVENT)) is first  # keyed by content
    for i in range(strict_schema._CACHE_SIZE + 10):
        validate_output(obj(**{f"p{i}": INT}), f'{{"p{i}": 1}}')
    assert len(strict_schema._validators) == strict_schema._CACHE_SIZE
    assert strict_schema._validator(EVENT) is not first  # evicted, compiled again
