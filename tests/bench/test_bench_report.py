"""The benchmark's pure parts: figures → report → JSON keys and the table people read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import _parser
from bot.measure import bench
from bot.measure import report as bench_report
from config.errors import ConfigError


def _sequential(answer_s: float, ttft_s: float | None, tokens: int) -> dict[str, Any]:
    return {
        "question": "q", "error": None, "abstained": tokens == 0, "answer_s": answer_s,
        "ttft_s": ttft_s, "tokens": tokens, "prompt_tokens": 500 if tokens else 0,
        "retrieval_s": 0.02, "first_token_s": 0.5 if tokens else None,
        "generation_s": 2.5 if tokens else 0.0, "engine_s": answer_s - 0.5,
        "final_edit_s": 0.02,
    }


def _figures() -> tuple[dict[str, Any], ...]:
    ingest = {
        "files": 2, "pages": 100, "chunks": 400, "failures": [], "ingest_seconds": 5.0,
        "embedder_load_s": 1.0, "embed_chunks": 400, "embed_seconds": 2.0,
        "embedding_model": "all-MiniLM-L6-v2",
        "embedder": {"backend": "onnx", "precision": "int8", "identity": "m/384/int8"},
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
    raw = {"load_s": 0.3, "system_info": "CPU : SSE3 = 1 | AVX = 1 | AVX512 = 1 | AMX = 0 |",
           "runs": [
        {"ttft_s": 0.4, "total_s": 2.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
        {"ttft_s": 0.5, "total_s": 4.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
        {"ttft_s": 0.6, "total_s": 3.0, "tokens": 41, "prompt_tokens": 500, "load_s": 0.0},
    ]}
    machine = {"cores": 2, "cpu_model": "Test CPU", "cpu_flags": ["avx2", "avx512_bf16"],
               "python": "3.11", "load_avg_start": [0.1]}
    return ingest, serve, raw, machine


def test_report_has_every_key_and_the_right_figures() -> None:
    report = bench_report.combine_reports([bench_report.build_report(*_figures())])
    assert set(bench_report.REQUIRED_KEYS) <= set(report)
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
    # Folio decodes (41 - 1) / 2 s = 20 tok/s; raw 3 × 40 tokens in (2 - .4) + (4 - .5) + (3 - .6)
    assert report["raw_decode_tokens_per_s"] == pytest.approx(120 / 7.5, abs=0.05)
    assert report["decode_ratio"] == pytest.approx(20 / (120 / 7.5), abs=1e-3)
    assert report["final_edit_p50_ms"] == 20.0
    assert report["answer_breakdown_p50_s"]["engine_final_text_to_final_edit"] == 0.02
    assert report["machine"]["embedder"]["precision"] == "int8"
    assert "AVX512 = 1" in report["machine"]["llama_cpp_system_info"]
    assert report["targets_met"]["answer p50 <= 2.5 s"] is False
    assert report["targets_met"]["overhead <= 1.05x raw llama.cpp"] is False
    assert report["targets_met"]["final text -> final edit p50 <= 50 ms"] is True
    assert report["targets_met"]["ingest >= 15 pages/s"] is True


def test_report_survives_a_run_where_everything_abstained() -> None:
    ingest, serve, raw, machine = _figures()
    serve["sequential"] = [_sequential(0.1, None, 0)]
    raw["runs"] = []
    report = bench_report.combine_reports([bench_report.build_report(ingest, serve, raw, machine)])
    assert report["overhead_ratio"] is None
    assert report["ttft_p50_s"] is None
    assert report["decode_ratio"] is None
    assert report["targets_met"]["TTFT p50 <= 1.0 s"] is None
    assert "TTFT p50 <= 1.0 s -" in bench_report.format_report(report)


def test_table_shows_units_baseline_and_targets() -> None:
    text = bench_report.format_report(bench_report.combine_reports([bench_report.build_report(*_figures())]))
    assert "2 cores (Test CPU)" in text
    assert "avx2 avx512_bf16" in text  # the CPU's features
    assert "SSE3 AVX AVX512" in text and "AMX" not in text.split("llama.cpp")[1].split("\n")[0]
    assert "onnx int8 m/384/int8" in text
    assert "final text -> final edit p50         20.0 ms (max 20.0 ms)" in text
    assert "20.0 pages/s" in text
    assert "30.0 ms / 100.0 ms" in text
    assert "1.333 x" in text
    assert "vs 3.4 pages/s" in text and "vs 3.7 s" in text and "vs 1200 MB" in text
    assert "overhead <= 1.05x raw llama.cpp MISSED" in text
    assert "final text -> final edit p50 <= 50 ms ok" in text


def _run(answer_s: float, raw_total_s: float, tokens_per_s: float, ingest_s: float) -> dict[str, Any]:
    """One repetition's report: Folio answers in answer_s, raw llama.cpp in raw_total_s."""
    ingest, serve, raw, machine = _figures()
    ingest = {**ingest, "ingest_seconds": ingest_s}
    generation = 0.5 + 40 / tokens_per_s
    serve = {**serve, "sequential": [
        {**_sequential(answer_s, 1.0, 41), "generation_s": generation} for _ in range(3)
    ]}
    raw = {**raw, "runs": [{**run, "total_s": raw_total_s, "ttft_s": 0.5} for run in raw["runs"]]}
    return bench_report.build_report(ingest, serve, raw, machine)


