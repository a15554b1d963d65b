"""The built-in engine's token loop, run in the worker thread that owns a llama instance.

Generated tokens become text through an incremental UTF-8 decoder and a `StopScanner`
(which holds back what may be the start of a stop string), and reach the event loop
through `emit`. Two things ride along:

- Log probabilities (`Plan.top_logprobs` not None): each sampled token's log-softmax
  of the raw logits, computed from llama.cpp's logits buffer right after sampling (with
  `logits_all=False` llama-cpp-python does not keep them in `Llama.scores`). `Logprobs`
  hands each emitted piece of text exactly the tokens whose text it completes, so the
  alignment survives the stop scanner, the decoder and the coalescing downstream.
  A token's `token` is the text the decoder produced for it, so a delta's tokens
  concatenate to its text: a character split across tokens appears whole on the token
  that completes it, the earlier ones carry "" (their `bytes` are still their own), and
  a character the output cuts short becomes U+FFFD on its last token. The one
  exception is a stop string: a token it cuts is dropped, so when a stop string starts
  inside a token, the text kept before it has no token.
- Strict tool calls in auto mode (`Plan.call_grammar`): once the text so far is known
  to open a `<tool_call>`, free generation stops and resumes from the prompt plus that
  text under a grammar that only admits calls of the offered functions and the closing
  tag, so the arguments always parse. The live KV cache makes the restart cheap.
"""

from __future__ import annotations

import codecs
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from responsed.engines.base import FinishReason, FunctionSpec, TokenLogprob
from responsed.engines.llamacpp_prompt import TOOL_CALL_OPEN, Mode, StopScanner

__all__ = ["Emit", "Logprobs", "Plan", "TokenLoop"]

# llama.cpp's usual truncation; temperature and top_p follow the OpenAI defaults.
_TOP_K = 40
_MIN_P = 0.05

Emit = Callable[[str, "tuple[TokenLogprob, ...] | None"], None]


@dataclass(slots=True)
class Plan:
    tokens: Sequence[int]
    max_new: int
    temperature: float
    top_p: float
    grammar: Any
    stop: list[str]
    mode: Mode
    tools: list[FunctionSpec]
    parallel: bool
    top_logprobs: int | None = None
    # Auto mode: the grammar a started <tool_call> is finished under (None: free text).
    call_grammar: Any = None
    cache_key: str | None = None


class Logprobs:
    """Per-token log probabilities, handed out with the text they make up."""

    def __init__(self, llama: Any, top: int) -> None:
        self._llama = llama
        self._top = top
        self._n_vocab = int(llama.n_vocab())
        self._texts: dict[int, tuple[str, tuple[int, ...]]] = {}
        self._pending: deque[tuple[int, TokenLogprob]] = deque()
        self._decoded = 0  # characters the decoder produced so far
        self._emitted = 0  # characters handed out so far

    def add(self, token: int, raw: bytes, piece: str) -> None:
        """Record a sampled token whose bytes decoded to `piece`; call before evaluating on."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self._llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        logits -= logits.max()
        logits -= np.log(np.exp(logits).sum())
        top: list[tuple[str, float, tuple[int, ...]]] = []
        if self._top:
            best = np.argpartition(logits, -self._top)[-self._top :]
            for i in best[np.argsort(-logits[best], kind="stable")]:
                text, text_bytes = self._text(int(i))
                top.append((text, float(logits[i]), text_bytes))
        self._decoded += len(piece)
        self._pending.append(
            (self._decoded, TokenLogprob(piece, float(logits[token]), tuple(raw), tuple(top)))
        )

    def add_text(self, piece: str) -> None:
        """The decoder's final flush (U+FFFD for a character the output cut short).

        It belongs to the tokens holding the broken bytes, the last pending ones.
        """
        self._decoded += len(piece)
        if piece and self._pending:
            _, last = self._pending.pop()
            self._pending.append((self._decoded, replace(last, token=last.token + piece)))

    def take(self, n: int) -> tuple[TokenLogprob, ...]:
        """The tokens completed within the next `n` characters handed out."""
        self._emitted += n
        out: list[TokenLogprob] = []
        while self._pending and self._pending[0][0] <= self._emitted:
            out.append(self._pending.popleft()[1])
        return tuple(out)

    def _text(self, token: int) -> tuple[str, tuple[int, ...]]:
        known = self._texts.get(token)
        if known is None:
            raw = self._llama.detokenize([token])
            known = self._texts[token] = (raw.decode("utf-8", errors="replace"), tuple(raw))
        return known


class TokenLoop:
    """One generation on one llama instance; `run` returns the finish reason."""

    def __init__(self, llama: Any, plan: Plan, emit: Emit, cancel: threading.Event) -> None:
        self._llama = llama
        self._plan = plan
        self._emit = emit
        self._cancel = cancel
        self.count = 0  # output tokens
        # Auto mode: the text so far, until it is known whether it opens a tool call.
        self._watch = plan.mode == "auto" and plan.call_grammar is not None
        self._head = ""
        self._call: str | None = None  # the text through the opening tag, once it does

    def run(self) -> FinishReason:
        plan = self._plan
        reason = self._phase(plan.tokens, plan.grammar)
        if self._call is not None and not self._cancel.is_set() and self.count < plan.max_new:
            opened = self._llama.tokenize(self._call.encode("utf-8"), add_bos=False, special=True)
            reason = self._phase([*plan.tokens, *opened], plan.call_grammar)
        return reason

    def _phase(self, tokens: Sequence[int], grammar: Any) -> FinishReason:
        import llama_cpp

        llama, plan = self._llama, self._plan
        vocab = llama._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(plan.stop)
        track = Logprobs(llama, plan.top_logprobs) if plan.top_logprobs is not None else None
        reason: FinishReason = "length"
        cut = False
        tokens_out = llama.generate(
            tokens,
            top_k=_TOP_K,
            top_p=plan.top_p,
            min_p=_MIN_P,
            temp=plan.temperature,
            repeat_penalty=1.0,
            grammar=grammar,
        )
        with contextlib.closing(tokens_out):
            for token in tokens_out:
                if self._cancel.is_set():
                    return reason
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                self.count += 1
                raw = llama.detokenize([token])
                piece = decoder.decode(raw)
                if track is not None:
                    track.add(token, raw, piece)
                text, cut = scanner.feed(piece)
                if text and not self._send(text, track):
                    return reason  # a tool call opened: run() continues under its grammar
                if cut:
                    return "stop"
                if self.count >= plan.max_new:
                    break
        if not self._cancel.is_set():
            piece = decoder.decode(b"", final=True)
            if track is not None:
                track.add_text(piece)
            text, cut = scanner.feed(piece)
            text += "" if cut else scanner.flush()
            if text:
                self._send(text, track)
        return reason

    def _send(self, text: str, track: Logprobs | None) -> bool:
        """Emit `text`; False when it opened a tool call (cut right after the tag)."""
        opened = False
        if self._watch:
            text, opened = self._watch_call(text)
        if text:
            self._emit(text, None if track is None else track.take(len(text)))
        return not opened

    def _watch_call(self, text: str) -> tuple[str, bool]:
        start = len(self._head)
        self._head += text
        head = self._head.lstrip()
        if head.startswith(TOOL_CALL_OPEN):
            end = len(self._head) - len(head) + len(TOOL_CALL_OPEN)
            self._call, self._watch = self._head[:end], False
            return text[: end - start], True
        if head and not TOOL_CALL_OPEN.startswith(head):
            self._watch = False
        return text, False
