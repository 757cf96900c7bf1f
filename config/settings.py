"""Typed settings: `config/folio.toml` (or the file named by FOLIO_CONFIG), overridden
by `FOLIO_...` environment variables (nested with `__`, e.g. FOLIO_RETRIEVAL__TOP_K=4).
Secrets come only from the environment. Nothing is read at import time: call
`load_settings()` in the composition root, which passes the platforms' own sections
(`[discord]`, `[web]`, ...: declared in their folders, see `config.sections`); this module names
no platform.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from config.errors import ConfigError
from config.sections import SectionSettings, read_secrets, secret_fields

DEFAULT_CONFIG_FILE = Path(__file__).with_name("folio.toml")
S = TypeVar("S", bound=SectionSettings)


def _default_threads() -> int:
    return max(1, os.cpu_count() or 1)


class EmbeddingSettings(BaseModel):
    model_path: Path | None = Field(
        default=None,
        description="A sentence-transformers model folder; empty = the embedded all-MiniLM-L6-v2.",
    )
    batch_size: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Chunks per forward pass. Small batches pad less and keep the attention "
        "buffers small: on 2 cores 8 ingests as fast as 32 with ~150 MB less peak memory.",
    )
    query_cache_size: int = Field(default=256, ge=0)
    backend: Literal["auto", "torch", "onnx-int8"] = Field(
        default="torch",
        description="torch (the default): sentence-transformers in fp32; onnx-int8: the same "
        "weights exported and quantised locally to int8 and run by ONNX Runtime (checked "
        "against the fp32 vectors; ~1.5x the chunks per CPU second, a quarter of the memory, "
        "but answers quote slightly worse sentences, README \"Performance\"); auto: onnx-int8 "
        "when onnxruntime is installed and the model exports, else torch. Changing it "
        "re-embeds each collection once.",
    )
    evidence_backend: Literal["auto", "same", "onnx-int8"] = Field(
        default="auto",
        description="What embeds an answer's candidate sentences and the question they are "
        "scored against (not the index): auto = the int8 ONNX embedder when onnxruntime is "
        "installed and the model exports, else the index's embedder; same = the index's "
        "embedder. int8 halves an evidence answer's time with the same figures on both dev sets "
        "and both follow-up sets (README, Performance).",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="torch backend only: auto = bfloat16 where the CPU has AMX (detected at "
        "run time: 2.5x the chunks per second of fp32 on a 2-core Xeon, the same vectors "
        "within cosine 0.9999); on AVX512-BF16 without AMX, bfloat16 if a timed sample at "
        "start embeds 1.25x faster than fp32 (1.9x on an AMD EPYC, slower on an Intel Xeon); "
        "fp32 elsewhere; bf16 = on AVX512-BF16 untimed; fp32 = never bfloat16.",
    )
    threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="Workers one embedding call is split between, each a torch thread on its "
        "own share of the texts (one copy of the weights): on 2 cores faster than 2 threads "
        "on each matrix product (README \"Performance\"). Ingest leaves one to a parse "
        "running ahead.",
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Where the exported ONNX models are kept; empty = <data_dir>/models.",
    )


class AnswerSettings(BaseModel):
    """How much of the evidence an answer carries. The defaults were chosen by cross-validation
    over both dev sets (research papers and other team documents); see README "Quality"."""

    sentences: int = Field(default=5, ge=1, le=12, description="Sentences in a lookup or why answer.")
    list_items: int = Field(default=4, ge=1, le=20, description="Items in a list answer.")
    score_margin: float = Field(
        default=0.8, ge=0.0, le=5.0,
        description="Keep evidence sentences scoring within this of the best one.",
    )
    page_margin: float = Field(
        default=0.0, ge=0.0, le=5.0,
        description="Quote other pages only if they answer within this of the best page "
        "(0: one page per answer, which cross-validated best for citation precision).",
    )
    redundancy: float = Field(
        default=0.6, gt=0.0, le=1.0,
        description="A sentence sharing this share of its words with one already chosen is left out.",
    )
    rank_weight: float = Field(
        default=0.1, ge=0.0, le=2.0,
        description="Choosing the page: evidence score lost per place down the retrieval ranking.",
    )
    coverage_weight: float = Field(
        default=0.5, ge=0.0, le=5.0,
        description="Choosing the page: worth of the share of the question's words on it.",
    )
    passage_weight: float = Field(
        default=0.2, ge=0.0, le=2.0,
        description="Choosing the page: worth of each retrieved passage that comes from it.",
    )
    part_sentences: int = Field(
        default=3, ge=0, le=12,
        description="Sentences each later part of a two-part question adds, from the page "
        "that answers that part best (0: the whole question's answer only).",
    )


class GeneratorSettings(BaseModel):
    backend: Literal["local", "openai"] = Field(
        default="local",
        description="local: llama.cpp in this process; openai: an OpenAI-compatible chat "
        "completions server (llama.cpp's server, vLLM, Ollama) at base_url.",
    )
    model_path: Path | None = Field(
        default=None, description="Any GGUF file; empty = the embedded SmolLM2-135M-Instruct."
    )
    context_tokens: int = Field(default=2048, ge=512, le=131072)
    max_answer_tokens: int = Field(default=320, ge=16)
    lead_tokens: int = Field(
        default=64, ge=16,
        description="hybrid: the most tokens the model writes before the documents' own "
        "sentences follow (a lead, not the whole answer; cut back to its last full sentence).",
    )
    threads: int = Field(default_factory=_default_threads, ge=1)
    batch_tokens: int = Field(default=512, ge=32)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    repeat_penalty: float = Field(default=1.15, ge=1.0, le=2.0)
    answer_mode: Literal["evidence", "hybrid", "generate"] = Field(
        default="evidence",
        description="evidence: the answer is the documents' own best sentences, each with its "
        "page, and the model is never loaded (measured best on both dev sets with the embedded "
        "135M model); hybrid: the model writes first, only sentences a passage supports word "
        "for word are kept, and the evidence it leaves out follows; generate: the model's "
        "strictly supported sentences only.",
    )

    @field_validator("answer_mode", mode="before")
    @classmethod
    def _old_mode_name(cls, value: object) -> object:
        return "evidence" if value == "extract" else value  # the name before evidence-first
    extra_buffer_types: bool = Field(
        default=False,
        description="local: let llama.cpp repack weights into its extra buffer types (AMX on "
        "Intel Xeons, CPU_REPACK elsewhere). Off: the AMX path segfaults and gives wrong results "
        "for Q4_0/Q4_1 (llama.cpp PR #16315, issue #20824). Turn on once upstream is fixed.",
    )
    weights: Literal["auto", "as-is", "q8_0"] = Field(
        default="auto",
        description="local: q8_0 loads a Q8_0 copy of the model, made once by llama.cpp's "
        "quantizer and cached in the model cache (the embedded Q4_1 model reads prompts ~1.7x "
        "faster as Q8_0); as-is loads the file itself; auto: q8_0 for the embedded model, "
        "as-is for a GGUF of your own (a bigger model would double its memory).",
    )

    @property
    def weights_to_load(self) -> Literal["as-is", "q8_0"]:
        if self.weights == "auto":
            return "q8_0" if self.model_path is None else "as-is"
        return self.weights

    isolate: bool = Field(
        default=True,
        description="local: run the model in a supervised child process, so a native crash "
        "costs one answer (retried once), never the bot and its platform connections.",
    )
    # --- the "openai" back end (the API key comes only from FOLIO_GENERATOR_API_KEY) ---
    base_url: str = Field(
        default="",
        description="The server's OpenAI API root, e.g. http://127.0.0.1:8080/v1.",
    )
    model_name: str = Field(
        default="", description="The model name sent to the server; empty = the first it lists."
    )
    tokenizer_path: Path | None = Field(
        default=None,
        description="The served model's GGUF, read for exact token counts and its chat template; "
        "empty = the server's tokenize endpoint, else an estimate with a margin.",
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    read_timeout_s: float = Field(
        default=60.0, gt=0, le=3600, description="Longest silence from the server mid-answer."
    )
    retries: int = Field(
        default=1, ge=0, le=10, description="Quick retries of a request that could not connect."
    )
    concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Questions generated at once (openai only; the local model runs one).",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"must be an http:// or https:// URL, not {value!r}")
        return value

    @model_validator(mode="after")
    def _backend_needs(self) -> GeneratorSettings:
        if self.backend == "local" and self.concurrency != 1:
            raise ValueError(
                "concurrency must be 1 with the local backend (one llama.cpp context); "
                "use backend = \"openai\" to generate several answers at once"
            )
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "backend = \"openai\" needs base_url (e.g. http://127.0.0.1:8080/v1)"
            )
        return self


class ChunkingSettings(BaseModel):
    target_words: int = Field(default=110, ge=20, le=1000)
    overlap_words: int = Field(default=25, ge=0)


class RetrievalSettings(BaseModel):
    top_k: int = Field(
        default=5, ge=1, le=50,
        description="Passages shown as the closest pages (and scored as retrieval hit@k).",
    )
    evidence_passages: int = Field(
        default=10, ge=1, le=50,
        description="Passages the answer's sentences are chosen from (the top_k and the next "
        "ones); more found more key facts on both dev sets up to 10 (README, Quality).",
    )
    follow_up_passages: int = Field(
        default=3, ge=0, le=20,
        description="A follow-up's sentences are also chosen from this many passages that match "
        "the previous answer, where the conversation left off (README, Quality: follow-ups).",
    )
    follow_up_weight: float = Field(
        default=0.6, ge=0.0,
        description="A follow-up's sentence scores this times its similarity to the previous "
        "answer on top of its score for the question (cross-validated on the two follow-up sets).",
    )
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
        default=0.98,
        description="Below this score for the best sentence (cosine + 1.5 × the share of the "
        "question's words it holds, among the words the collection uses at all), Folio "
        "abstains (cross-validated on both dev sets).",
    )
    evidence_sentences: int = Field(default=6, ge=1, le=40)
    abstain_on_unknown_terms: bool = Field(
        default=True,
        description="Abstain when the question names something (a word that is not common "
        "English, or a capitalised name) that appears nowhere in the collection, or nowhere "
        "in the documents the retrieved passages come from.",
    )
    relevance_margin: float = Field(
        default=0.3,
        ge=0.0,
        description="Cite a page only if its best sentence scores within this of the best "
        "page's (same scale as min_evidence_score); the sentence always added from the "
        "documents comes from a page already cited when one is within it (calibrated on the "
        "dev set).",
    )
    prompt_passages: int = Field(default=3, ge=1, le=20)
    prompt_passage_tokens: int = Field(default=600, ge=64)


class IngestSettings(BaseModel):
    max_file_mb: float = Field(default=50.0, gt=0)
    max_pages: int = Field(default=2000, ge=1)
    parse_timeout_s: float = Field(default=120.0, gt=0)
    parse_memory_mb: int = Field(default=2048, ge=256)
    text_parser: Literal["pypdf", "pdfium"] = Field(
        default="pypdf",
        description="Which parser reads the text layers; the other is the fallback for a file "
        "it cannot read. PDFium is ~8x faster but its text gives answers with fewer key facts "
        "(README \"Performance\"); with it first, pypdf still checks every file's structure, "
        "so hostile files are refused the same way.",
    )
    ocr: bool = Field(
        default=True,
        description="Read pages that have no text layer (scans) from their images, offline.",
    )
    ocr_figures: bool = Field(
        default=False,
        description="Also read large images (figures) on pages that do have text. Costs "
        "OCR time per figure; see README \"Scans and figures (OCR)\".",
    )
    ocr_page_timeout_s: float = Field(
        default=30.0, gt=0, description="A page whose image takes longer is skipped."
    )
    ocr_max_pages: int = Field(
        default=50,
        ge=0,
        description="Pages per file read from images (scans first, then figures); the rest "
        "are skipped with a warning, so one long scan cannot hold the queue for long.",
    )
    ocr_min_confidence: float = Field(
        default=0.8,
        ge=0.0,
        le=1.0,
        description="Recognised lines below this confidence are dropped, not indexed.",
    )
    ocr_memory_mb: int = Field(
        default=2048,
        ge=512,
        description="Address-space cap of the OCR process (ONNX Runtime reserves more address "
        "space than it uses: a dense page at 100 dpi peaks near 1.3 GB of it, ~0.8 GB resident).",
    )
    ocr_threads: int = Field(default=2, ge=1, le=64)
    ocr_dpi: int = Field(
        default=100, ge=50, le=400, description="Resolution scanned pages are drawn at."
    )
    ocr_figure_min_area: float = Field(
        default=0.05,
        gt=0.0,
        le=1.0,
        description="A figure is read when it covers at least this share of its page.",
    )

    @property
    def max_file_bytes(self) -> int:
        """The size limit every way in shares (`folio ingest`, chat uploads, the web page)."""
        return int(self.max_file_mb * 1_000_000)


class QueueSettings(BaseModel):
    max_pending: int = Field(default=200, ge=1)
    max_pending_per_user: int = Field(default=5, ge=1)
    edit_interval_s: float = Field(default=1.0, ge=0.0)
    backend: Literal["sqlite", "redis"] = Field(
        default="sqlite",
        description="sqlite: this process's own queue in data/bot.sqlite; redis: one queue "
        "shared by every Folio process using the same Redis (URL from FOLIO_REDIS_URL or "
        "REDIS_URL) and redis_prefix.",
    )
    redis_prefix: str = Field(
        default="folio",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="The namespace of every Redis key and channel; processes with the same "
        "prefix share one queue.",
    )
    claim_timeout_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="redis: a running job whose process stopped heartbeating this long ago "
        "(it died) goes back in line for another process.",
    )
    redis_retention_days: float = Field(
        default=7.0,
        gt=0,
        le=3650,
        description="redis: how long a finished job (and its idempotency key) stays in Redis.",
    )


class StoreSettings(BaseModel):
    backend: Literal["sqlite", "postgres"] = Field(
        default="sqlite",
        description="sqlite: this node's own documents.sqlite and FAISS files in the data dir; "
        "postgres: documents, chunks, vectors (pgvector) and keyword search in one Postgres "
        "database shared by every node (URL from FOLIO_DATABASE_URL or DATABASE_URL).",
    )
    pool_size: int = Field(default=4, ge=1, le=64, description="postgres: connections kept.")
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="postgres: giving up on one connection attempt."
    )
    pool_timeout_s: float = Field(
        default=10.0, gt=0, le=600,
        description="postgres: waiting for a connection (pool busy, or the database away) "
        "before the job is put back in line.",
    )
    statement_timeout_s: float = Field(
        default=30.0, gt=0, le=3600, description="postgres: the longest one query may run."
    )
    vector_search: Literal["exact", "hnsw"] = Field(
        default="exact",
        description="postgres: exact scans every vector of the collection (always the true "
        "nearest); hnsw uses an approximate graph index (faster on very large collections).",
    )
    hnsw_ef_search: int = Field(default=100, ge=10, le=1000)


class Settings(BaseSettings):
    """Every setting of Folio; see config/folio.toml for the documented defaults."""

    model_config = SettingsConfigDict(
        env_prefix="FOLIO_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (for a child process: `folio bench` phases, the parse child) as its platform
        sections' models and its values, because the class with those sections is made at start
        (`settings_class`) and cannot be found by name in the child."""
        sections = {name: type(getattr(self, name)) for name in type(self).model_fields
                    if name not in Settings.model_fields}
        return (_rebuild_settings, (sections, dict(self.__dict__)))

    data_dir: Path = Path("data")
    default_collection: str = "default"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    embedding: EmbeddingSettings = EmbeddingSettings()
    generator: GeneratorSettings = GeneratorSettings()
    answer: AnswerSettings = AnswerSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    ingest: IngestSettings = IngestSettings()
    queue: QueueSettings = QueueSettings()
    store: StoreSettings = StoreSettings()
    # The platforms' sections ([discord], [web], ...) are added by `load_settings(sections=...)`:
    # each platform's folder declares its own (see config.sections).

    # Secrets: only from the environment (never from the TOML file), under their usual names.
    redis_url: SecretStr | None = Field(default=None, exclude=True)  # may carry a password
    database_url: SecretStr | None = Field(default=None, exclude=True)  # may carry a password
    generator_api_key: SecretStr | None = Field(default=None, exclude=True)

    @field_validator("default_collection")
    @classmethod
    def _collection_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not echo the URL: it may carry a password.
        if value is not None and not re.match(
            r"^(redis|rediss|unix)://\S+$", value.get_secret_value().strip()
        ):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The message must not echo the URL: it may carry a password.
        if value is not None and not re.match(
            r"^postgres(ql)?://\S+$", value.get_secret_value().strip()
        ):
            raise ValueError("must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _store_backend_needs(self) -> Settings:
        if self.store.backend == "postgres" and self.database_url is None:
            raise ValueError(
                'store.backend = "postgres" needs the database URL in FOLIO_DATABASE_URL or '
                "DATABASE_URL (e.g. postgresql://folio@127.0.0.1:5432/folio)"
            )
        return self

    @model_validator(mode="after")
    def _queue_backend_needs(self) -> Settings:
        if self.queue.backend == "redis" and self.redis_url is None:
            raise ValueError(
                'queue.backend = "redis" needs the Redis URL in FOLIO_REDIS_URL or REDIS_URL '
                "(e.g. redis://127.0.0.1:6379/0)"
            )
        return self

    def section(self, name: str, model: type[S]) -> S:
        """The platform section `[name]`, typed (it was validated with everything else)."""
        value = getattr(self, name, None)
        if not isinstance(value, model):
            raise ConfigError(
                f"the settings have no [{name}] section of {model.__name__}: load them with "
                "its platform's sections (bot.app.load_settings)"
            )
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

    @property
    def originals_dir(self) -> Path:
        """The indexed PDFs as uploaded (`rag.originals`), so a citation opens its page."""
        return self.data_dir / "originals"

    @property
    def model_cache_dir(self) -> Path:
        """Models Folio derives locally from the packaged ones (the int8 ONNX embedder)."""
        return self.embedding.cache_dir or self.data_dir / "models"


_SECRET_ENV = {
    "redis_url": "FOLIO_REDIS_URL",
    "database_url": "FOLIO_DATABASE_URL",
    "generator_api_key": "FOLIO_GENERATOR_API_KEY",
}


def load_settings(
    *, sections: Mapping[str, type[SectionSettings]] | None = None, **overrides: Any
) -> Settings:
    """Read and validate the settings, or raise ConfigError with one readable line per problem.

    `sections` are the platforms' own sections by name (`[discord]`: its model), which their
    folders declare; the composition root passes them (`bot.app.load_settings`). A section's
    secret fields are read only from their environment variables (into a section given in
    `overrides` as a dict too; one given as a model is taken as it is).
    """
    sections = dict(sections or {})
    config_file = Path(os.environ.get("FOLIO_CONFIG", DEFAULT_CONFIG_FILE))
    if "FOLIO_CONFIG" in os.environ and not config_file.is_file():
        raise ConfigError(f"FOLIO_CONFIG names {config_file}, which is not a file.")
    _reject_secrets_in_file(config_file, sections)
    values: dict[str, Any] = {
        field: SecretStr(os.environ[env])
        for field, env in _SECRET_ENV.items()
        if os.environ.get(env)
    }
    if "redis_url" not in values and os.environ.get("REDIS_URL"):  # the usual name on PaaS
        values["redis_url"] = SecretStr(os.environ["REDIS_URL"])
    if "database_url" not in values and os.environ.get("DATABASE_URL"):
        values["database_url"] = SecretStr(os.environ["DATABASE_URL"])
    for name, model in sections.items():
        found = read_secrets(model, os.environ)
        given = overrides.get(name)
        if isinstance(given, Mapping):  # a partial section: its secrets still come from the env
            overrides[name] = {**found, **given}
        elif found and given is None:
            values[name] = found  # merged with the file's and the environment's keys
    try:
        return settings_class(sections)(**{**values, **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"Invalid configuration ({config_file}): {problems}") from None


def _rebuild_settings(
    sections: Mapping[str, type[SectionSettings]], values: dict[str, Any]
) -> Settings:
    """Settings from what `Settings.__reduce__` pickled (the values were validated already)."""
    return settings_class(sections).model_construct(**values)


def settings_class(sections: Mapping[str, type[SectionSettings]]) -> type[Settings]:
    """`Settings` with these platform sections added, each validated like the built-in ones."""
    if not sections:
        return Settings
    clash = sorted(set(sections) & set(Settings.model_fields))
    if clash:
        raise ConfigError(f"platform section names taken by core settings: {', '.join(clash)}")
    fields: dict[str, Any] = {name: (model, model()) for name, model in sections.items()}
    return create_model("Settings", __base__=Settings, __doc__=Settings.__doc__, **fields)


def _reject_secrets_in_file(
    config_file: Path, sections: Mapping[str, type[SectionSettings]]
) -> None:
    """Secrets belong in the environment: a token written into the TOML file is refused."""
    import tomllib

    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}") from None
    found = [(key, _SECRET_ENV[key]) for key in sorted(set(data) & set(_SECRET_ENV))]
    generator = data.get("generator")
    if isinstance(generator, dict) and "api_key" in generator:
        found.append(("generator_api_key", _SECRET_ENV["generator_api_key"]))
    queue = data.get("queue")
    if isinstance(queue, dict) and "redis_url" in queue:
        found.append(("redis_url", _SECRET_ENV["redis_url"]))
    store = data.get("store")
    if isinstance(store, dict) and "database_url" in store:
        found.append(("database_url", _SECRET_ENV["database_url"]))
    for name, model in sections.items():
        table = data.get(name)
        if isinstance(table, dict):
            found.extend(
                (f"{name}.{field}", env)
                for field, env in secret_fields(model).items()
                if field in table
            )
        found.extend(  # the old top-level spelling, such as discord_token
            (key, env)
            for field, env in secret_fields(model).items()
            if (key := f"{name}_{field}") in data
        )
    if found:
        names = ", ".join(f"{key} (set {env} instead)" for key, env in found)
        raise ConfigError(f"{config_file} must not contain secrets: {names}.")
