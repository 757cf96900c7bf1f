"""The engine's tuning, built from settings by rag.factory (so rag modules never read config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rag.compose import CompositionLimits
from rag.parse import ParseLimits
from rag.prompt import PromptLimits
from rag.retrieve import RetrievalParams


@dataclass(frozen=True, slots=True)
class EngineOptions:
    chunk_words: int
    chunk_overlap: int
    retrieval: RetrievalParams
    min_dense_score: float
    prompt: PromptLimits
    parse: ParseLimits
    min_evidence_score: float = 0.98
    evidence_sentences: int = 6
    abstain_on_unknown_terms: bool = True
    answer_mode: str = "evidence"
    min_support: float = 0.5
    relevance_margin: float = 0.3
    composition: CompositionLimits = field(default_factory=CompositionLimits)
    evidence_passages: int = 10
    follow_up_passages: int = 3
    follow_up_weight: float = 0.6
