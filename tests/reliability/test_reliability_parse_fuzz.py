"""Fuzzing the parse-and-chunk path without models: mutated bytes of real small PDFs go through
`rag.parse._child_main` (the parse child's own error mapping) in-process, then `chunk_document`.

Property: the child either sends pages of text or a one-line reason, within a few seconds, and
chunking never crashes on whatever text comes out. The memory cap the child sets on itself is
skipped here (it would cap pytest); the wall-clock limit is a per-example SIGALRM.
"""

from __future__ import annotations

import functools
import multiprocessing
import signal
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pdfs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_hostile import raw_pdf, text_page_pdf

from rag.chunk import chunk_document
from rag.errors import BadDocumentError
from rag.ingest import safe_document_name
from rag.parse import MIN_PAGE_CHARS, PageText, ParseLimits, _child_main, parse_pdf

EXAMPLE_SECONDS = 5
LIMITS = ParseLimits(max_bytes=5_000_000, max_pages=50, timeout_s=EXAMPLE_SECONDS, memory_mb=512)


@functools.cache
def seeds() -> tuple[bytes, ...]:
    """Real small PDFs: fpdf2 (compressed streams, metadata) and raw (plain-text streams)."""
    return (
        pdfs.make_pdf(
            [
                "The ferry to Marrow Island departs every ninety minutes from Pier 7.",
                "Lost property is kept at the harbour office for thirty days.",
            ],
            title="Harbour guide",
        ),
        text_page_pdf("A plain uncompressed content stream about the lighthouse keeper."),
        pdfs.encrypted_pdf(["Anyone can read this encrypted page text."], user_password=""),
    )


class Hung(BaseException):
    """Raised by SIGALRM; a BaseException so the child's `except Exception` cannot swallow it."""


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def ring(signum: int, frame: Any) -> None:
        raise Hung(f"no result within {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class Sender:
    """Stands in for the child's end of the pipe."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send(self, value: Any) -> None:
        self.sent.append(value)

    def close(self) -> None:
        self.closed = True


@st.composite
def mutated_pdfs(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "duplicate"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=16),
                    st.sampled_from(
                        [
                            b"[",
                            b"<<",
                            b">>",
                            b"(",
                            b"\\",
                            b"stream",
                            b"endobj",
                            b"9999999999",
                            b" 0 R",
                            b"/Length 99999999",
                            b"%%EOF",
                            b"xref",
                            b"\x00",
                        ]
                    ),
                )
            )
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "truncate":
            del data[max(at, 8) :]
        else:
            length = draw(st.integers(1, 256))
            data[at:at] = data[at : at + length] * draw(st.integers(2, 50))
        if not data:
            data = bytearray(b"%PDF-")
    return bytes(data)


def child_result(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """What the parse child would send for `data`, computed in this process."""
    import resource

    sender = Sender()
    with monkeypatch.context() as patch:
        patch.setattr(resource, "setrlimit", lambda *_args: None)
        with deadline(EXAMPLE_SECONDS):
            _child_main(sender, data, LIMITS)  # type: ignore[arg-type]
    assert sender.closed and len(sender.sent) == 1
    kind, payload = sender.sent[0]
    return kind, payload


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=mutated_pdfs())
def test_mutated_pdfs_give_pages_or_a_one_line_reason_and_chunk_cleanly(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, payload = child_result(data, monkeypatch)
    if kind == "error":
        assert isinstance(payload, str) and payload.strip()
        assert "\n" not in payload and "\r" not in payload and len(payload) < 200, payload
        return
    assert kind == "ok"
    title, texts = payload.title, [page.text for page in payload.pages]
    assert payload.parser in ("pypdf", "PDFium")
    assert isinstance(title, str) and len(title) <= 200
    assert isinstance(texts, list) and all(isinstance(t, str) for t in texts)
    assert len(texts) <= LIMITS.max_pages
    pages = [
        PageText(number=i + 1, text=t, has_text=len(t) >= MIN_PAGE_CHARS)
        for i, t in enumerate(texts)
    ]
    chunks = chunk_document(pages, target_words=110, overlap_words=25)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip() and pages[chunk.page - 1].has_text
        assert len(chunk.text.split()) <= 110 + 25 + 110 // 3


def test_the_unmutated_seeds_parse_in_process() -> None:
    """Control for the fuzz test: the seeds themselves come back as text."""
    for seed in seeds():
        sender = Sender()
        with pytest.MonkeyPatch.context() as patch:
            import resource

            patch.setattr(resource, "setrlimit", lambda *_args: None)
            _child_main(sender, seed, LIMITS)  # type: ignore[arg-type]
        kind, document = sender.sent[0]
        assert kind == "ok" and any(len(p.text) >= MIN_PAGE_CHARS for p in document.pages)


def operator_flood_pdf(megabytes: int = 70) -> bytes:
    """A page whose (flate) content stream is `megabytes` MB of real text operators: under
    pypdf's 75 MB inflate limit, but minutes of pure-Python content parsing."""
    import zlib

    compressor = zlib.compressobj(9)
    unit = b"BT /F1 12 Tf 72 720 Td (flood) Tj ET\n" * 1000
    parts = [compressor.compress(unit) for _ in range(megabytes * (1 << 20) // len(unit))]
    stream = b"".join(parts) + compressor.flush()
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream)
            + stream
            + b"\nendstream",
        ]
    )


def test_a_parse_that_runs_too_long_is_killed_with_a_one_line_reason() -> None:
    limits = ParseLimits(max_bytes=5_000_000, max_pages=50, timeout_s=2, memory_mb=4096)
    started = time.monotonic()
    with pytest.raises(BadDocumentError) as caught:
        parse_pdf(operator_flood_pdf(), limits)
    assert str(caught.value) == "parsing took longer than 2 s and was stopped"
    assert time.monotonic() - started < 10
    assert multiprocessing.active_children() == []


def _invisible_or_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf")


@settings(max_examples=300, deadline=None, database=None)
@given(
    name=st.text(
        st.one_of(
            st.sampled_from(["/", "\\", ".", " ", "\n", "\t", "\x07", "\u200b", "\u202e", "\x85"]),
            st.characters(),
        ),
        max_size=200,
    )
)
def test_any_file_name_becomes_a_safe_display_name(name: str) -> None:
    safe = safe_document_name(name)
    assert safe.strip() and len(safe) <= 120, ascii(safe)
    assert "/" not in safe and "\\" not in safe
    assert not any(_invisible_or_control(c) for c in safe), ascii(safe)
    assert safe not in (".", "..")


@pytest.mark.parametrize("name", [". .", "a .", ". a.pdf", "x/. ."])
def test_dots_and_spaces_never_leave_a_blank_or_padded_name(name: str) -> None:
    safe = safe_document_name(name)
    assert safe.strip() and safe == safe.strip(), ascii(safe)


def test_a_name_with_a_lone_surrogate_becomes_encodable() -> None:
    safe_document_name("report\ud800.pdf").encode("utf-8")
