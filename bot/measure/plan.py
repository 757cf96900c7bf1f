"""What a bench run measures: the documents, the questions and the sizes of each phase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DOCS = Path("../shared/eval/pdfs")
DEFAULT_QUESTIONS = Path("../shared/eval/dev.jsonl")


@dataclass(frozen=True, slots=True)
class BenchPlan:
    """What to run: the inputs and the sizes of each measurement."""

    docs: Path
    retrieval: list[str]  # every question: retrieval latency
    sequential: list[str]  # answerable questions asked one at a time
    queued: list[str]  # asked all at once by `users` users
    users: int
    collection: str = "bench"
    repeat: int = 3  # each timed figure is measured this many times
