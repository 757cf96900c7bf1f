"""`folio bench` end to end on a tiny generated PDF, with the real embedded models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pdfs import make_pdf

from bot.cli import main
from bot.measure import report as bench_report

PAGES = [
    "Folio keeps every uploaded document in a collection. The retention period for documents "
    "is ninety days, after which an administrator must upload them again.",
    "The support desk of Folio answers tickets on weekdays. The support desk phone number is "
    "555-0100 and it is staffed from nine in the morning until five in the afternoon.",
    "Backups of the Folio database are taken every night at two o'clock and kept for a week.",
]
QUESTIONS = [
    ("What is the retention period for documents?", 1),
    ("What is the support desk phone number?", 2),
    ("When are backups of the Folio database taken?", 3),
]


@pytest.mark.slow
def test_bench_reports_every_figure(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "handbook.pdf").write_bytes(make_pdf(PAGES))
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(
        json.dumps({"id": str(n), "question": q, "doc": "handbook.pdf", "pages": [page]})
        for n, (q, page) in enumerate(QUESTIONS)
    ))
    code = main([
        "--data-dir", str(tmp_path / "data"), "bench", "--json",
        "--docs", str(docs), "--questions", str(questions),
        "--limit", "2", "--concurrency", "3", "--users", "2", "--repeat", "2",
    ])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)  # exactly one JSON object on stdout
    for key in bench_report.REQUIRED_KEYS:
        value = report[key]
        if key == "model":
            assert value.endswith(".gguf")
        elif key == "machine":
            assert value["cores"] >= 1 and value["cpu_model"]
            assert value["embedder"]["identity"] and value["llama_cpp_system_info"]
        elif key == "spread":
            for figures in (value["answer_p50_s"], value["ingest_pages_per_s"]):
                assert 0 < figures["min"] <= figures["median"] <= figures["max"]
        elif key == "runs":
            assert [run["run"] for run in value] == [1, 2]
            assert all(run["overhead_ratio"] > 0 and run["decode_ratio"] > 0 for run in value)
        elif key == "repeats":
            assert value == 2
        else:
            assert isinstance(value, int | float) and value > 0, (key, value)
    assert report["ingest_pages"] == 3
    assert report["model_weights"] == "q8_0"  # the embedded model's copy, as Folio loads it
    assert report["queue_answered"] == 3
    assert report["questions"]["generated"] >= 1
    assert not (tmp_path / "data" / "documents.sqlite").exists()  # a temporary data dir was used
