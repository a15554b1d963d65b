"""The built-in engine: local GGUF models through llama-cpp-python.

A llama.cpp context is not thread-safe, so each loaded instance serves one request at
a time: requests wait in a bounded queue for a free instance, the token loop
(`llamacpp_decode.TokenLoop`) runs in a worker thread and hands deltas to the event
loop, and a closed consumer stops the thread between two tokens. An instance goes back
to the pool only once its thread has really stopped. Before generating, the worker
reuses the instance's live KV cache or loads a saved state from the prompt cache
(`llamacpp_kvcache`), whichever covers more of the prompt; after, it saves the
instance's state for the next turn.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from responsed.config import ConfigError, ModelConfig
from responsed.engines.base import (
    Capabilities,
    Delta,
    EngineError,
    EngineRequest,
    FunctionSpec,
    TextDelta,
    UnsupportedFeature,
    Usage,
)
from responsed.engines.grammar_schema import for_grammar
from responsed.engines.llamacpp_decode import Emit, Plan, TokenLoop
from responsed.engines.llamacpp_kvcache import PromptCache, restore_state
from responsed.engines.llamacpp_pool import Channel, Done, Job, Pool, common_prefix
from responsed.engines.llamacpp_prompt import (
    TOOL_CALLS_ROOT,
    Mode,
    OutputShaper,
    chat_formatter,
    forced_call_schema,
    render_messages,
    tool_call_gbnf,
)

__all__ = ["LlamaCppEngine"]

log = structlog.get_logger(__name__)

_GRAMMAR_CACHE_SIZE = 256
_TOKENIZED_CACHE_SIZE = 32
_GRAMMAR_FORMATS = ("json_schema", "json_object")
# Loading a saved state costs ~4.5 ms per 1,000 tokens it holds; evaluating costs ~7 ms
# per token. A few tokens of gain already pay for a load.
_MIN_LOAD_GAIN = 4


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
        self._tokenized: OrderedDict[tuple[str, bool], tuple[int, ...]] = OrderedDict()
        self._tokenized_lock = threading.Lock()
        self._cache = PromptCache(config.prompt_cache_bytes) if config.prompt_cache else None
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
        self._pool = Pool(self._llamas, self._config.max_queue, by_prefix=self._config.prompt_cache)

    def _load(self) -> list[Any]:
        import llama_cpp

        llamas: list[Any] = []
        threads = self._config.n_threads or os.cpu_count()
        try:
            for _ in range(self._config.instances):
                llamas.append(
                    llama_cpp.Llama(
                        model_path=str(self._path),
                        n_ctx=self._config.n_ctx,
                        # Prompt evaluation too: llama-cpp-python defaults it to every core.
                        n_threads=threads,
                        n_threads_batch=threads,
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
        if self._cache is not None:
            self._cache.clear()

    async def count_tokens(self, request: EngineRequest) -> int | None:
        """Exactly `stream(request)`'s input_tokens; a prompt over the context is counted too."""
        return await asyncio.to_thread(self._count, request)

    def _count(self, request: EngineRequest) -> int:
        mode, tools = self._shape(request)
        tokens, _ = self._prompt(request, mode, tools)
        return len(tokens)

    async def stream(self, request: EngineRequest) -> AsyncIterator[Delta]:
        pool = self._pool
        if pool is None:
            raise EngineError(f"model {self._config.name} is not loaded")
        plan = await asyncio.to_thread(self._plan, request)
        llama = await pool.acquire(plan.tokens)
        logprobs = plan.top_logprobs is not None
        channel = Channel(asyncio.get_running_loop(), logprobs=logprobs)

        def run() -> None:
            try:
                done = self._generate(llama, plan, channel.send, job.cancel)
                # Only aclose() cancels a job whose consumer is still listening.
                cancelled = job.cancel.is_set()
                stopped = EngineError("the model is shutting down", status=503)
                channel.close(stopped if cancelled else done)
                if not cancelled:
                    self._remember(llama, plan)
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
        shaper = OutputShaper(plan.mode, plan.tools, parallel=plan.parallel, logprobs=logprobs)
        try:
            while True:
                item = await channel.get()
                if isinstance(item, str):
                    deltas = shaper.feed(item)
                elif isinstance(item, TextDelta):
                    deltas = shaper.feed(item.text, item.logprobs)
                elif isinstance(item, Done):
                    for delta in shaper.finish(item.reason, item.usage):
                        yield delta
                    return
                else:
                    raise item
                for delta in deltas:
                    yield delta
        finally:
            job.cancel.set()

    def _finished(self, job: Job, pool: Pool, llama: Any) -> None:
        self._jobs.discard(job)
        pool.release(llama)

    def _shape(self, request: EngineRequest) -> tuple[Mode, list[FunctionSpec]]:
        """Which functions are offered and how: the decisions rendering depends on."""
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
            return "forced", tools
        fmt = request.response_format
        if fmt is not None and fmt.get("type") in _GRAMMAR_FORMATS:
            # A grammar leaves no room for a free-form tool call, so none are offered.
            return "text", []
        return mode, tools

    def _prompt(
        self, request: EngineRequest, mode: Mode, tools: list[FunctionSpec]
    ) -> tuple[tuple[int, ...], list[str]]:
        """Render and tokenize (tokenizations of recent prompts are cached)."""
        messages = render_messages(
            request.messages, model=self._config.name, tools=tools, forced=mode == "forced"
        )
        assert self._formatter is not None
        result = self._formatter(messages=messages)
        stop = result.stop if isinstance(result.stop, list) else [result.stop]
        key = (result.prompt, not result.added_special)
        with self._tokenized_lock:
            tokens = self._tokenized.get(key)
            if tokens is not None:
                self._tokenized.move_to_end(key)
                return tokens, [s for s in stop if s]
        tokens = tuple(
            self._llamas[0].tokenize(result.prompt.encode("utf-8"), add_bos=key[1], special=True)
        )
        with self._tokenized_lock:
            self._tokenized[key] = tokens
            while len(self._tokenized) > _TOKENIZED_CACHE_SIZE:
                self._tokenized.popitem(last=False)
        return tokens, [s for s in stop if s]

    def _plan(self, request: EngineRequest) -> Plan:
        """Render, tokenize and pick grammars; runs off the event loop."""
        mode, tools = self._shape(request)
        grammar = call_grammar = None
        if mode == "forced":
            grammar = self._grammar(forced_call_schema(tools), "tools")
        elif mode == "auto":
            call_grammar = self._call_grammar(tools, request.parallel_tool_calls)
        elif request.response_format is not None:
            grammar = self._response_grammar(request.response_format)
        tokens, stop = self._prompt(request, mode, tools)
        room = self._n_ctx - len(tokens)
        if room <= 0:
            raise EngineError(
                f"the prompt is {len(tokens)} tokens; model {self._config.name} has a "
                f"context of {self._n_ctx} tokens",
                status=400,
                code="context_length_exceeded",
            )
        return Plan(
            tokens=tokens,
            max_new=min(room, request.max_output_tokens or room),
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            grammar=grammar,
            stop=stop,
            mode=mode,
            tools=tools,
            parallel=request.parallel_tool_calls,
            top_logprobs=request.top_logprobs,
            call_grammar=call_grammar,
            cache_key=request.prompt_cache_key,
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
        return self._compile(
            key, lambda: json_schema_to_gbnf(json.dumps(for_grammar(schema))), param
        )

    def _call_grammar(self, tools: Sequence[FunctionSpec], parallel: bool) -> Any:
        """What an auto-mode `<tool_call>` continues under; None leaves it free text.

        Arguments follow the function's schema unless it says `strict: false` (then
        any JSON object); a schema the converter rejects falls back to that as well.
        """
        from llama_cpp.llama_grammar import json_schema_to_gbnf

        loose = [replace(t, parameters=None) for t in tools]
        strict = [t if t.strict is not False else loose[i] for i, t in enumerate(tools)]
        for candidate in (strict, loose):
            schema = json.dumps(for_grammar(forced_call_schema(candidate)))

            def build(schema: str = schema) -> str:
                return tool_call_gbnf(json_schema_to_gbnf(schema), parallel=parallel)

            key = f"tool_call:{parallel}:{schema}"
            try:
                grammar = self._compile(key, build, "tools", root=TOOL_CALLS_ROOT)
            except UnsupportedFeature as exc:
                log.warning("tool call grammar rejected", error=exc.message)
                with self._grammar_lock:
                    self._grammars[key] = grammar = None  # not tried again
            if grammar is not None:
                return grammar
        return None

    def _compile(self, key: str, build: Callable[[], str], param: str, root: str = "root") -> Any:
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
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode(), root.encode())
        if not sampler:
            raise UnsupportedFeature("the JSON schema compiles to an invalid grammar", param=param)
        llama_cpp.llama_sampler_free(sampler)
        grammar = LlamaGrammar.from_string(gbnf, verbose=False)
        grammar._root = root
        with self._grammar_lock:
            self._grammars[key] = grammar
            while len(self._grammars) > _GRAMMAR_CACHE_SIZE:
                self._grammars.popitem(last=False)
        return grammar

    def _generate(self, llama: Any, plan: Plan, emit: Emit, cancel: threading.Event) -> Done:
        """One generation; runs in the worker thread that owns `llama`."""
        tokens = plan.tokens
        cached = self._reuse(llama, plan)
        loop = TokenLoop(llama, plan, emit, cancel)
        reason = loop.run()
        usage = Usage(
            input_tokens=len(tokens),
            output_tokens=loop.count,
            cached_tokens=cached,
            cache_write_tokens=len(tokens) - cached if self._cache is not None else 0,
        )
        return Done(reason, usage)

    def _reuse(self, llama: Any, plan: Plan) -> int:
        """Prepare `llama`'s KV cache for `plan`; the prompt tokens it will not evaluate."""
        tokens = plan.tokens
        if self._cache is None:
            llama.reset()
            return 0
        live = common_prefix(llama, tokens)
        entry, saved = self._cache.lookup(plan.cache_key, tokens)
        if entry is not None and saved >= live + _MIN_LOAD_GAIN:
            live = saved if restore_state(llama, entry) else 0
        # Mirrors Llama.generate: an exact hit on live logits samples at once; otherwise
        # at least the last prompt token is evaluated again.
        if live == len(tokens) == llama.n_tokens and not llama._requires_eval:
            return live
        return live - 1 if live == len(tokens) else live

    def _remember(self, llama: Any, plan: Plan) -> None:
        """Save `llama`'s state (prompt + output) for a later turn; after Finish is sent."""
        if self._cache is None:
            return
        try:
            self._cache.save(llama, plan.cache_key)
        except Exception as exc:  # a lost cache entry must never fail a response
            log.warning("prompt cache save failed", error=str(exc))
