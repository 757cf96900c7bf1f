"""The engine keeps each indexed PDF's original bytes (for the web page's citation links): kept on
ingest, replaced with a new version, removed on forget, never addressed by the untrusted name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pdfs
import pytest

from rag.engine import RagEngine
from rag.factory import build_engine
from rag.originals import OriginalFiles


@pytest.fixture(scope="module")
def engine(settings_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RagEngine]:
    settings = settings_factory(tmp_path_factory.mktemp("originals") / "data")
    built = build_engine(settings)
    yield built
    built.close()


def _files(engine: RagEngine) -> list[Path]:
    root = engine._originals._root  # type: ignore[union-attr]
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_ingest_keeps_the_exact_bytes_and_forget_removes_them(engine: RagEngine) -> None:
    data = pdfs.make_pdf(["The tide table is posted at the harbour office."])
    report = engine.ingest_bytes("tides.pdf", data, collection="keep")
    assert report.outcomes[0].status == "added"
    stored = engine.original_file("tides.pdf", collection="keep")
    assert stored is not None and stored.read_bytes() == data
    assert stored.name == f"{report_sha(engine, 'keep', 'tides.pdf')}.pdf"

    engine.forget("tides.pdf", collection="keep")
    assert engine.original_file("tides.pdf", collection="keep") is None
    assert not stored.exists()


def test_a_new_version_replaces_the_old_file(engine: RagEngine) -> None:
    old = pdfs.make_pdf(["The harbour fee is ten euros."])
    new = pdfs.make_pdf(["The harbour fee is twelve euros."])
    engine.ingest_bytes("fees.pdf", old, collection="versions")
    old_path = engine.original_file("fees.pdf", collection="versions")
    assert old_path is not None
    assert engine.ingest_bytes("fees.pdf", new, collection="versions").outcomes[0].status == "replaced"
    new_path = engine.original_file("fees.pdf", collection="versions")
    assert new_path is not None and new_path.read_bytes() == new
    assert not old_path.exists()


def test_a_failed_file_keeps_nothing(engine: RagEngine) -> None:
    before = _files(engine)
    report = engine.ingest_bytes("fake.pdf", b"<html>no</html>", collection="bad")
    assert report.outcomes[0].status == "failed"
    assert engine.original_file("fake.pdf", collection="bad") is None
    assert _files(engine) == before


def test_the_same_file_in_two_collections_is_kept_for_each(engine: RagEngine) -> None:
    data = pdfs.make_pdf(["The pilot boat leaves on the hour."])
    engine.ingest_bytes("pilot.pdf", data, collection="one")
    engine.ingest_bytes("pilot.pdf", data, collection="two")
    engine.forget("pilot.pdf", collection="one")
    kept = engine.original_file("pilot.pdf", collection="two")
    assert kept is not None and kept.read_bytes() == data


def test_paths_come_from_the_digest_never_the_name(tmp_path: Path) -> None:
    files = OriginalFiles(tmp_path)
    with pytest.raises(ValueError):
        files.path("c", "../../etc/passwd")
    assert files.find("c", "../x") is None
    a, b = files.path("a/b", "0" * 64), files.path("a-b", "0" * 64)
    assert a.parent != b.parent  # collections that slug alike still get their own folders
    assert a.parent.parent == tmp_path and b.parent.parent == tmp_path


def report_sha(engine: RagEngine, collection: str, name: str) -> str:
    [doc] = [d for d in engine.documents(collection) if d.name == name]
    return doc.sha256
