"""Building the engine from settings: the one place that turns `config` into rag objects and
picks the model back ends (models still load on first use)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from config.settings import Settings
from rag.backends import open_originals, open_storage
from rag.compose import CompositionLimits
from rag.embed import Embedder, make_embedder, make_evidence_embedder
from rag.engine import RagEngine
from rag.generate import Generator, LlamaCppGenerator
from rag.models import default_embedding_model, default_generation_model
from rag.ocr import OcrOptions
from rag.options import EngineOptions
from rag.parse import ParseLimits
from rag.prompt import PromptLimits
from rag.retrieve import RetrievalParams


def engine_options(settings: Settings) -> EngineOptions:
    """The engine's tuning from settings (the bench builds prompts with the same limits)."""
    return EngineOptions(
        chunk_words=settings.chunking.target_words,
        chunk_overlap=settings.chunking.overlap_words,
        retrieval=RetrievalParams(
            top_k=settings.retrieval.top_k,
            candidates=settings.retrieval.candidates,
            rrf_k=settings.retrieval.rrf_k,
            dense_weight=settings.retrieval.dense_weight,
            keyword_weight=settings.retrieval.keyword_weight,
        ),
        min_dense_score=settings.retrieval.min_dense_score,
        min_evidence_score=settings.retrieval.min_evidence_score,
        evidence_sentences=settings.retrieval.evidence_sentences,
        abstain_on_unknown_terms=settings.retrieval.abstain_on_unknown_terms,
        relevance_margin=settings.retrieval.relevance_margin,
        evidence_passages=settings.retrieval.evidence_passages,
        follow_up_passages=settings.retrieval.follow_up_passages,
        follow_up_weight=settings.retrieval.follow_up_weight,
        answer_mode=settings.generator.answer_mode,
        composition=CompositionLimits(**settings.answer.model_dump()),
        prompt=PromptLimits(
            max_passages=settings.retrieval.prompt_passages,
            passage_tokens=settings.retrieval.prompt_passage_tokens,
            # In hybrid mode the documents' sentences carry the facts; the model writes a lead.
            answer_tokens=min(settings.generator.max_answer_tokens, settings.generator.lead_tokens)
            if settings.generator.answer_mode == "hybrid"
            else settings.generator.max_answer_tokens,
        ),
        parse=ParseLimits(
            max_bytes=int(settings.ingest.max_file_mb * 1_000_000),
            max_pages=settings.ingest.max_pages,
            timeout_s=settings.ingest.parse_timeout_s,
            memory_mb=settings.ingest.parse_memory_mb,
            text_parser=settings.ingest.text_parser,
            ocr=OcrOptions(
                enabled=settings.ingest.ocr,
                figures=settings.ingest.ocr_figures,
                page_timeout_s=settings.ingest.ocr_page_timeout_s,
                max_pages=settings.ingest.ocr_max_pages,
                min_confidence=settings.ingest.ocr_min_confidence,
                memory_mb=settings.ingest.ocr_memory_mb,
                threads=settings.ingest.ocr_threads,
                dpi=settings.ingest.ocr_dpi,
                figure_min_area=settings.ingest.ocr_figure_min_area,
            ),
        ),
    )


def build_engine(
    settings: Settings, *, generator: Callable[[], Generator] | None = None
) -> RagEngine:
    """Construct the engine from settings (models load on first use). `generator` replaces the
    configured generation back end (another model runner, or a test's)."""
    options = engine_options(settings)
    embedding = settings.embedding
    generation = settings.generator

    def embedder() -> Embedder:
        from rag.models import installed_cache_dir

        return make_embedder(
            embedding.model_path or default_embedding_model(),
            backend=embedding.backend,
            precision=embedding.precision,
            batch_size=embedding.batch_size,
            query_cache_size=embedding.query_cache_size,
            threads=embedding.threads,
            cache_dir=settings.model_cache_dir,
            installed_cache=installed_cache_dir(),
        )

    def evidence_embedder(index_embedder: Embedder) -> Embedder:
        from rag.models import installed_cache_dir

        return make_evidence_embedder(
            index_embedder,
            embedding.evidence_backend,
            embedding.model_path or default_embedding_model(),
            cache_dir=settings.model_cache_dir,
            installed_cache=installed_cache_dir(),
            threads=embedding.threads,
        )

    def make_generator() -> Generator:
        if generation.backend == "openai":
            from rag.generate_openai import OpenAICompatibleGenerator

            api_key = settings.generator_api_key
            return OpenAICompatibleGenerator(
                generation.base_url,
                model_name=generation.model_name,
                api_key=api_key.get_secret_value() if api_key is not None else None,
                context_tokens=generation.context_tokens,
                connect_timeout_s=generation.connect_timeout_s,
                read_timeout_s=generation.read_timeout_s,
                retries=generation.retries,
                temperature=generation.temperature,
                repeat_penalty=generation.repeat_penalty,
                tokenizer_path=generation.tokenizer_path,
            )
        local = functools.partial(
            LlamaCppGenerator,
            generation.model_path or default_generation_model(),
            context_tokens=generation.context_tokens,
            threads=generation.threads,
            batch_tokens=generation.batch_tokens,
            temperature=generation.temperature,
            repeat_penalty=generation.repeat_penalty,
            extra_buffers=generation.extra_buffer_types,
            weights=generation.weights_to_load,
            cache_dir=settings.model_cache_dir,
        )
        if generation.isolate:
            from rag.generate_isolated import IsolatedGenerator

            return IsolatedGenerator(local)
        return local()

    store, index = open_storage(settings)
    return RagEngine(
        store,
        embedder,
        generator or make_generator,
        index,
        options,
        open_originals(settings, store),
        evidence_embedder,
    )
