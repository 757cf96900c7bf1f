"""OCR benchmark: pages per second and peak memory of the OCR process, on a scan made here.

    .venv/bin/python scripts/bench_ocr.py [--pages 8] [--dpi 100] [--threads 2] [--json]

Builds an image-only PDF of `--pages` dense text pages (a text PDF drawn to pixels, tilted and
blurred a little, as tests/pdfs.py does), reads it through the real ingest parse path
(`rag.parse.parse_pdf`: the parse child, then the OCR child with its limits) and prints pages/s
(wall clock, model load included, and recogniser time alone), the share of words read back
correctly, and the peak RSS of the child processes. Needs the dev extras (fpdf2).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SENTENCES = [
    "The harbour master inspects every ship before it leaves the bay at night.",
    "The ferry to the island departs every ninety minutes from pier seven.",
    "A single adult ticket costs 14 euros and children under twelve travel free.",
    "Lost property is kept at the harbour office for thirty days.",
    "The lighthouse on Skerry Point was built in 1874 by the harbour board.",
    "Storm warnings are posted on the board beside the ticket office by six.",
]


def page_text(number: int, sentences: int = 24) -> str:
    chosen = [SENTENCES[(number + i) % len(SENTENCES)] for i in range(sentences)]
    return f"Page {number}. " + " ".join(chosen)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import pdfs

    from rag.ocr import OcrOptions
    from rag.parse import ParseLimits, parse_pdf

    texts = [page_text(n) for n in range(1, args.pages + 1)]
    scan = pdfs.scanned_pdf(texts)
    options = replace(OcrOptions(), dpi=args.dpi, threads=args.threads, max_pages=args.pages)
    limits = ParseLimits(max_bytes=200_000_000, max_pages=10_000, timeout_s=600,
                         memory_mb=2048, ocr=options)
    started = time.perf_counter()
    parsed = parse_pdf(scan, limits)
    wall = time.perf_counter() - started
    expected = [set(t.lower().replace(".", "").split()) for t in texts]
    found = [set(p.image_text.lower().replace(".", "").split()) for p in parsed.pages]
    recall = sum(len(e & f) for e, f in zip(expected, found, strict=True)) / sum(map(len, expected))
    figures = {
        "pages": args.pages,
        "dpi": args.dpi,
        "threads": args.threads,
        "pages_read": parsed.pages_from_images,
        "wall_s": round(wall, 2),
        "pages_per_s_wall": round(args.pages / wall, 3),
        "recogniser_s": round(parsed.ocr_seconds, 2),
        "pages_per_s_recogniser": round(args.pages / max(parsed.ocr_seconds, 1e-9), 3),
        "word_recall": round(recall, 3),
        "warnings": list(parsed.warnings),
        "peak_rss_children_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
