"""The report: pure functions of the phases' figures (medians, spreads, ratios, the table)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bot.measure.stats import percentile

# The tutorial bot this project replaces, measured on the same kind of machine.
BASELINE = {"ingest_pages_per_s": 3.4, "answer_p50_s": 3.7, "peak_rss_mb": 1200.0}
# (report key, comparison, limit, label): issue 14's targets, checked on the medians
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("answer_p50_s", "<=", 2.5, "answer p50 <= 2.5 s"),
    ("ttft_p50_s", "<=", 1.0, "TTFT p50 <= 1.0 s"),
    ("overhead_ratio", "<=", 1.05, "overhead <= 1.05x raw llama.cpp"),
    ("decode_ratio", ">=", 0.95, "decode >= 0.95x raw"),
    ("final_edit_p50_ms", "<=", 50.0, "final text -> final edit p50 <= 50 ms"),
    ("queue_answers_per_min", ">=", 25.0, "burst >= 25 answers/min"),
    ("peak_rss_serving_mb", "<=", 900.0, "serving RSS <= 900 MB"),
    ("peak_rss_ingest_mb", "<=", 1000.0, "ingest RSS <= 1000 MB"),
    ("ingest_pages_per_s", ">=", 15.0, "ingest >= 15 pages/s"),
)
# The figures each repetition reports side by side (ratios from one repetition's own pair).
PER_RUN_KEYS = (
    "overhead_ratio", "answer_p50_s", "raw_answer_p50_s", "decode_ratio",
    "decode_tokens_per_s", "raw_decode_tokens_per_s", "ingest_pages_per_s",
    "embed_chunks_per_s", "final_edit_p50_ms",
)
REQUIRED_KEYS = (
    "ingest_pages_per_s", "ingest_chunks_per_s", "embed_chunks_per_s", "ingest_seconds",
    "retrieval_p50_ms", "retrieval_p95_ms", "ttft_p50_s", "ttft_p95_s", "answer_p50_s",
    "answer_p95_s", "decode_tokens_per_s", "prefill_tokens_per_s", "raw_answer_p50_s",
    "raw_ttft_p50_s", "overhead_ratio", "queue_answers_per_min", "queue_total_s",
    "queue_wait_p95_s", "queue_answered", "peak_rss_serving_mb", "peak_rss_ingest_mb",
    "ready_s", "model", "machine", "decode_ratio", "raw_decode_tokens_per_s",
    "final_edit_p50_ms", "repeats", "spread", "runs",
)


# --- the report (pure functions of the phases' figures) --------------------------------------


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _per_s(count: float, seconds: float) -> float | None:
    return count / seconds if seconds > 0 else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def decode_rate(records: Sequence[dict[str, Any]]) -> float | None:
    """Tokens per second after the first: sum(tokens - 1) / sum(generation - first token)."""
    tokens = seconds = 0.0
    for r in records:
        if r.get("tokens", 0) > 1 and r.get("first_token_s") is not None and r.get("generation_s"):
            tokens += r["tokens"] - 1
            seconds += r["generation_s"] - r["first_token_s"]
    return _per_s(tokens, seconds)


def prefill_rate(records: Sequence[dict[str, Any]]) -> float | None:
    """Prompt tokens per second to the first token: sum(prompt tokens) / sum(first token s)."""
    tokens = seconds = 0.0
    for r in records:
        if r.get("tokens") and r.get("first_token_s"):
            tokens += r["prompt_tokens"]
            seconds += r["first_token_s"]
    return _per_s(tokens, seconds)


def breakdown(records: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """Where a generated answer's time goes (medians, seconds): retrieval, prompt building and
    grounding (the engine's other time), generation, and the bot around the engine (queue,
    history, throttled edits, delivery)."""
    def p50(values: list[float]) -> float | None:
        return _r(_median(values), 3)

    return {
        "retrieval": p50([r["retrieval_s"] for r in records]),
        "prompt_and_grounding": p50(
            [r["engine_s"] - r["retrieval_s"] - r["generation_s"] for r in records]
        ),
        "first_token": p50([r["first_token_s"] for r in records if r["first_token_s"] is not None]),
        "generation": p50([r["generation_s"] for r in records]),
        "bot_around_engine": p50([r["answer_s"] - r["engine_s"] for r in records]),
        "engine_final_text_to_final_edit": p50(
            [r["final_edit_s"] for r in records if r.get("final_edit_s") is not None]
        ),
    }


def build_report(
    ingest: dict[str, Any], serve: dict[str, Any], raw: dict[str, Any], machine: dict[str, Any]
) -> dict[str, Any]:
    """One flat dict of figures (seconds, ms, MB, per-second rates), rounded for people."""
    sequential = serve["sequential"]
    generated = [r for r in sequential if r["tokens"]]
    answer_s = [r["answer_s"] for r in sequential]
    ttft_s = [r["ttft_s"] for r in sequential if r["ttft_s"] is not None]
    engine_ttft = [
        r["retrieval_s"] + r["first_token_s"] for r in generated if r["first_token_s"] is not None
    ]
    runs = raw["runs"]
    raw_total = [run["total_s"] for run in runs]
    raw_decode = _per_s(
        sum(max(0, run["tokens"] - 1) for run in runs),
        sum(run["total_s"] - run["ttft_s"] for run in runs),
    )
    folio_median = _median([r["answer_s"] for r in generated])
    engine_median = _median([r["engine_s"] for r in generated])
    raw_median = _median(raw_total)
    queue = serve["queue"]
    serial = serve.get("queue_serial")
    per_min = _per_s(queue["answered"] * 60, queue["total_s"])
    serial_per_min = _per_s(serial["answered"] * 60, serial["total_s"]) if serial else None
    retrieval = serve["retrieval_ms"]
    folio_decode = decode_rate(generated)
    final_edit = [r["final_edit_s"] * 1000 for r in sequential if r.get("final_edit_s") is not None]
    machine = {
        **machine,
        "embedder": ingest.get("embedder"),
        "llama_cpp_system_info": raw.get("system_info"),
    }
    report: dict[str, Any] = {
        "ingest_pages_per_s": _r(_per_s(ingest["pages"], ingest["ingest_seconds"])),
        "ingest_chunks_per_s": _r(_per_s(ingest["chunks"], ingest["ingest_seconds"])),
        "embed_chunks_per_s": _r(_per_s(ingest["embed_chunks"], ingest["embed_seconds"])),
        "ingest_seconds": _r(ingest["ingest_seconds"]),
        "ingest_files": ingest["files"],
        "ingest_pages": ingest["pages"],
        "ingest_chunks": ingest["chunks"],
        "ingest_failures": ingest["failures"],
        "embedder_load_s": _r(ingest["embedder_load_s"]),
        "retrieval_p50_ms": _r(percentile(retrieval, 0.5), 1),
        "retrieval_p95_ms": _r(percentile(retrieval, 0.95), 1),
        "index_open_ms": _r(serve["index_open_ms"], 1),
        "ttft_p50_s": _r(percentile(ttft_s, 0.5)),
        "ttft_p95_s": _r(percentile(ttft_s, 0.95)),
        "engine_ttft_p50_s": _r(percentile(engine_ttft, 0.5)),
        "answer_p50_s": _r(percentile(answer_s, 0.5)),
        "answer_p95_s": _r(percentile(answer_s, 0.95)),
        "engine_answer_p50_s": _r(engine_median),
        "decode_tokens_per_s": _r(folio_decode, 1),
        "prefill_tokens_per_s": _r(prefill_rate(generated), 1),
        "answer_tokens_p50": _r(_median([r["tokens"] for r in generated]), 1),
        "prompt_tokens_p50": _r(_median([r["prompt_tokens"] for r in generated]), 1),
        "raw_answer_p50_s": _r(percentile(raw_total, 0.5)),
        "raw_ttft_p50_s": _r(percentile([run["ttft_s"] for run in runs], 0.5)),
        "raw_decode_tokens_per_s": _r(raw_decode, 1),
        "decode_ratio": _r(folio_decode / raw_decode if folio_decode and raw_decode else None, 3),
        "final_edit_p50_ms": _r(_median(final_edit), 1),
        "final_edit_max_ms": _r(max(final_edit), 1) if final_edit else None,
        "overhead_ratio": _r(
            folio_median / raw_median if folio_median and raw_median else None, 3
        ),
        "overhead_folio_median_s": _r(folio_median, 3),
        "overhead_raw_median_s": _r(raw_median, 3),
        "engine_overhead_ratio": _r(
            engine_median / raw_median if engine_median and raw_median else None, 3
        ),
        "answer_breakdown_p50_s": breakdown(generated),
        "queue_submitted": queue["submitted"],
        "queue_answered": queue["answered"],
        "queue_abstained": queue["abstained"],
        "queue_failed": len(queue["failed"]),
        "queue_total_s": _r(queue["total_s"]),
        "queue_answers_per_min": _r(per_min, 1),
        "queue_concurrency": serve.get("concurrency", 1),
        "queue_answers_per_min_serial": _r(serial_per_min, 1),
        "queue_speedup": _r(per_min / serial_per_min if per_min and serial_per_min else None, 2),
        "queue_wait_p50_s": _r(percentile(queue["waits_s"], 0.5)),
        "queue_wait_p95_s": _r(percentile(queue["waits_s"], 0.95)),
        "ack_p95_ms": _r(percentile(queue["ack_ms"], 0.95), 1),
        "peak_rss_serving_mb": serve["peak_rss_mb"],
        "peak_rss_ingest_mb": ingest["peak_rss_mb"],
        "ready_s": _r(serve["ready_s"]),
        "model": serve["model"],
        "model_weights": serve.get("model_weights"),
        "embedding_model": ingest["embedding_model"],
        "questions": {
            "retrieval": len(retrieval),
            "sequential": len(sequential),
            "generated": len(generated),
            "abstained": sum(1 for r in sequential if r["abstained"]),
            "queued": queue["submitted"],
        },
        "settings": {
            "generator_backend": serve.get("backend", "local"),
            "generator_concurrency": serve.get("concurrency", 1),
            "generator_threads": serve.get("generator_threads"),
            "edit_interval_s": serve.get("edit_interval_s"),
        },
        "machine": machine,
    }
    report["targets_met"] = {
        label: _meets(report.get(key), op, limit) for key, op, limit, label in TARGETS
    }
    return report


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spread(values: Sequence[Any]) -> dict[str, float] | None:
    numbers = [v for v in values if _is_number(v)]
    if not numbers:
        return None
    median: float = statistics.median(numbers)
    if all(isinstance(n, int) for n in numbers) and median == int(median):
        median = int(median)  # counts stay counts ("159 pages", not "159.0")
    return {"min": min(numbers), "median": _r(median, 3) if isinstance(median, float) else median,
            "max": max(numbers)}


def combine_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One report from the repetitions: every number is the median over them (min/median/max
    in `spread`, also for the breakdown), `runs` keeps each repetition's ratio figures side by
    side, and the targets are checked on the medians."""
    if not reports:
        raise ValueError("no repetitions to combine")
    combined: dict[str, Any] = dict(reports[0])
    spread: dict[str, Any] = {}
    for key, first in reports[0].items():
        if _is_number(first) or (first is None and any(_is_number(r.get(key)) for r in reports)):
            figures = _spread([r.get(key) for r in reports])
            if figures is not None:
                spread[key] = figures
                combined[key] = figures["median"]
        elif key == "answer_breakdown_p50_s":
            breakdown_spread = {
                name: _spread([r[key].get(name) for r in reports]) for name in first
            }
            combined[key] = {
                name: None if figures is None else figures["median"]
                for name, figures in breakdown_spread.items()
            }
            spread[key] = breakdown_spread
    combined["spread"] = spread
    combined["runs"] = [
        {"run": number, **{key: r.get(key) for key in PER_RUN_KEYS},
         "load_avg_start": r.get("load_avg_start"), "load_avg_end": r.get("load_avg_end")}
        for number, r in enumerate(reports, start=1)
    ]
    combined["repeats"] = len(reports)
    combined.pop("load_avg_start", None)
    combined.pop("load_avg_end", None)
    combined["targets_met"] = {
        label: _meets(combined.get(key), op, limit) for key, op, limit, label in TARGETS
    }
    return combined


