"""Rewrite a strict JSON schema into one llama.cpp's schema→grammar converter enforces.

`json_schema_to_gbnf` ignores numeric bounds, knows only a few string formats, wants
regex patterns anchored and cannot follow a `$ref` to the root. Each gap is closed by an
equivalent (or narrower, still valid) construct the converter does support, so that
grammar-constrained output also validates against the original schema:

- integer ranges of at most `_MAX_ENUM` values → an `enum` of those values;
- `format` email/hostname/ipv4/ipv6/duration → an anchored `pattern` matching a valid
  subset of the format;
- unanchored `pattern` p → `^.{0,32}(p).{0,32}$` (JSON Schema patterns match anywhere),
  where
  `.` (and `[^…]`) exclude `"` and `\\` so the string cannot end early;
- `$ref: "#"` → a reference to a copy of the root under `$defs`.

Anything else the converter cannot express (a float range, an open integer bound) is
left as is; the runtime validates the answer and fails the response rather than
returning a value outside the schema.
"""

from __future__ import annotations

import copy
import math
from typing import Any

__all__ = ["for_grammar"]

_MAX_ENUM = 1000
_ROOT = "schema-root"  # a rule name too: GBNF allows letters, digits and "-"
# `[.]`, not `\.`: the converter copies `\.` into the grammar, where it is no escape.
# Parts are length-bounded: a small model stuck in a loop must still reach the end.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,20}[A-Za-z0-9])?"
_WORD = r"[A-Za-z0-9_+-]{1,20}"
_FORMAT_PATTERNS = {
    "email": rf"^{_WORD}([.]{_WORD}){{0,2}}@{_LABEL}([.]{_LABEL}){{0,2}}[.][A-Za-z]{{2,6}}$",
    "hostname": rf"^{_LABEL}([.]{_LABEL}){{0,4}}$",
    "ipv4": rf"^{_OCTET}[.]{_OCTET}[.]{_OCTET}[.]{_OCTET}$",
    "ipv6": r"^[0-9a-f]{1,4}(:[0-9a-f]{1,4}){7}$",
    "duration": r"^P([0-9]{1,4}D|T[0-9]{1,4}[HMS]|[0-9]{1,4}DT[0-9]{1,2}H[0-9]{1,2}M[0-9]{1,2}S)$",
}


def for_grammar(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` rewritten for the grammar converter (see module doc)."""
    out = copy.deepcopy(schema)
    if _refers_to_root(out):
        defs = out.pop("$defs", {})
        root = _retarget(out)
        defs = {name: _retarget(sub) for name, sub in defs.items()}
        # Not a bare `$ref` root: the converter would then skip the `$defs` beside it.
        out = {"$defs": {**defs, _ROOT: root}, "anyOf": [{"$ref": f"#/$defs/{_ROOT}"}]}
    rewritten: dict[str, Any] = _rewrite(out)
    return rewritten


def _refers_to_root(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == "#" or any(_refers_to_root(v) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to_root(v) for v in node)
    return False


def _retarget(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("$ref") == "#":
            return {**node, "$ref": f"#/$defs/{_ROOT}"}
        return {k: _retarget(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_retarget(v) for v in node]
    return node


def _rewrite(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _rewrite(v) if k not in ("enum", "const") else v for k, v in node.items()}
    kind = node.get("type")
    if kind == "integer" and "enum" not in node:
        values = _integer_range(node)
        if values is not None:
            node["enum"] = values
    if kind == "string":
        pattern = _FORMAT_PATTERNS.get(str(node.get("format")))
        if pattern is not None and "pattern" not in node:
            node.pop("format")
            node["pattern"] = pattern
        if isinstance(node.get("pattern"), str):
            node["pattern"] = _anchored(node["pattern"])
    return node


def _integer_range(node: dict[str, Any]) -> list[int] | None:
    low, high = node.get("minimum"), node.get("maximum")
    if isinstance(node.get("exclusiveMinimum"), int | float):
        low = math.floor(node["exclusiveMinimum"]) + 1
    if isinstance(node.get("exclusiveMaximum"), int | float):
        high = math.ceil(node["exclusiveMaximum"]) - 1
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    first, last = math.ceil(low), math.floor(high)
    if last < first or last - first + 1 > _MAX_ENUM:
        return None
    step = node.get("multipleOf")
    values = [
        v for v in range(first, last + 1) if not isinstance(step, int) or step <= 0 or v % step == 0
    ]
    return values or None


_ANY = r'[^"\\]'
"""What `.` may match inside a JSON string the grammar writes: the converter's own dot
admits `"`, which would let the model close the string early and write past it."""


def _anchored(pattern: str) -> str:
    start = pattern.startswith("^")
    end = pattern.endswith("$") and not pattern.endswith("\\$")
    raw = pattern[1 if start else 0 : len(pattern) - 1 if end else len(pattern)]
    body = _json_safe(raw)
    if start and end and body == raw:
        return pattern
    # Bounded: a valid subset, and a model stuck in a loop still reaches the end.
    around = _ANY + "{0,32}"
    return f"^{'' if start else around}({body}){'' if end else around}$"


def _json_safe(pattern: str) -> str:
    """`.` and negated classes `[^…]` made to exclude `"` and `\\`."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append('[^"\\\\')
                i += 2
                continue
        elif char == ".":
            char = _ANY
        out.append(char)
        i += 1
    return "".join(out)
