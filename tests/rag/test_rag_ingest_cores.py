"""Ingest and the cores it shares: while a later file is parsed ahead (in a child process, on
one core), an embedder that shares cores is asked to leave it one, and gets them all back when
nothing is parsing, after each file and after a failure. Real PDFs, SQLite and FAISS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pdfs
import pytest
from test_rag_reembed import HashEmbedder

from rag.embed import SharesCores, Vectors
from rag.engine import RagEngine
from rag.factory import engine_options
from rag.index import FaissIndex
from rag.store import DocumentStore

DIMENSION = 8


class CoreSharingEmbedder(HashEmbedder):
    """Records each yield_cores() call; fails on a text holding `fail_on`, if set."""

    def __init__(self) -> None:
        super().__init__("cores", DIMENSION)
        self.yields: list[int] = []
        self.fail_on: str | None = None

    def yield_cores(self, count: int) -> None:
        self.yields.append(count)

    def embed_documents(self, texts: Any) -> Vectors:
        if self.fail_on is not None and any(self.fail_on in text for text in texts):
            raise RuntimeError("the embedder broke")
        return super().embed_documents(texts)


@pytest.fixture
def engine_and_embedder(
    settings_factory: Any, tmp_path: Path
) -> Iterator[tuple[RagEngine, CoreSharingEmbedder]]:
    settings = settings_factory(tmp_path / "data")
    embedder = CoreSharingEmbedder()
    assert isinstance(embedder, SharesCores)

    def no_model() -> Any:
        raise AssertionError("ingest needs no generation model")

    store = DocumentStore(settings.documents_db)
    engine = RagEngine(
        store,
        lambda: embedder,
        no_model,
        lambda dimension: FaissIndex(settings.index_dir, dimension),
        engine_options(settings),
    )
    yield engine, embedder
    engine.close()


def write_files(folder: Path, count: int, pages: int) -> list[Path]:
    paths = []
    for number in range(count):
        path = folder / f"file-{number}.pdf"
        words = f"Report {number} covers the harbour budget and the ferry timetable in detail."
        path.write_bytes(pdfs.many_pages_pdf(pages, words=words))
        paths.append(path)
    return paths


def test_a_core_is_left_to_the_parse_ahead_and_given_back_after_each_file(
    engine_and_embedder: tuple[RagEngine, CoreSharingEmbedder], tmp_path: Path
) -> None:
    engine, embedder = engine_and_embedder
    first, *later = write_files(tmp_path, 3, pages=40)
    report = engine.ingest_paths([first, *later], collection="c")
    assert [o.status for o in report.outcomes] == ["added"] * 3
    assert [o.name for o in report.outcomes] == ["file-0.pdf", "file-1.pdf", "file-2.pdf"]
    # File 0 is embedded while file 1 (40 pages, a child process) is still being parsed.
    assert embedder.yields[0] == 1
    assert embedder.yields[-1] == 0
    assert embedder.yields.count(0) >= 3  # each file ends with all cores back
    assert engine.retrieve("When does the ferry leave?", collection="c")


def test_one_file_alone_keeps_every_core(
    engine_and_embedder: tuple[RagEngine, CoreSharingEmbedder], tmp_path: Path
) -> None:
    engine, embedder = engine_and_embedder
    engine.ingest_paths(write_files(tmp_path, 1, pages=3), collection="c")
    assert embedder.yields and set(embedder.yields) == {0}


def test_a_failed_embedding_gives_the_cores_back(
    engine_and_embedder: tuple[RagEngine, CoreSharingEmbedder], tmp_path: Path
) -> None:
    engine, embedder = engine_and_embedder
    embedder.fail_on = "Report 0"
    with pytest.raises(RuntimeError, match="the embedder broke"):
        engine.ingest_paths(write_files(tmp_path, 3, pages=40), collection="c")
    assert embedder.yields[0] == 1 and embedder.yields[-1] == 0
    assert engine.documents("c") == []