def test_repetitions_give_min_median_max_and_each_run_s_own_ratios() -> None:
    runs = [_run(4.0, 4.0, 20.0, 10.0), _run(6.0, 3.0, 10.0, 5.0), _run(5.0, 5.0, 40.0, 20.0)]
    report = bench_report.combine_reports(runs)
    assert report["repeats"] == 3
    assert report["answer_p50_s"] == 5.0
    assert report["spread"]["answer_p50_s"] == {"min": 4.0, "median": 5.0, "max": 6.0}
    assert report["spread"]["ingest_pages_per_s"] == {"min": 5.0, "median": 10.0, "max": 20.0}
    assert report["ingest_pages_per_s"] == 10.0
    # the ratio of each run comes from that run's own Folio and raw figures, side by side
    assert [r["overhead_ratio"] for r in report["runs"]] == [1.0, 2.0, 1.0]
    assert [r["decode_tokens_per_s"] for r in report["runs"]] == [20.0, 10.0, 40.0]
    raw_decode = 40 / (3.0 - 0.5)  # run 2: raw total 3 s, first token at 0.5 s
    assert report["runs"][1]["decode_ratio"] == pytest.approx(10.0 / raw_decode, abs=1e-3)
    # the median ratio is the median of the runs' ratios, not a ratio of medians
    assert report["overhead_ratio"] == 1.0
    assert report["spread"]["answer_breakdown_p50_s"]["generation"]["max"] == 4.5
    assert report["targets_met"]["overhead <= 1.05x raw llama.cpp"] is True
    text = bench_report.format_report(report)
    assert "median (min-max) of 3 runs" in text
    assert "5.0 (4.0-6.0) s" in text
    assert "run 2: Folio/raw 2.0 x (6.0 s vs 3.0 s)" in text


def test_rates_ignore_answers_without_generation() -> None:
    records = [_sequential(3.0, 1.0, 41), _sequential(0.1, None, 0)]
    assert bench_report.decode_rate(records) == 20.0
    assert bench_report.prefill_rate(records) == 1000.0
    assert bench_report.decode_rate([]) is None


def test_the_command_is_registered_with_its_defaults() -> None:
    args = _parser().parse_args(["bench", "--json"])
    assert args.handler is bench.handle
    assert (args.limit, args.concurrency, args.users, args.repeat) == (12, 20, 5, 3)


def test_missing_inputs_are_named(tmp_path: Path, clean_env: None) -> None:
    from bot.app import load_settings

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
    from bot.app import load_settings

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
