"""Engine kinds are data: a table of import strings, open to entry points."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points

from responsed.config import ConfigError, ModelConfig
from responsed.engines.base import Engine

__all__ = ["ENGINE_KINDS", "ModelRegistry", "build_engine", "engine_factory"]

EngineFactory = Callable[[ModelConfig], Engine]

ENGINE_KINDS: dict[str, str] = {
    "llamacpp": "responsed.engines.llamacpp:LlamaCppEngine",
    "openai": "responsed.engines.openai_compat:OpenAICompatEngine",
}
"""engine name in `[[models]]` → `module:Class` whose `from_config` builds it.

Third-party engines register under the `responsed.engines` entry-point group."""


def engine_factory(kind: str) -> EngineFactory:
    """The factory for an engine kind; ConfigError naming the known kinds if unknown."""
    target = ENGINE_KINDS.get(kind)
    if target is None:
        for ep in entry_points(group="responsed.engines"):
            if ep.name == kind:
                target = ep.value
                break
    if target is None:
        known = ", ".join(sorted(ENGINE_KINDS))
        raise ConfigError(f"unknown engine {kind!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    factory: EngineFactory = cls.from_config
    return factory


def build_engine(config: ModelConfig) -> Engine:
    engine = engine_factory(config.engine)(config)
    if config.reasoning_parser is not None:
        from responsed.engines.reasoning_parser import ThinkTagEngine

        opened = config.reasoning_parser == "think_tags_open"
        engine = ThinkTagEngine(engine, starts_in_reasoning=opened)
    return engine


class ModelRegistry:
    """The models one app instance serves, by the name clients send."""

    def __init__(self, configs: list[ModelConfig]) -> None:
        self.configs = {c.name: c for c in configs}
        self.engines: dict[str, Engine] = {}
        self.created_at = 0

    async def start(self) -> None:
        import time

        self.created_at = int(time.time())
        for name, config in self.configs.items():
            engine = build_engine(config)
            await engine.start()
            self.engines[name] = engine

    async def aclose(self) -> None:
        for engine in self.engines.values():
            await engine.aclose()
        self.engines.clear()

    def get(self, name: str) -> Engine | None:
        return self.engines.get(name)
