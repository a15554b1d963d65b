"""Schema rewrites that let llama.cpp's grammar enforce what strict mode promises."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import llama_cpp
import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf
from openai import OpenAI

from responsed.config import builtin_model_path
from responsed.engines.grammar_schema import for_grammar
from responsed.protocol.strict_schema import validate_output
from test_strict_schema import obj


@functools.cache
def _vocab() -> Any:
    llama = llama_cpp.Llama(model_path=str(builtin_model_path()), vocab_only=True, verbose=False)
    return llama, llama._model.vocab


def compiles(schema: dict[str, Any]) -> None:
    """llama.cpp's own grammar parser accepts the converter's output (the Python-side
    parser is more lenient, so it is not the judge)."""
    gbnf = json_schema_to_gbnf(json.dumps(schema)).encode()
    sampler = llama_cpp.llama_sampler_init_grammar(_vocab()[1], gbnf, b"root")
    assert sampler, gbnf.decode()
    llama_cpp.llama_sampler_free(sampler)


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
    assert out["code"]["pattern"] == r'^[^"\\]{0,32}([A-Z]{3})[^"\\]{0,32}$'
    assert out["tail"]["pattern"] == r'^(x)[^"\\]{0,32}$'
    dotted = for_grammar(obj(v={"type": "string", "pattern": r"^a.[^b]\.$"}))
    assert dotted["properties"]["v"]["pattern"] == r'^(a[^"\\][^"\\b]\.)$'

    compiles(for_grammar(schema))
    anchored = obj(code={"type": "string", "pattern": "^[a-z]+$"})
    assert for_grammar(anchored) == anchored


def test_root_recursion_is_moved_under_defs() -> None:
    schema = obj(name={"type": "string"}, children={"type": "array", "items": {"$ref": "#"}})
    rewritten = for_grammar(schema)
    assert "#" not in json.dumps(rewritten).replace('"#/$defs/', "")
    compiles(rewritten)
    assert schema["properties"]["children"]["items"] == {"$ref": "#"}  # input untouched


def test_builtin_model_honours_what_the_grammar_could_not(client: OpenAI) -> None:
    """The built-in model's answers validate where the raw converter would let a bound,
    a format or an unanchored pattern slip, or refuse a root reference."""
    schema = obj(
        stars={"type": "integer", "minimum": 1, "maximum": 5},
        contact={"type": "string", "format": "email"},
        code={"type": "string", "pattern": "[A-Z]{3}"},
        replies={"type": "array", "items": {"$ref": "#"}, "maxItems": 0},
    )
    response = client.responses.create(
        model="smollm2",
        input="Give the film 100 stars. My name is Tom.",
        text={
            "format": {"type": "json_schema", "name": "review", "strict": True, "schema": schema}
        },
        max_output_tokens=400,
        temperature=0,
    )
    assert response.status == "completed", response.output_text[:600]
    assert validate_output(schema, response.output_text) is None
