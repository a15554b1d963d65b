"""Text side of the llama.cpp engine: message rendering, tool prompts, output parsing.

Small local chat templates know only system/user/assistant turns with string content, so
tool traffic is rendered as text in the `<tool_call>`/`<tool_response>` convention that
most open instruct models were tuned on, and parsed back from the generated text.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Sequence
from typing import Any, Literal

from responsed.config import ConfigError
from responsed.engines.base import (
    ChatMessage,
    Delta,
    Finish,
    FinishReason,
    FunctionSpec,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    UnsupportedFeature,
    Usage,
)

__all__ = [
    "TOOL_CALLS_ROOT",
    "TOOL_CALL_CLOSE",
    "TOOL_CALL_OPEN",
    "Mode",
    "OutputShaper",
    "ParsedCall",
    "StopScanner",
    "chat_formatter",
    "forced_call_schema",
    "new_call_id",
    "parse_forced_call",
    "parse_tool_calls",
    "render_messages",
    "tool_call_gbnf",
]

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_ALNUM = string.ascii_letters + string.digits
_TEXT_PARTS = {"text", "input_text", "output_text"}
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)

Mode = Literal["text", "auto", "forced"]
"""Plain text; text that may turn out to be a `<tool_call>`; a grammar-forced call."""

ParsedCall = tuple[str, str]
"""(function name, compact JSON arguments)."""


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def _content_text(content: Any, model: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for part in content:
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            texts.append(str(part.get("text", "")))
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        elif kind in ("image_url", "input_image"):
            raise UnsupportedFeature(f"model {model} does not accept image inputs", param="input")
        else:
            raise UnsupportedFeature(f"model {model} does not accept {kind} inputs", param="input")
    return "\n".join(texts)


def _call_text(call: dict[str, Any]) -> str:
    fn = call.get("function", {})
    raw = fn.get("arguments") or "{}"
    try:
        arguments: Any = json.loads(raw)
    except ValueError:
        arguments = raw
    body = json.dumps({"name": fn.get("name", ""), "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}"


def _tools_prompt(tools: Sequence[FunctionSpec], forced: bool) -> str:
    lines = [
        json.dumps(
            {
                "name": t.name,
                "description": t.description or "",
                "parameters": t.parameters or {"type": "object", "properties": {}},
            },
            ensure_ascii=False,
        )
        for t in tools
    ]
    listing = "<tools>\n" + "\n".join(lines) + "\n</tools>"
    if forced:
        return (
            "You must call one of these functions:\n"
            f"{listing}\n"
            'Reply only with a JSON object {"name": <function name>, "arguments": '
            "<arguments object>}, taking the argument values from the conversation."
        )
    return (
        "You may call these functions:\n"
        f"{listing}\n"
        "To call a function, reply only with\n"
        f'{TOOL_CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}'
        f"{TOOL_CALL_CLOSE}\n"
        "Otherwise answer the user directly."
    )


def render_messages(
    messages: Sequence[ChatMessage],
    *,
    model: str,
    tools: Sequence[FunctionSpec] = (),
    forced: bool = False,
) -> list[dict[str, str]]:
    """Chat Completions messages → system/user/assistant turns with string content.

    System and developer messages are gathered into one leading system turn (many
    templates only look at the first one); consecutive turns of the same role are
    folded because strict templates require alternation.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_content_text(message.get("content"), model))
            continue
        if role == "user":
            text = _content_text(message.get("content"), model)
        elif role == "assistant":
            text = _content_text(message.get("content"), model)
            calls = [_call_text(c) for c in message.get("tool_calls") or []]
            text = "\n".join(t for t in (text, *calls) if t)
            if reasoning := message.get("reasoning_content"):
                # Given back in the think-tag form local reasoning models write it in.
                text = f"<think>\n{reasoning}\n</think>\n\n{text}"
        elif role == "tool":
            role = "user"
            body = _content_text(message.get("content"), model)
            text = f"<tool_response>\n{body}\n</tool_response>"
        else:
            raise UnsupportedFeature(f"unsupported message role {role!r}", param="input")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": str(role), "content": text})
    if tools:
        system.append(_tools_prompt(tools, forced))
    if system:
        turns.insert(0, {"role": "system", "content": "\n\n".join(s for s in system if s)})
    return turns


def forced_call_schema(tools: Sequence[FunctionSpec]) -> dict[str, Any]:
    """A JSON schema whose every instance is a call of one of `tools`."""
    variants: list[dict[str, Any]] = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.name},
                "arguments": t.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


TOOL_CALLS_ROOT = "tool-calls"
_MORE_PARALLEL_CALLS = 3


def tool_call_gbnf(call_gbnf: str, *, parallel: bool) -> str:
    """Rules, rooted at `TOOL_CALLS_ROOT`, for what follows an opening `<tool_call>`.

    `call_gbnf` is the grammar of one call (rooted at `root`, from `forced_call_schema`);
    the result closes the tag and, with `parallel`, admits a few more whole calls.
    """
    one = f'tool-call-ws root "{TOOL_CALL_CLOSE}"'
    more = f' ("\\n{TOOL_CALL_OPEN}" {one}){{0,{_MORE_PARALLEL_CALLS}}}' if parallel else ""
    return f"{call_gbnf}\n{TOOL_CALLS_ROOT} ::= {one}{more}\ntool-call-ws ::= [ \\n]?\n"


