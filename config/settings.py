"""Typed settings: `config/folio.toml` (or the file named by FOLIO_CONFIG), overridden
by `FOLIO_...` environment variables (nested with `__`, e.g. FOLIO_RETRIEVAL__TOP_K=4).
Secrets come only from the environment. Nothing is read at import time: call
`load_settings()` in the composition root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.discord import DiscordSettings
from config.errors import ConfigError
from config.slack import SlackSettings

DEFAULT_CONFIG_FILE = Path(__file__).with_name("folio.toml")


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class EmbeddingSettings(BaseModel):
    model_path: Path | None = Field(
        default=None,
        description="A sentence-transformers model folder; empty = the embedded all-MiniLM-L6-v2.",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    query_cache_size: int = Field(default=256, ge=0)


class GeneratorSettings(BaseModel):
    backend: Literal["local"] = "local"
    model_path: Path | None = Field(
        default=None, description="Any GGUF file; empty = the embedded SmolLM2-135M-Instruct."
    )
    context_tokens: int = Field(default=2048, ge=512, le=131072)
    max_answer_tokens: int = Field(default=320, ge=16)
    threads: int = Field(default_factory=_default_threads, ge=1)
    batch_tokens: int = Field(default=512, ge=32)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    answer_mode: Literal["hybrid", "generate", "extract"] = Field(
        default="hybrid",
        description="hybrid: the model writes from the best evidence sentences and the answer "
        "keeps the key sentence verbatim if the model left it out; generate: the model's "
        "supported sentences only; extract: the best sentences verbatim, no model call.",
    )


class ChunkingSettings(BaseModel):
    target_words: int = Field(default=110, ge=20, le=1000)
    overlap_words: int = Field(default=25, ge=0)


class RetrievalSettings(BaseModel):
    top_k: int = Field(default=5, ge=1, le=50)
    candidates: int = Field(default=40, ge=1, le=500)
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=1.0, ge=0.0)
    keyword_weight: float = Field(default=1.0, ge=0.0)
    min_dense_score: float = Field(
        default=0.35,
        ge=-1.0,
        le=1.0,
        description="Below this cosine similarity for the best passage, Folio says the documents "
        "don't say instead of calling the model (calibrated on the dev set).",
    )
    min_evidence_score: float = Field(
        default=0.95,
        description="Below this score for the best sentence (cosine + 1.5 × keyword overlap), "
        "Folio abstains (calibrated on the dev set).",
    )
    evidence_sentences: int = Field(default=6, ge=1, le=40)
    abstain_on_unknown_terms: bool = Field(
        default=True,
        description="Abstain when the question names something (a word that is not common "
        "English) that appears nowhere in the collection.",
    )
    prompt_passages: int = Field(default=3, ge=1, le=20)
    prompt_passage_tokens: int = Field(default=600, ge=64)


class IngestSettings(BaseModel):
    max_file_mb: float = Field(default=50.0, gt=0)
    max_pages: int = Field(default=2000, ge=1)
    parse_timeout_s: float = Field(default=120.0, gt=0)
    parse_memory_mb: int = Field(default=2048, ge=256)


class QueueSettings(BaseModel):
    max_pending: int = Field(default=200, ge=1)
    max_pending_per_user: int = Field(default=5, ge=1)
    edit_interval_s: float = Field(default=1.0, ge=0.0)


class Settings(BaseSettings):
    """Every setting of Folio; see config/folio.toml for the documented defaults."""

    model_config = SettingsConfigDict(
        env_prefix="FOLIO_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    data_dir: Path = Path("data")
    default_collection: str = "default"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    embedding: EmbeddingSettings = EmbeddingSettings()
    generator: GeneratorSettings = GeneratorSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    ingest: IngestSettings = IngestSettings()
    queue: QueueSettings = QueueSettings()
    discord: DiscordSettings = DiscordSettings()
    slack: SlackSettings = SlackSettings()

    # Secrets: only from the environment (never from the TOML file), under their usual names.
    discord_token: SecretStr | None = Field(default=None, exclude=True)
    slack_bot_token: SecretStr | None = Field(default=None, exclude=True)
    slack_app_token: SecretStr | None = Field(default=None, exclude=True)
    slack_signing_secret: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("default_collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("FOLIO_CONFIG", DEFAULT_CONFIG_FILE))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )

    @property
    def documents_db(self) -> Path:
        return self.data_dir / "documents.sqlite"

    @property
    def bot_db(self) -> Path:
        return self.data_dir / "bot.sqlite"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "faiss"


_SECRET_ENV = {
    "discord_token": "DISCORD_BOT_TOKEN",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_app_token": "SLACK_APP_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
}


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, or raise ConfigError with one readable line per problem."""
    config_file = Path(os.environ.get("FOLIO_CONFIG", DEFAULT_CONFIG_FILE))
    if "FOLIO_CONFIG" in os.environ and not config_file.is_file():
        raise ConfigError(f"FOLIO_CONFIG names {config_file}, which is not a file.")
    _reject_secrets_in_file(config_file)
    secrets = {
        field: SecretStr(os.environ[env])
        for field, env in _SECRET_ENV.items()
        if os.environ.get(env)
    }
    try:
        return Settings(**{**secrets, **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid configuration ({config_file}): {problems}") from None


def _reject_secrets_in_file(config_file: Path) -> None:
    """Secrets belong in the environment: a token written into the TOML file is refused."""
    import tomllib

    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None
    found = sorted(set(data) & set(_SECRET_ENV))
    if found:
        names = ", ".join(f"{key} (set {_SECRET_ENV[key]} instead)" for key in found)
        raise ConfigError(f"{config_file} must not contain secrets: {names}.")
