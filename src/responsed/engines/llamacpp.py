"""The built-in engine: local GGUF models through llama-cpp-python.

A llama.cpp context is not thread-safe, so each loaded instance serves one request at
a time: requests wait in a bounded queue for a free instance, the token loop runs in
a worker thread and hands deltas to the event loop, and a closed consumer stops the
thread between two tokens. An instance goes back to the pool only once its thread
has really stopped.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responsed.config import ConfigError, ModelConfig
from responsed.engines.base import (
    Capabilities,
    Delta,
    EngineError,
    EngineRequest,
    FinishReason,
    FunctionSpec,
    UnsupportedFeature,
    Usage,
)
from responsed.engines.llamacpp_pool import Channel, Done, Job, Pool, common_prefix
from responsed.engines.llamacpp_prompt import (
    Mode,
    OutputShaper,
    StopScanner,
    chat_formatter,
    forced_call_schema,
    render_messages,
)

__all__ = ["LlamaCppEngine"]

_GRAMMAR_CACHE_SIZE = 256
# llama.cpp's usual truncation; temperature and top_p follow the OpenAI defaults.
_TOP_K = 40
_MIN_P = 0.05


@dataclass(slots=True)
class _Plan:
    tokens: list[int]
    max_new: int
    temperature: float
    top_p: float
    grammar: Any
    stop: list[str]
    mode: Mode
    tools: list[FunctionSpec]
    parallel: bool


class LlamaCppEngine:
    """Serves one GGUF model from `config.instances` llama.cpp contexts."""

    def __init__(self, config: ModelConfig, path: Path) -> None:
        self._config = config
        self._path = path
        self._n_ctx = config.n_ctx
        self._llamas: list[Any] = []
        self._pool: Pool | None = None
        self._formatter: Callable[..., Any] | None = None
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._grammar_lock = threading.Lock()
        self._jobs: set[Job] = set()

    @classmethod
    def from_config(cls, config: ModelConfig) -> LlamaCppEngine:
        path = Path(config.path or "").expanduser()
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        return cls(config, path)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(tools=True, images=False, json_schema=True, reasoning=False)

    @property
    def context_window(self) -> int | None:
        return self._config.context_window or self._n_ctx

    async def start(self) -> None:
        self._llamas = await asyncio.to_thread(self._load)
        self._formatter = chat_formatter(self._llamas[0], self._config.chat_format)
        self._pool = Pool(self._llamas, self._config.max_queue)

    def _load(self) -> list[Any]:
        import llama_cpp

        llamas: list[Any] = []
        try:
            for _ in range(self._config.instances):
                llamas.append(
                    llama_cpp.Llama(
                        model_path=str(self._path),
                        n_ctx=self._config.n_ctx,
                        n_threads=self._config.n_threads or os.cpu_count(),
                        logits_all=False,
                        verbose=False,
                    )
                )
        except Exception as exc:
            for llama in llamas:
                llama.close()
            raise EngineError(f"cannot load {self._path}: {exc}") from exc
        self._n_ctx = llamas[0].n_ctx()
        return llamas

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            await asyncio.to_thread(job.thread.join)
        for llama in self._llamas:
            llama.close()
        self._llamas, self._pool = [], None

    async def count_tokens(self, request: EngineRequest) -> int | None:
        plan = await asyncio.to_thread(self._plan, request)
        return len(plan.tokens)

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta]:
        pool = self._pool
        if pool is None:
            raise EngineError(f"model {self._config.name} is not loaded")
        plan = await asyncio.to_thread(self._plan, request)
        llama = await pool.acquire(plan.tokens)
        channel = Channel(asyncio.get_running_loop())

        def run() -> None:
            try:
                done = self._generate(llama, plan, channel.send, job.cancel)
                # Only aclose() cancels a job whose consumer is still listening.
                stopped = EngineError("the model is shutting down", status=503)
                channel.close(stopped if job.cancel.is_set() else done)
            except EngineError as exc:
                channel.close(exc)
            except Exception as exc:
                channel.close(EngineError(f"llama.cpp failed: {exc}"))
            finally:
                channel.call(self._finished, job, pool, llama)

        job = Job(threading.Thread(target=run, name="llamacpp-generate", daemon=True))
        self._jobs.add(job)
        try:
            job.thread.start()
        except BaseException:
            self._finished(job, pool, llama)
            raise
        shaper = OutputShaper(plan.mode, plan.tools, parallel=plan.parallel)
        try:
            while True:
                item = await channel.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Done):
                    for delta in shaper.finish(item.reason, item.usage):
                        yield delta
                    return
                for delta in shaper.feed(item):
                    yield delta
        finally:
            job.cancel.set()

    def _finished(self, job: Job, pool: Pool, llama: Any) -> None:
        self._jobs.discard(job)
        pool.release(llama)

    def _plan(self, request: EngineRequest) -> _Plan:
        """Render, tokenize and pick a grammar; runs off the event loop."""
        name = self._config.name
        choice = request.tool_choice
        tools = [] if choice == "none" else list(request.tools)
        mode: Mode = "auto" if tools else "text"
        if choice == "required" or (tools and choice not in ("auto", "none")):
            if choice != "required":
                tools = [t for t in tools if t.name == choice]
            if not tools:
                raise UnsupportedFeature(
                    f"tool_choice {choice!r} names no available function", param="tool_choice"
                )
            mode = "forced"
        grammar = None
        if mode == "forced":
            grammar = self._grammar(forced_call_schema(tools), "tools")
        elif request.response_format is not None:
            grammar = self._response_grammar(request.response_format)
            if grammar is not None:
                # A grammar leaves no room for a free-form tool call, so none are offered.
                tools, mode = [], "text"
        messages = render_messages(
            request.messages, model=name, tools=tools, forced=mode == "forced"
        )
        llama = self._llamas[0]
        assert self._formatter is not None
        result = self._formatter(messages=messages)
        tokens: list[int] = llama.tokenize(
            result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True
        )
        room = self._n_ctx - len(tokens)
        if room <= 0:
            raise EngineError(
                f"the prompt is {len(tokens)} tokens; model {name} has a context of "
                f"{self._n_ctx} tokens",
                status=400,
                code="context_length_exceeded",
            )
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        return _Plan(
            tokens=tokens,
            max_new=min(room, request.max_output_tokens or room),
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            grammar=grammar,
            stop=[s for s in stop if s],
            mode=mode,
            tools=tools,
            parallel=request.parallel_tool_calls,
        )

    def _response_grammar(self, fmt: dict[str, Any]) -> Any:
        kind = fmt.get("type")
        if kind == "json_schema":
            schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
            return self._grammar(schema, "text.format.schema")
        if kind == "json_object":
            from llama_cpp.llama_grammar import JSON_GBNF

            return self._compile("json_object", lambda: JSON_GBNF, "text.format")
        return None

    def _grammar(self, schema: dict[str, Any], param: str) -> Any:
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        # Not sort_keys: the grammar emits properties in schema order, which matters
        # (a call's "name" must come before its "arguments").
        key = json.dumps(schema)
        return self._compile(key, lambda: json_schema_to_gbnf(key), param)

    def _compile(self, key: str, build: Callable[[], str], param: str) -> Any:
        """A cached LlamaGrammar, checked against the vocabulary once."""
        import llama_cpp
        from llama_cpp.llama_grammar import LlamaGrammar

        with self._grammar_lock:
            if key in self._grammars:
                self._grammars.move_to_end(key)
                return self._grammars[key]
        try:
            gbnf = build()
        except Exception as exc:
            raise UnsupportedFeature(f"unsupported JSON schema: {exc}", param=param) from exc
        # An invalid grammar makes llama.cpp return NULL, which would crash the sampler chain.
        vocab = self._llamas[0]._model.vocab
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), b"root")
        if not sampler:
            raise UnsupportedFeature("the JSON schema compiles to an invalid grammar", param=param)
        llama_cpp.llama_sampler_free(sampler)
        grammar = LlamaGrammar.from_string(gbnf, verbose=False)
        with self._grammar_lock:
            self._grammars[key] = grammar
            while len(self._grammars) > _GRAMMAR_CACHE_SIZE:
                self._grammars.popitem(last=False)
        return grammar

    def _generate(
        self,
        llama: Any,
        plan: _Plan,
        emit: Callable[[str], None],
        cancel: threading.Event,
    ) -> Done:
        """The token loop; runs in the worker thread that owns `llama`."""
        import llama_cpp

        tokens = plan.tokens
        # Llama.generate keeps the common prefix of the KV cache but always re-evaluates
        # at least the last prompt token, so that one never counts as cached.
        cached = min(common_prefix(llama, tokens), len(tokens) - 1)
        vocab = llama._model.vocab
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        scanner = StopScanner(plan.stop)
        reason: FinishReason = "length"
        count, cut = 0, False
        tokens_out = llama.generate(
            tokens,
            top_k=_TOP_K,
            top_p=plan.top_p,
            min_p=_MIN_P,
            temp=plan.temperature,
            repeat_penalty=1.0,
            grammar=plan.grammar,
        )
        with contextlib.closing(tokens_out):
            for token in tokens_out:
                if cancel.is_set():
                    break
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    reason = "stop"
                    break
                count += 1
                text, cut = scanner.feed(decoder.decode(llama.detokenize([token])))
                if text:
                    emit(text)
                if cut:
                    reason = "stop"
                    break
                if count >= plan.max_new:
                    break
        if not cut and not cancel.is_set():
            text, cut = scanner.feed(decoder.decode(b"", final=True))
            text += "" if cut else scanner.flush()
            if text:
                emit(text)
        usage = Usage(
            input_tokens=len(tokens),
            output_tokens=count,
            cached_tokens=cached,
            cache_write_tokens=len(tokens) - cached,
        )
        return Done(reason, usage)
