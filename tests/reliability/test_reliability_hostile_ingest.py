"""Hostile PDFs through the real ingest path (`build_engine` → `ingest_bytes`, the embedded
embedding model, a real SQLite file and FAISS files).

Every bad file gets one line naming its problem and leaves the index exactly as it was; the parse
child is gone afterwards and the next good file still goes in. Files that are odd but valid
(encrypted with the empty password, Greek-only text, a name with path separators and control
characters) go in correctly. Parse limits are small (20 s, 512 MB) so a bomb is stopped fast.
"""

from __future__ import annotations

import multiprocessing
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pdfs
import pytest
from prerequisites import unicode_font
from reliability_hostile import (
    blank_pages_pdf,
    decompression_bomb_pdf,
    image_bomb_pdf,
    nested_arrays_pdf,
)

from config.settings import Settings
from rag.engine import RagEngine
from rag.factory import build_engine
from rag.index import FaissIndex
from rag.store import DocumentStore
from rag.types import FileOutcome

pytestmark = pytest.mark.slow

COLLECTION = "hostile"
GREEK = (
    "Ο λιμενάρχης ελέγχει κάθε πλοίο πριν φύγει από τον κόλπο τη νύχτα. "
    "Το φέρι για το νησί αναχωρεί κάθε ενενήντα λεπτά από την αποβάθρα επτά."
)