def _meets(value: Any, op: str, limit: float) -> bool | None:
    if not isinstance(value, int | float):
        return None
    return value <= limit if op == "<=" else value >= limit


def format_report(report: dict[str, Any]) -> str:
    """The report as a table for people, with the tutorial baseline and the targets. With more
    than one repetition each timed figure shows its median and (min-max)."""
    spread = report.get("spread", {})

    def show(key: str, unit: str = "", digits: int | None = None) -> str:
        value = report.get(key)
        if value is None:
            return "-"
        text = f"{value:.{digits}f}" if digits is not None else f"{value}"
        figures = spread.get(key)
        if report.get("repeats", 1) > 1 and figures and figures["min"] != figures["max"]:
            text += f" ({figures['min']}-{figures['max']})"
        return f"{text} {unit}".rstrip()

    machine = report["machine"]
    questions = report["questions"]
    on_server = report.get("settings", {}).get("generator_backend", "local") != "local"
    no_raw = "n/a (generation server: no in-process model to compare with)"
    embedder = machine.get("embedder") or {}
    rows = [
        ("CPU features", " ".join(machine.get("cpu_flags") or []) or "unknown"),
        ("embedder", " ".join(
            str(embedder[k]) for k in ("backend", "precision", "identity", "runtime")
            if embedder.get(k)
        ) or "-"),
        ("llama.cpp", _llama_features(machine.get("llama_cpp_system_info"))),
        ("ready (build + warm up both models)", show("ready_s", "s")),
        ("ingest", f"{show('ingest_pages_per_s', 'pages/s')}, "
                   f"{show('ingest_chunks_per_s', 'chunks/s')} "
                   f"({report['ingest_pages']} pages, {report['ingest_chunks']} chunks "
                   f"in {show('ingest_seconds', 's')})"),
        ("embedding alone", show("embed_chunks_per_s", "chunks/s")),
        ("retrieval p50 / p95", f"{show('retrieval_p50_ms', 'ms')} / "
                                f"{show('retrieval_p95_ms', 'ms')}"),
        ("first streamed text p50 / p95", f"{show('ttft_p50_s', 's')} / {show('ttft_p95_s', 's')}"
                                          f" (engine alone {show('engine_ttft_p50_s', 's')})"),
        ("answer p50 / p95", f"{show('answer_p50_s', 's')} / {show('answer_p95_s', 's')}"
                             f" (engine alone {show('engine_answer_p50_s', 's')})"),
        ("decode / prefill", f"{show('decode_tokens_per_s', 'tok/s')} / "
                             f"{show('prefill_tokens_per_s', 'tok/s')}"),
        ("raw llama.cpp answer / TTFT p50", no_raw if on_server else
         f"{show('raw_answer_p50_s', 's')} / {show('raw_ttft_p50_s', 's')}, decode "
         f"{show('raw_decode_tokens_per_s', 'tok/s')}"),
        ("overhead vs raw llama.cpp", no_raw if on_server else
         f"{show('overhead_ratio', 'x')} (engine alone {show('engine_overhead_ratio', 'x')}); "
         f"decode {show('decode_ratio', 'x')} raw"),
        ("final text -> final edit p50", f"{show('final_edit_p50_ms', 'ms')} "
                                         f"(max {show('final_edit_max_ms', 'ms')})"),
        ("answer p50 breakdown", ", ".join(
            f"{name.replace('_', ' ')} {value}s"
            for name, value in report["answer_breakdown_p50_s"].items() if value is not None
        )),
        ("queue", f"{report['queue_answered']}/{report['queue_submitted']} answered in "
                  f"{show('queue_total_s', 's')} = {show('queue_answers_per_min', 'answers/min')}"
                  f", wait p95 {show('queue_wait_p95_s', 's')}, ack p95 {show('ack_p95_ms', 'ms')}"),
        *(
            [("queue, parallel vs one at a time",
              f"{report['queue_concurrency']} at once: {show('queue_answers_per_min')} vs "
              f"{show('queue_answers_per_min_serial', 'answers/min')} = "
              f"{show('queue_speedup', 'x')}")]
            if report.get("queue_answers_per_min_serial") is not None else []
        ),
        ("peak RSS serving / ingest", f"{show('peak_rss_serving_mb', 'MB')} / "
                                      f"{show('peak_rss_ingest_mb', 'MB')} "
                                      "(PDF parser process not included)"),
    ]
    width = max(len(label) for label, _ in rows)
    repeats = report.get("repeats", 1)
    lines = [
        f"folio bench: {report['model']}"
        + (f" (loaded as {report['model_weights']})" if report.get("model_weights") == "q8_0"
           else "")
        + f" + {report['embedding_model']} on "
        f"{machine['cores']} cores ({machine['cpu_model']}), load average at start "
        f"{machine.get('load_avg_start')}, end {machine.get('load_avg_end')}",
        f"{questions['retrieval']} questions retrieved, {questions['sequential']} answered one at "
        f"a time ({questions['abstained']} abstained), {questions['queued']} queued at once; "
        + (f"median (min-max) of {repeats} runs" if repeats > 1 else "one run"),
        "",
        *(f"  {label:<{width}}  {value}" for label, value in rows),
    ]
    if report.get("runs"):
        lines += ["", "  each run (ratios from that run's own Folio and raw measurements):"]
        for run in report["runs"]:
            lines.append(
                f"    run {run['run']}: Folio/raw {_fmt(run.get('overhead_ratio'), 'x')} "
                f"({_fmt(run.get('answer_p50_s'), 's')} vs {_fmt(run.get('raw_answer_p50_s'), 's')})"
                f", decode/raw {_fmt(run.get('decode_ratio'), 'x')} "
                f"({_fmt(run.get('decode_tokens_per_s'))} vs "
                f"{_fmt(run.get('raw_decode_tokens_per_s'), 'tok/s')}), ingest "
                f"{_fmt(run.get('ingest_pages_per_s'), 'pages/s')}, final edit "
                f"{_fmt(run.get('final_edit_p50_ms'), 'ms')}, load {run.get('load_avg_start')}"
            )
    lines += [
        "",
        f"  vs tutorial baseline: ingest {show('ingest_pages_per_s')} vs "
        f"{BASELINE['ingest_pages_per_s']} pages/s, answer p50 {show('answer_p50_s')} vs "
        f"{BASELINE['answer_p50_s']} s, RSS {show('peak_rss_serving_mb')} vs "
        f"{BASELINE['peak_rss_mb']:.0f} MB",
        "  targets: " + ", ".join(
            f"{label} {'ok' if met else '-' if met is None else 'MISSED'}"
            for label, met in report["targets_met"].items()
        ),
    ]
    return "\n".join(lines)


def _fmt(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value} {unit}".rstrip()


def _llama_features(system_info: str | None) -> str:
    """The instruction sets llama.cpp was built to use ("AVX512 = 1" or "AVX512 = 1 |" forms)."""
    if not system_info:
        return "-"
    import re

    on = re.findall(r"([A-Z][A-Z0-9_]+)\s*=\s*1", system_info)
    return " ".join(dict.fromkeys(on)) or system_info.strip()[:120]
