"""The benchmark's pure parts: figures → report → JSON keys and the table people read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot import bench
from bot.cli import _parser
from config.errors import ConfigError


def _sequential(answer_s: float, ttft_s: float | None, tokens: int) -> dict[str, Any]:
    return {
        "question": "q", "error": None, "abstained": tokens == 0, "answer_s": answer_s,
        "ttft_s": ttft_s, "tokens": tokens, "prompt_tokens": 500 if tokens else 0,
        "retrieval_s": 0.02, "first_token_s": 0.5 if tokens else None,
        "generation_s": 2.5 if tokens else 0.0, "engine_s": answer_s - 0.5,
    }


def _figures() -> tuple[dict[str, Any], ...]:
    ingest = {
        "files": 2, "pages": 100, "chunks": 400, "failures": [], "ingest_seconds": 5.0,
        "embedder_load_s": 1.0, "embed_chunks": 400, "embed_seconds": 2.0,
        "embedding_model": "all-MiniLM-L6-v2",
        "peak_rss_mb": 600.0, "sampled_peak_rss_mb": 590.0, "ru_maxrss_mb": 600.0,
    }
    serve = {
        "ready_s": 2.5, "model": "tiny.gguf", "index_open_ms": 3.0,
        "retrieval_ms": [10.0, 20.0, 30.0, 40.0, 100.0],
        "sequential": [
            _sequential(3.0, 1.0, 41), _sequential(4.0, 1.2, 41), _sequential(5.0, 1.4, 41),
            _sequential(0.1, None, 0),
        ],
        "queue": {"submitted": 4, "answered": 4, "abstained": 1, "failed": [], "total_s": 12.0,
                  "waits_s": [0.0, 3.0, 6.0, 9.0], "ack_ms": [5.0, 6.0, 7.0, 8.0]},
        "edit_interval_s": 1.0, "generator_threads": 2,
        "peak_rss_mb": 900.0, "sampled_peak_rss_mb": 880.0, "ru_maxrss_mb": 900.0,
    }
    raw = {"load_s": 0.3, "runs": [
        {"ttft_s": 0.4, "total_s": 2.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
        {"ttft_s": 0.5, "total_s": 4.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
        {"ttft_s": 0.6, "total_s": 3.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
    ]}
    machine = {"cores": 2, "cpu_model": "Test CPU", "python": "3.11", "load_avg_start": [0.1]}
    return ingest, serve, raw, machine


def test_report_has_every_key_and_the_right_figures() -> None:
    report = bench.build_report(*_figures())
    assert set(bench.REQUIRED_KEYS) <= set(report)
    json.dumps(report)  # one JSON object, nothing unserialisable
    assert report["ingest_pages_per_s"] == 20.0
    assert report["ingest_chunks_per_s"] == 80.0
    assert report["embed_chunks_per_s"] == 200.0
    assert report["retrieval_p50_ms"] == 30.0
    assert report["retrieval_p95_ms"] == 100.0
    assert report["ttft_p50_s"] == 1.2
    assert report["answer_p50_s"] == 4.0  # nearest rank of [0.1, 3, 4, 5]: abstained count too
    assert report["decode_tokens_per_s"] == 20.0  # (41 - 1) / (2.5 - 0.5)
    assert report["prefill_tokens_per_s"] == 1000.0  # 500 / 0.5
    assert report["raw_answer_p50_s"] == 3.0
    assert report["raw_ttft_p50_s"] == 0.5
    # median Folio time of the generated answers (4.0) over the median raw time (3.0)
    assert report["overhead_ratio"] == pytest.approx(1.333, abs=1e-3)
    assert report["queue_answers_per_min"] == 20.0
    assert report["queue_wait_p95_s"] == 9.0
    assert report["queue_answered"] == 4
    assert report["peak_rss_serving_mb"] == 900.0
    assert report["machine"]["cores"] == 2
    assert report["targets_met"]["answer p50 <= 4 s"] is True
    assert report["targets_met"]["overhead <= 1.10x raw llama.cpp"] is False
    assert report["targets_met"]["ingest >= 15 pages/s"] is True


def test_report_survives_a_run_where_everything_abstained() -> None:
    ingest, serve, raw, machine = _figures()
    serve["sequential"] = [_sequential(0.1, None, 0)]
    raw["runs"] = []
    report = bench.build_report(ingest, serve, raw, machine)
    assert report["overhead_ratio"] is None
    assert report["ttft_p50_s"] is None
    assert report["targets_met"]["TTFT p50 <= 1.5 s"] is None
    assert "TTFT p50 <= 1.5 s -" in bench.format_report(report)


def test_table_shows_units_baseline_and_targets() -> None:
    text = bench.format_report(bench.build_report(*_figures()))
    assert "2 cores (Test CPU)" in text
    assert "20.0 pages/s" in text
    assert "30.0 ms / 100.0 ms" in text
    assert "1.333 x" in text
    assert "vs 3.4 pages/s" in text and "vs 3.7 s" in text and "vs 1200 MB" in text
    assert "overhead <= 1.10x raw llama.cpp MISSED" in text
    assert "answer p50 <= 4 s ok" in text


def test_rates_ignore_answers_without_generation() -> None:
    records = [_sequential(3.0, 1.0, 41), _sequential(0.1, None, 0)]
    assert bench.decode_rate(records) == 20.0
    assert bench.prefill_rate(records) == 1000.0
    assert bench.decode_rate([]) is None


def test_the_command_is_registered_with_its_defaults() -> None:
    args = _parser().parse_args(["bench", "--json"])
    assert args.handler is bench._handle
    assert (args.limit, args.concurrency, args.users) == (12, 20, 5)


def test_missing_inputs_are_named(tmp_path: Path, clean_env: None) -> None:
    from config.settings import load_settings

    settings = load_settings(data_dir=tmp_path)
    args = _parser().parse_args(["bench", "--docs", str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match=r"no folder of PDFs at .*nowhere"):
        bench.prepare(settings, args)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.pdf").write_bytes(b"%PDF-")
    args = _parser().parse_args(
        ["bench", "--docs", str(tmp_path / "docs"), "--questions", str(tmp_path / "q.jsonl")]
    )
    with pytest.raises(ConfigError, match="no questions file"):
        bench.prepare(settings, args)


def test_plan_asks_new_questions_in_the_queue_test(tmp_path: Path, clean_env: None) -> None:
    from config.settings import load_settings

    (tmp_path / "a.pdf").write_bytes(b"%PDF-")
    lines = [{"id": str(i), "question": f"q{i}", "doc": "a.pdf", "pages": [1]} for i in range(5)]
    lines.append({"id": "u", "question": "unanswerable", "doc": None, "pages": []})
    questions = tmp_path / "q.jsonl"
    questions.write_text("\n".join(json.dumps(line) for line in lines))
    args = _parser().parse_args([
        "bench", "--docs", str(tmp_path), "--questions", str(questions),
        "--limit", "2", "--concurrency", "4", "--users", "9",
    ])
    _, plan = bench.prepare(load_settings(data_dir=tmp_path), args)
    assert plan.retrieval[-1] == "unanswerable"
    assert plan.sequential == ["q0", "q1"]
    assert plan.queued == ["q2", "q3", "q4", "q0"]
    assert plan.users == 4