def unicode_pdf(text: str) -> bytes:
    """One page of `text` in DejaVu Sans (fpdf2's core fonts are Latin-1 only)."""
    font = unicode_font()
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.add_font("DejaVu", fname=str(font))
    pdf.set_font("DejaVu", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


@dataclass(frozen=True)
class Snapshot:
    documents: list[tuple[str, int, int, str]]
    sqlite_ids: list[int]
    faiss_ids: list[int]


@dataclass
class Env:
    engine: RagEngine
    settings: Settings
    outcomes: dict[str, FileOutcome] = field(default_factory=dict)

    def snapshot(self) -> Snapshot:
        store = DocumentStore(self.settings.documents_db)
        try:
            sqlite_ids = store.chunk_ids(COLLECTION)
        finally:
            store.close()
        documents = [
            (d.name, d.pages, d.chunks, d.sha256) for d in self.engine.documents(COLLECTION)
        ]
        faiss = FaissIndex(self.settings.index_dir, self.engine.embedder.dimension)
        return Snapshot(documents, sqlite_ids, faiss.ids(COLLECTION))

    def ingest(self, name: str, data: bytes) -> FileOutcome:
        [outcome] = self.engine.ingest_bytes(name, data, collection=COLLECTION).outcomes
        return outcome


@pytest.fixture(scope="module")
def env(reliability_settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings = reliability_settings(
        tmp_path_factory.mktemp("hostile") / "data",
        ingest={"parse_timeout_s": 20, "parse_memory_mb": 512},
    )
    engine = build_engine(settings)
    environment = Env(engine, settings)
    # One good document first, so "unchanged" means something.
    first = environment.ingest(
        "anchor.pdf", pdfs.make_pdf(["The anchor document says the harbour opens at six."])
    )
    assert first.status == "added", first
    yield environment
    engine.close()



# (file name, builder, the reason must match this regex)
REFUSED: list[Any] = [
    pytest.param("empty.pdf", pdfs.empty_bytes, r"the file is empty", id="zero-bytes"),
    pytest.param("login.pdf", pdfs.html_named_pdf, r"not a PDF", id="html-as-pdf"),
    # Both parsers tried: pypdf's reason, and that PDFium could not read it either.
    pytest.param(
        "cut.pdf",
        pdfs.truncated_pdf,
        r"damaged beyond repair: the PDF is broken or truncated .*PDFium cannot read it",
        id="truncated",
    ),
    pytest.param(
        "xref.pdf",
        pdfs.corrupt_xref_pdf,
        r"damaged beyond repair: the PDF is broken or truncated .*PDFium cannot read it",
        id="corrupt-xref",
    ),
    pytest.param(
        "locked.pdf",
        lambda: pdfs.encrypted_pdf(["Only people with the password may read this page."]),
        r"encrypted with a password",
        id="encrypted-unknown-password",
    ),
    pytest.param(
        "locked-aes.pdf",
        lambda: pdfs.aes_encrypted_pdf(
            ["Only people with the password may read this AES page."],
            user_password="open-sesame",
            owner_password="owner",
        ),
        r"needs a password to open",
        id="aes-user-password",
    ),
    # With OCR a blank scan is read, and the reason says that nothing readable was in it.
    pytest.param(
        "scan.pdf",
        pdfs.image_only_pdf,
        r"no text layer, and (OCR found no readable text|.* no text could be read with)",
        id="blank-scan-ocr-finds-nothing",
    ),
    pytest.param(
        "bomb.pdf",
        decompression_bomb_pdf,
        r"decompression bomb|too large|memory",
        id="decompression-bomb-120MB",
    ),
    pytest.param(
        "nested.pdf",
        nested_arrays_pdf,
        r"nested too deeply",
        id="nested-arrays-10000",
    ),
    pytest.param(
        "blank.pdf", blank_pages_pdf, r"10000 pages; the limit is 2000", id="10000-blank-pages"
    ),
]


def refused(env: Env, name: str, build: Callable[[], bytes]) -> FileOutcome:
    """Ingest a bad file once per module (both tests below look at the same outcome)."""
    if name not in env.outcomes:
        env.outcomes[name] = env.ingest(name, build())
    return env.outcomes[name]


@pytest.mark.parametrize(("name", "build"), [pytest.param(*p.values[:2], id=p.id) for p in REFUSED])
def test_a_bad_file_is_refused_and_leaves_the_index_as_it_was(
    env: Env, name: str, build: Callable[[], bytes]
) -> None:
    before = env.snapshot()
    env.outcomes.pop(name, None)
    outcome = refused(env, name, build)

    assert outcome.status == "failed", outcome
    assert outcome.name == name
    assert outcome.reason and "\n" not in outcome.reason and "\r" not in outcome.reason
    assert len(outcome.reason) < 200, outcome.reason
    assert env.snapshot() == before
    assert before.sqlite_ids == before.faiss_ids
    assert multiprocessing.active_children() == []  # the parse child was reaped
    good = env.ingest(f"after-{name}", pdfs.make_pdf([f"After {name} the night ferry still runs."]))
    assert good.status == "added", good


@pytest.mark.parametrize(("name", "build", "reason"), REFUSED)
def test_a_bad_file_reason_names_its_problem(
    env: Env, name: str, build: Callable[[], bytes], reason: str
) -> None:
    outcome = refused(env, name, build)
    assert re.search(reason, outcome.reason), outcome.reason


def test_encrypted_with_the_empty_password_goes_in(env: Env) -> None:
    text = "Anyone may read this encrypted page about the lighthouse keeper."
    outcome = env.ingest("open.pdf", pdfs.encrypted_pdf([text], user_password=""))
    assert (outcome.status, outcome.pages, outcome.chunks) == ("added", 1, 1), outcome
    passages = env.engine.retrieve(
        "Who may read about the lighthouse keeper?", collection=COLLECTION
    )
    assert any(p.document == "open.pdf" and "lighthouse keeper" in p.text for p in passages)


def test_a_permission_locked_aes_file_goes_in(env: Env) -> None:
    """Owner password only (no copy, no print, no text access): anyone may open and read it."""
    text = "The permission locked memo says the crane inspection is every Thursday."
    data = pdfs.aes_encrypted_pdf([text], user_password="", owner_password="boss")
    outcome = env.ingest("memo.pdf", data)
    assert (outcome.status, outcome.pages, outcome.chunks) == ("added", 1, 1), outcome
    passages = env.engine.retrieve("When is the crane inspection?", collection=COLLECTION)
    assert passages and passages[0].document == "memo.pdf"


def test_a_file_with_its_xref_cut_off_is_recovered_by_the_second_parser(env: Env) -> None:
    before = env.snapshot()
    pages = ["The salvage log records that the tug Marlow towed the barge on the third day."]
    outcome = env.ingest("salvage.pdf", pdfs.truncated_xref_pdf(pages))
    assert (outcome.status, outcome.parser) == ("added", "PDFium"), outcome
    assert "read by PDFium (pypdf could not" in outcome.reason
    passages = env.engine.retrieve("Which tug towed the barge?", collection=COLLECTION)
    assert passages and passages[0].document == "salvage.pdf"
    assert "tug Marlow" in passages[0].text
    after = env.snapshot()
    assert len(after.sqlite_ids) == len(before.sqlite_ids) + 1 and after.sqlite_ids == after.faiss_ids


def test_short_rotated_pages_are_short_not_scans(env: Env) -> None:
    from io import BytesIO

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(BytesIO(pdfs.make_pdf(["Hello world"] * 5))).pages:
        writer.add_page(page).rotate(90)
    buffer = BytesIO()
    writer.write(buffer)
    outcome = env.ingest("hello.pdf", buffer.getvalue())
    assert (outcome.status, outcome.pages, outcome.ocr_pages) == ("added", 5, 0), outcome
    assert "nearly empty" in outcome.reason


def test_an_image_decompression_bomb_page_is_skipped_and_the_rest_goes_in(env: Env) -> None:
    before = env.snapshot()
    outcome = env.ingest("tides-bomb.pdf", image_bomb_pdf())
    assert (outcome.status, outcome.pages) == ("added", 2), outcome
    assert "p. 2" in outcome.reason, outcome.reason  # the bomb page, with its reason
    assert multiprocessing.active_children() == []
    store = DocumentStore(env.settings.documents_db)
    try:
        assert "ordinary text about tides" in (store.page_text(COLLECTION, "tides-bomb.pdf", 1) or "")
        assert store.page_text(COLLECTION, "tides-bomb.pdf", 2) == ""
    finally:
        store.close()
    after = env.snapshot()
    assert after.sqlite_ids == after.faiss_ids and len(after.sqlite_ids) > len(before.sqlite_ids)


def test_greek_only_text_goes_in_and_is_found(env: Env) -> None:
    outcome = env.ingest("ελληνικά.pdf", unicode_pdf(GREEK))
    assert (outcome.status, outcome.name) == ("added", "ελληνικά.pdf"), outcome
    store = DocumentStore(env.settings.documents_db)
    try:
        page = store.page_text(COLLECTION, "ελληνικά.pdf", 1)
    finally:
        store.close()
    assert page == GREEK
    passages = env.engine.retrieve("λιμενάρχης πλοίο", collection=COLLECTION)
    assert passages and passages[0].document == "ελληνικά.pdf"


@pytest.mark.parametrize(
    ("hostile", "stored"),
    [
        # the bell is dropped; the newline is whitespace, collapsed to one space like any other
        ("../../etc/\x07evil\n.pdf", "evil .pdf"),
        ("..\\..\\Windows\\system32\\drivers.pdf", "drivers.pdf"),
        ("/abs/path/\u202eexe.pdf", "exe.pdf"),
    ],
    ids=["dotdot-bell-newline", "backslashes", "absolute-bidi"],
)
def test_a_file_name_with_path_separators_and_controls_is_stored_as_a_safe_base_name(
    env: Env, hostile: str, stored: str
) -> None:
    outcome = env.ingest(hostile, pdfs.make_pdf([f"The file {stored} lists the pier times."]))
    assert (outcome.status, outcome.name) == ("added", stored), outcome
    assert stored in [d.name for d in env.engine.documents(COLLECTION)]
    assert env.engine.forget(stored, collection=COLLECTION).name == stored
    # Nothing was written outside the data folder under the hostile name.
    assert not list(env.settings.data_dir.parent.rglob(stored))


def test_a_file_name_with_a_lone_surrogate_gets_an_outcome_not_an_exception(env: Env) -> None:
    before = env.snapshot()
    data = pdfs.make_pdf(["The surrogate file describes the harbour crane schedule."])
    try:
        outcome = env.ingest("crane\ud800.pdf", data)
    finally:
        after = env.snapshot()
        assert after.sqlite_ids == after.faiss_ids
    assert outcome.status in ("added", "failed"), outcome
    if outcome.status == "failed":
        assert after == before
