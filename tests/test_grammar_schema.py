"""Schema rewrites that let llama.cpp's grammar enforce what strict mode promises."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from responsed.engines.grammar_schema import for_grammar
from responsed.protocol.strict_schema import validate_output


def obj(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def compiles(schema: dict[str, Any]) -> None:
    LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(schema)), verbose=False)


def test_small_integer_ranges_become_enums() -> None:
    schema = obj(
        stars={"type": "integer", "minimum": 1, "maximum": 5},
        even={"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "multipleOf": 2},
        open={"type": "integer", "minimum": 0},
        wide={"type": "integer", "minimum": 0, "maximum": 10**6},
    )
    out = for_grammar(schema)["properties"]
    assert out["stars"]["enum"] == [1, 2, 3, 4, 5]
    assert out["even"]["enum"] == [2, 4, 6, 8]
    assert "enum" not in out["open"]
    assert "enum" not in out["wide"]
    compiles(for_grammar(schema))
    for value in out["stars"]["enum"] + out["even"]["enum"]:
        key = "stars" if value <= 5 else "even"
        doc = {"stars": 3, "even": 4, "open": 1, "wide": 1, key: value}
        assert validate_output(schema, json.dumps(doc)) is None


@pytest.mark.parametrize(
    ("fmt", "samples"),
    [
        ("email", ["ada@example.com", "a.b+c@mail.example.org"]),
        ("hostname", ["example.com", "a-b.c.example"]),
        ("ipv4", ["127.0.0.1", "255.255.255.255"]),
        ("ipv6", ["fe80:0:0:0:0:0:0:1"]),
        ("duration", ["P3D", "PT5M", "P1DT2H3M4S"]),
    ],
)
def test_formats_become_patterns_of_valid_values(fmt: str, samples: list[str]) -> None:
    schema = obj(value={"type": "string", "format": fmt})
    rewritten = for_grammar(schema)
    pattern = rewritten["properties"]["value"]["pattern"]
    assert "format" not in rewritten["properties"]["value"]
    compiles(rewritten)
    for sample in samples:
        assert re.fullmatch(pattern[1:-1], sample), sample
        assert validate_output(schema, json.dumps({"value": sample})) is None


def test_unanchored_patterns_match_anywhere() -> None:
    schema = obj(
        code={"type": "string", "pattern": "[A-Z]{3}"}, tail={"type": "string", "pattern": "^x"}
    )
    out = for_grammar(schema)["properties"]
    assert out["code"]["pattern"] == "^.*([A-Z]{3}).*$"
    assert out["tail"]["pattern"] == "^(x).*$"
    compiles(for_grammar(schema))
    anchored = obj(code={"type": "string", "pattern": "^[a-z]+$"})
    assert for_grammar(anchored) == anchored


def test_root_recursion_is_moved_under_defs() -> None:
    schema = obj(name={"type": "string"}, children={"type": "array", "items": {"$ref": "#"}})
    rewritten = for_grammar(schema)
    assert "#" not in json.dumps(rewritten).replace('"#/$defs/', "")
    compiles(rewritten)
    assert schema["properties"]["children"]["items"] == {"$ref": "#"}  # input untouched