def _as_call(obj: Any, tools: Sequence[FunctionSpec]) -> ParsedCall | None:
    if not isinstance(obj, dict):
        return None
    name, arguments = obj.get("name"), obj.get("arguments", obj.get("parameters"))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict) or name not in {t.name for t in tools}:
        return None
    return str(name), json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


def parse_forced_call(text: str, tools: Sequence[FunctionSpec]) -> ParsedCall | None:
    """Parse grammar-constrained output: one JSON object {"name", "arguments"}."""
    try:
        return _as_call(json.loads(text), tools)
    except ValueError:
        return None


def parse_tool_calls(text: str, tools: Sequence[FunctionSpec]) -> list[ParsedCall] | None:
    """Parse `<tool_call>{...}</tool_call>` blocks; None unless every block is a valid call."""
    calls: list[ParsedCall] = []
    decoder = json.JSONDecoder()
    for match in _BLOCK.finditer(text.strip()):
        try:
            # raw_decode tolerates junk after the object (e.g. a missing close tag).
            obj, _ = decoder.raw_decode(match.group(1))
        except ValueError:
            return None
        call = _as_call(obj, tools)
        if call is None:
            return None
        calls.append(call)
    return calls or None


class StopScanner:
    """Cuts text at the first stop string, holding back a possible partial match."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        if not self._stops:
            return text, False
        text = self._pending + text
        cut = min((i for s in self._stops if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            return text[:cut], True
        keep = max(
            (k for s in self._stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0
        )
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        text, self._pending = self._pending, ""
        return text


class OutputShaper:
    """Turns generated text into deltas: plain text, or parsed tool calls.

    With `logprobs`, every text delta carries the log probabilities of its tokens
    (those of buffered text are buffered with it).
    """

    def __init__(
        self, mode: Mode, tools: Sequence[FunctionSpec], *, parallel: bool, logprobs: bool = False
    ) -> None:
        self._mode, self._tools, self._parallel = mode, tools, parallel
        self._buf = ""
        self._logprobs: list[TokenLogprob] | None = [] if logprobs else None
        self._state = {"text": "stream", "auto": "undecided", "forced": "collect"}[mode]

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...] | None = None) -> list[Delta]:
        if self._state == "stream":
            return [TextDelta(text, logprobs)]
        self._buf += text
        if self._logprobs is not None and logprobs:
            self._logprobs.extend(logprobs)
        head = self._buf.lstrip()
        if self._state == "undecided":
            if head.startswith(TOOL_CALL_OPEN):
                self._state = "collect"
            elif head and not TOOL_CALL_OPEN.startswith(head):
                self._state = "stream"
                return [self._take_text()]
        return []

    def _take_text(self) -> TextDelta:
        text, self._buf = self._buf, ""
        if self._logprobs is None:
            return TextDelta(text)
        logprobs, self._logprobs = tuple(self._logprobs), []
        return TextDelta(text, logprobs)

    def finish(self, reason: FinishReason, usage: Usage) -> list[Delta]:
        calls = None
        if self._mode == "forced":
            call = parse_forced_call(self._buf, self._tools)
            calls = [call] if call else None
        elif self._state == "collect":
            calls = parse_tool_calls(self._buf, self._tools)
        if calls:
            calls = calls if self._parallel else calls[:1]
            out: list[Delta] = [
                ToolCallDelta(index=i, call_id=new_call_id(), name=name, arguments=args)
                for i, (name, args) in enumerate(calls)
            ]
            return [*out, Finish("tool_calls", usage)]
        text = [self._take_text()] if self._buf else []
        return [*text, Finish(reason, usage)]


def chat_formatter(llama: Any, chat_format: str | None) -> Callable[..., Any]:
    """The configured chat format, else the GGUF's own template (as llama-cpp-python does)."""
    from llama_cpp import llama_chat_format as formats

    templates = {
        "chat_template.default" if key == "tokenizer.chat_template" else key[10:]: value
        for key, value in llama.metadata.items()
        if key.startswith("tokenizer.chat_template")
    }
    name = chat_format or ("chat_template.default" if templates else "llama-2")
    if name in templates:

        def text(token: int) -> str:
            return str(llama._model.token_get_text(token)) if token != -1 else ""

        return formats.Jinja2ChatFormatter(
            template=templates[name],
            eos_token=text(llama.token_eos()),
            bos_token=text(llama.token_bos()),
        )
    # Built-in formats are module functions: "llama-2" → format_llama2, "open-orca" →
    # format_open_orca.
    for attr in ("format_" + name.replace("-", "_"), "format_" + name.replace("-", "")):
        formatter = getattr(formats, attr, None)
        if callable(formatter):
            return formatter  # type: ignore[no-any-return]
    raise ConfigError(f"unknown chat_format {name!r}")
