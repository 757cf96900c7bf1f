"""Hostile PDFs that tests/pdfs.py does not build: raw bytes assembled object by object, so a test
controls exactly what a parser meets (a decompression bomb, 10,000 nested arrays, 10,000 pages).

Import it as a top-level module after putting this folder on sys.path (the conftest does that):

    from reliability_hostile import decompression_bomb_pdf
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

__all__ = [
    "blank_pages_pdf",
    "decompression_bomb_pdf",
    "image_bomb_pdf",
    "nested_arrays_pdf",
    "raw_pdf",
    "text_page_pdf",
]


def raw_pdf(objects: Sequence[bytes], *, root: int = 1) -> bytes:
    """A well-formed PDF whose object n (1-based) is objects[n - 1], with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        xref,
    )
    return bytes(out)


def _stream(data: bytes, *, flate: bool = False, extra: bytes = b"") -> bytes:
    filters = b" /Filter /FlateDecode" if flate else b""
    return b"<< /Length %d%s%s >>\nstream\n" % (len(data), filters, extra) + data + b"\nendstream"


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _page(contents: int, parent: int = 2, font: int = 4) -> bytes:
    return (
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
        b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (parent, contents, font)
    )


def text_page_pdf(text: str) -> bytes:
    """One page showing `text` (Latin-1, no parentheses or backslashes) in Helvetica."""
    content = b"BT /F1 12 Tf 72 720 Td (" + text.encode("latin-1") + b") Tj ET"
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            _page(contents=5),
            _FONT,
            _stream(content),
        ]
    )


@functools.cache
def _deflated_zeros(megabytes: int) -> bytes:
    """`megabytes` MB of NUL bytes, deflated (about 1,000:1) without ever holding them all."""
    compressor = zlib.compressobj(9)
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(megabytes)]
    parts.append(compressor.flush())
    return b"".join(parts)


def decompression_bomb_pdf(megabytes: int = 120) -> bytes:
    """A page with real text plus a ~100 KB content stream that inflates to `megabytes` MB."""
    text = b"BT /F1 12 Tf 72 720 Td (This page hides a decompression bomb behind it.) Tj ET"
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents [5 0 R 6 0 R] "
            b"/Resources << /Font << /F1 4 0 R >> >> >>",
            _FONT,
            _stream(text),
            _stream(_deflated_zeros(megabytes), flate=True),
        ]
    )


def image_bomb_pdf(side: int = 16_000) -> bytes:
    """Page 1: real text. Page 2: a scan-like page whose only content is a `side` x `side`
    greyscale image (256 MB at 16,000) deflated to a few hundred KB."""
    text = b"BT /F1 12 Tf 72 720 Td (The first page of this file is ordinary text about tides.) Tj ET"
    draw = b"q 595 0 0 842 0 0 cm /Im1 Do Q"
    pixels = _deflated_zeros(side * side // (1 << 20))
    image = (
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n"
        % (side, side, len(pixels))
        + pixels
        + b"\nendstream"
    )
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 6 0 R] /Count 2 >>",
            _page(contents=5),
            _FONT,
            _stream(text),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 7 0 R "
            b"/Resources << /XObject << /Im1 8 0 R >> >> >>",
            _stream(draw),
            image,
        ]
    )


def nested_arrays_pdf(depth: int = 10_000) -> bytes:
    """A page whose dictionary holds an array nested `depth` levels deep ([[[[...]]]])."""
    nested = b"[" * depth + b"]" * depth
    text = b"BT /F1 12 Tf 72 720 Td (Deeply nested arrays follow in this page object.) Tj ET"
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 5 0 R "
            b"/Resources << /Font << /F1 4 0 R >> >> /Nested " + nested + b" >>",
            _FONT,
            _stream(text),
        ]
    )


def blank_pages_pdf(count: int = 10_000) -> bytes:
    """`count` blank pages sharing one empty content stream (fast to build: raw objects)."""
    first_page = 4
    kids = b" ".join(b"%d 0 R" % (first_page + i) for i in range(count))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
        _stream(b""),
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 3 0 R >>"] * count
    return raw_pdf(objects)
