"""Render docs/user-guide.md to bot/sample/folio-guide.pdf (the sample PDF Folio ships).

Each `## ` section starts a new page, so page numbers are stable and citations are checkable.
Run: .venv/bin/python scripts/make_sample_pdf.py
"""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF

ROOT = Path(__file__).resolve().parent.parent


def render(markdown: str) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_title("Folio User Guide")
    pdf.set_author("Folio")
    pdf.set_creation_date(__import__("datetime").datetime(2026, 1, 1))  # reproducible output
    pdf.set_margins(22, 22, 22)
    pdf.set_auto_page_break(True, margin=22)
    pdf.add_page()
    for block in markdown.strip().split("\n\n"):
        block = block.strip()
        if block.startswith("# "):
            pdf.set_font("Helvetica", "B", 20)
            pdf.multi_cell(0, 10, block[2:])
            pdf.ln(4)
        elif block.startswith("## "):
            pdf.add_page()
            pdf.set_font("Helvetica", "B", 15)
            pdf.multi_cell(0, 8, block[3:])
            pdf.ln(3)
        else:
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 6, " ".join(block.split()))
            pdf.ln(3)
    return bytes(pdf.output())


def main() -> None:
    source = ROOT / "docs" / "user-guide.md"
    target = ROOT / "bot" / "sample" / "folio-guide.pdf"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render(source.read_text(encoding="utf-8")))
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
