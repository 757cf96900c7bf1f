"""Plain data shared by the RAG core and the bot: no ML imports here, so `bot/` can use them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class Passage:
    """One retrieved chunk with where it came from and how it scored."""

    chunk_id: int
    document: str  # file name as shown to users, e.g. "guide.pdf"
    page: int  # 1-based physical page index
    text: str
    score: float  # fused score used for ranking (higher is better)
    dense_score: float = 0.0  # cosine similarity of the query and chunk embeddings
    keyword_rank: int | None = None  # 1-based rank in the keyword (BM25) list, if present


@dataclass(frozen=True, slots=True)
class Citation:
    """A page the answer relies on, with a short quote verified against that page's stored text."""

    document: str
    page: int
    quote: str
    from_image: bool = False  # the quote was read from an image of the page (OCR), not its text

    def render(self) -> str:
        where = f"{self.document} p.{self.page}"
        return f"[{where}, read from an image]" if self.from_image else f"[{where}]"


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier question/answer pair of the same conversation (for follow-ups)."""

    question: str
    answer: str


@dataclass(slots=True)
class Timings:
    """Seconds spent per stage of one answer."""

    retrieval: float = 0.0
    first_token: float | None = None  # from the start of generation
    generation: float = 0.0
    total: float = 0.0


@dataclass(slots=True)
class Answer:
    """The final result of one question."""

    text: str
    citations: list[Citation]
    retrieved: list[Passage]
    abstained: bool
    shortened: bool = False  # generation hit its budget and the text was trimmed to a full sentence
    model: str = ""
    tokens: int = 0  # tokens generated
    prompt_tokens: int = 0
    timings: Timings = field(default_factory=Timings)
    # Why it declined ("" when it answered), and the best sentence's score on the scale that
    # `retrieval.min_evidence_score` reads (None when a rule decided before sentences were
    # scored): what `folio eval --out` records, so thresholds can be calibrated from one run.
    declined_because: str = ""
    evidence_match: float | None = None

    def closest_pages(self, limit: int = 3) -> list[tuple[str, int]]:
        """Distinct (document, page) pairs of the best retrieved passages, in rank order."""
        seen: list[tuple[str, int]] = []
        for passage in self.retrieved:
            key = (passage.document, passage.page)
            if key not in seen:
                seen.append(key)
            if len(seen) >= limit:
                break
        return seen


Stage = Literal["searching", "writing"]


@dataclass(frozen=True, slots=True)
class AnswerProgress:
    """Streamed while an answer is produced: a stage change, or the text generated so far."""

    stage: Stage
    partial_text: str = ""


ProgressCallback = Callable[[AnswerProgress], None]
CancelCheck = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One indexed document, as `folio docs` lists it."""

    name: str
    pages: int
    chunks: int
    sha256: str
    added_at: str  # ISO-8601 UTC
    pages_without_text: int = 0
    pages_from_images: int = 0  # pages with text read by OCR (scans and figures)


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file of an ingest."""

    name: str
    status: Literal["added", "replaced", "duplicate", "failed"]
    pages: int = 0
    chunks: int = 0
    reason: str = ""  # one line, set when status == "failed" (or a warning otherwise)
    ocr_pages: int = 0  # pages with text read from images (OCR)
    parser: str = ""  # which parser read the text layer ("pypdf", or "PDFium" for a damaged file)


@dataclass(slots=True)
class IngestReport:
    """Summary of one ingest call over one or more files."""

    outcomes: list[FileOutcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def files(self) -> int:
        return len(self.outcomes)

    @property
    def added(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status in ("added", "replaced")]

    @property
    def duplicates(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "duplicate"]

    @property
    def failures(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def pages(self) -> int:
        return sum(o.pages for o in self.added)

    @property
    def chunks(self) -> int:
        return sum(o.chunks for o in self.added)

    @property
    def ocr_pages(self) -> int:
        return sum(o.ocr_pages for o in self.added)


IngestProgressCallback = Callable[[str, int, int], None]
"""Called as (file name, pages done, pages total) while a file is processed. While pages are
read from images (OCR, far slower than text) it is called with `ocr_progress_name(name)`, and
the counts are of those pages only, so a progress bar or message shows them on their own."""

OCR_PROGRESS_PREFIX = "OCR "  # first, so a shortened name in a progress bar still shows it


def ocr_progress_name(name: str) -> str:
    return f"{OCR_PROGRESS_PREFIX}{name}"
