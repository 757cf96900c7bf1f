"""`folio` commands run in-process (`bot.cli.main`) against a data folder in tmp_path.

The fast tests never load a model. The slow ones share one data folder, ingested once; every
`main()` call builds its own engine, as the real command does, so each loads its models.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pdfs
import pytest

from rag.index import index_file

Folio = Callable[..., Any]  # conftest.folio: run `folio ARGV`, get (code, out, err)
Indexed = Any  # conftest.Indexed

QUESTION = "How often does the ferry to Marrow Island depart?"


# --- fast: no models ---------------------------------------------------------------------------


def test_a_bad_file_exits_1_and_names_the_problem(folio: Folio, tmp_path: Path) -> None:
    bad = tmp_path / "report.pdf"
    bad.write_bytes(pdfs.html_named_pdf())
    result = folio("--data-dir", str(tmp_path / "data"), "ingest", str(bad))
    assert result.code == 1
    output = result.out + result.err
    assert "report.pdf" in output and "not a PDF" in output
    assert "Indexed 0 of 1 file(s)" in result.out


def test_a_missing_file_exits_1(folio: Folio, tmp_path: Path) -> None:
    result = folio(
        "--data-dir", str(tmp_path / "data"), "ingest", "--json", str(tmp_path / "nope.pdf")
    )
    assert result.code == 1
    summary = json.loads(result.out)
    assert summary["failures"] == [["nope.pdf", "no such file"]]
    assert summary["files"] == 1 and summary["chunks"] == 0


def test_docs_of_an_empty_collection(folio: Folio, tmp_path: Path) -> None:
    result = folio("--data-dir", str(tmp_path / "data"), "docs")
    assert result.code == 0
    assert "No documents in collection 'default'" in result.out
    result = folio("--data-dir", str(tmp_path / "data"), "docs", "--json")
    assert result.code == 0 and json.loads(result.out) == []


def test_global_options_work_after_the_command_too(folio: Folio, tmp_path: Path) -> None:
    after = folio("docs", "--collection", "handbooks", "--data-dir", str(tmp_path / "data"))
    assert after.code == 0, after.err
    assert "No documents in collection 'handbooks'" in after.out
    assert (tmp_path / "data").is_dir()
    # Given before the command and not repeated after it, an option is kept.
    before = folio("--collection", "manuals", "--data-dir", str(tmp_path / "data"), "docs")
    assert "No documents in collection 'manuals'" in before.out


def test_ask_with_nothing_indexed_exits_1(folio: Folio, tmp_path: Path) -> None:
    result = folio("--data-dir", str(tmp_path / "data"), "ask", "Anything?")
    assert result.code == 1
    assert "Nothing is indexed" in result.err and "folio ingest" in result.err


def test_forget_an_unknown_name_exits_1_with_a_clear_message(folio: Folio, tmp_path: Path) -> None:
    result = folio("--data-dir", str(tmp_path / "data"), "forget", "nope.pdf")
    assert result.code == 1
    assert result.err.strip() == (
        "folio: No document named 'nope.pdf' in this collection (indexed: none)."
    )


def test_an_invalid_config_variable_exits_2_with_one_line(
    folio: Folio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_RETRIEVAL__TOP_K", "0")
    result = folio("--data-dir", str(tmp_path / "data"), "docs")
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("folio: Invalid configuration") and "retrieval.top_k" in lines[0]


def test_a_config_file_that_does_not_exist_exits_2(
    folio: Folio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_CONFIG", str(tmp_path / "missing.toml"))
    result = folio("docs")
    assert result.code == 2
    assert "missing.toml" in result.err and "not a file" in result.err


def test_bad_usage_exits_2(folio: Folio) -> None:
    with pytest.raises(SystemExit) as exited:
        folio("ingest")  # no PATH
    assert exited.value.code == 2


def test_python_m_bot_help_works(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOLIO_")}
    completed = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: folio")
    for command in ("ingest", "ask", "docs", "forget", "doctor", "history"):
        assert command in completed.stdout


# --- slow: real models ---------------------------------------------------------------------------


@pytest.mark.slow
def test_ingest_exits_0_with_a_summary(indexed: Indexed) -> None:
    assert indexed.ingest.code == 0, indexed.ingest.err
    assert indexed.ingest.out.startswith("Indexed 1 of 1 file(s): 3 pages, ")
    assert "guide.pdf: added" in indexed.ingest.err


@pytest.mark.slow
def test_docs_json_lists_name_pages_chunks_and_sha256(folio: Folio, indexed: Indexed) -> None:
    result = folio("--data-dir", str(indexed.data_dir), "docs", "--json")
    assert result.code == 0
    (doc,) = json.loads(result.out)
    assert doc["name"] == "guide.pdf"
    assert doc["pages"] == 3
    assert doc["chunks"] >= 3
    assert doc["sha256"] == hashlib.sha256(indexed.guide.read_bytes()).hexdigest()


@pytest.mark.slow
def test_the_data_dir_can_come_from_the_environment(
    folio: Folio, indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_DATA_DIR", str(indexed.data_dir))
    result = folio("docs")
    assert result.code == 0
    assert "guide.pdf" in result.out and "1 document(s), 3 pages in 'default'." in result.out


@pytest.mark.slow
def test_ingesting_again_is_a_duplicate(folio: Folio, indexed: Indexed) -> None:
    result = folio("--data-dir", str(indexed.data_dir), "ingest", "--json", str(indexed.guide))
    assert result.code == 0
    summary = json.loads(result.out)
    assert summary["duplicates"] == ["guide.pdf"] and summary["chunks"] == 0


@pytest.mark.slow
def test_ask_json_has_the_documented_shape(folio: Folio, indexed: Indexed) -> None:
    result = folio("--data-dir", str(indexed.data_dir), "ask", "--json", QUESTION)
    assert result.code == 0, result.err
    record = json.loads(result.out)
    assert {"answer", "citations", "retrieved", "abstained", "seconds"} <= set(record)
    assert record["abstained"] is False
    assert "ninety minutes" in record["answer"]
    assert isinstance(record["seconds"], float) and record["seconds"] > 0
    assert all(isinstance(c, list) and len(c) == 3 for c in record["citations"])
    assert ["guide.pdf", 2] in [c[:2] for c in record["citations"]]
    quote = next(c[2] for c in record["citations"] if c[:2] == ["guide.pdf", 2])
    assert quote and quote in " ".join(indexed.pages[1].split())
    assert record["retrieved"] and all(
        isinstance(r, list) and len(r) == 2 and r[0] == "guide.pdf" for r in record["retrieved"]
    )


@pytest.mark.slow
def test_ask_json_abstains_off_topic(folio: Folio, indexed: Indexed) -> None:
    result = folio(
        "--data-dir",
        str(indexed.data_dir),
        "ask",
        "--json",
        "What is the boiling point of tungsten?",
    )
    assert result.code == 0
    record = json.loads(result.out)
    assert record["abstained"] is True and record["citations"] == []
    # The reply the user sees: the documents don't say, and where to look instead.
    assert record["answer"].startswith("The documents don't say. Closest: ")
    closest = record["answer"].removeprefix("The documents don't say. Closest: ").rstrip(".")
    assert [p.split(" p.")[0] for p in closest.split(", ")] and record["retrieved"]


@pytest.mark.slow
def test_ask_prints_the_answer_and_its_sources(folio: Folio, indexed: Indexed) -> None:
    result = folio("--data-dir", str(indexed.data_dir), "ask", QUESTION)
    assert result.code == 0
    assert "Sources: [guide.pdf p.2]" in result.out
    assert '[guide.pdf p.2] "' in result.out


@pytest.mark.slow
def test_ask_in_hybrid_mode_streams_whole_drafts_then_the_answer(
    folio: Folio, indexed: Indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FOLIO_GENERATOR__ANSWER_MODE", "hybrid")
    result = folio("--data-dir", str(indexed.data_dir), "ask", QUESTION)
    assert result.code == 0
    streamed, _, final = result.out.partition("Sources: [guide.pdf p.2]")
    assert final, result.out
    # Each streamed line is a whole, cited draft (a revised draft starts a line of its own),
    # never the tail of one text glued to another; the answer is not printed twice.
    lines = [line for line in streamed.splitlines() if line.strip() and line != "Answer:"]
    assert lines and all(line.rstrip().endswith("[guide.pdf p.2]") for line in lines), streamed
    assert "ninety minutes" in lines[0]
    assert len(lines) == len(set(lines)), streamed


@pytest.mark.slow
def test_a_mixed_ingest_exits_1_but_keeps_the_good_file(folio: Folio, indexed: Indexed) -> None:
    good = indexed.data_dir.parent / "timetable.pdf"
    good.write_bytes(pdfs.make_pdf(["The night boat leaves the harbour at eleven every day."]))
    bad = indexed.data_dir.parent / "locked.pdf"
    bad.write_bytes(pdfs.encrypted_pdf(["A secret page of text nobody can read."]))
    args = ("--data-dir", str(indexed.data_dir), "--collection", "mixed")
    result = folio(*args, "ingest", "--json", str(bad), str(good))
    assert result.code == 1
    summary = json.loads(result.out)
    assert summary["failures"] == [
        ["locked.pdf", "it needs a password to open (encrypted with a password)"]
    ]
    assert summary["files"] == 2 and summary["pages"] == 1 and summary["chunks"] == 1
    docs = json.loads(folio(*args, "docs", "--json").out)
    assert [d["name"] for d in docs] == ["timetable.pdf"]


@pytest.mark.slow
def test_forget_then_docs_is_empty(folio: Folio, indexed: Indexed) -> None:
    args = ("--data-dir", str(indexed.data_dir), "--collection", "forgetting")
    note = indexed.data_dir.parent / "note.pdf"
    note.write_bytes(pdfs.make_pdf(["The harbour cat is called Biscuit and sleeps on rope."]))
    assert folio(*args, "ingest", str(note)).code == 0
    result = folio(*args, "forget", "note.pdf")
    assert result.code == 0
    assert result.out.startswith("Forgot note.pdf (1 pages, 1 chunks).")
    assert json.loads(folio(*args, "docs", "--json").out) == []
    assert folio(*args, "forget", "note.pdf").code == 1


@pytest.mark.slow
def test_doctor_rebuilds_a_deleted_vector_index(folio: Folio, indexed: Indexed) -> None:
    faiss_file = index_file(indexed.data_dir / "faiss", "default")
    assert faiss_file.exists()
    faiss_file.unlink()
    result = folio("--data-dir", str(indexed.data_dir), "doctor", "--json")
    assert result.code == 0
    assert json.loads(result.out)["collections"]["default"] == "rebuilt"
    assert faiss_file.exists()
    again = folio("--data-dir", str(indexed.data_dir), "doctor", "--json")
    assert json.loads(again.out)["collections"]["default"] == "ok"


@pytest.mark.slow
def test_doctor_checks_the_model_in_a_child_and_names_a_broken_one(
    folio: Folio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = folio("--data-dir", str(tmp_path / "data"), "doctor", "--json")
    assert report.code == 0, report.err
    model = json.loads(report.out)["model"]
    assert model["passed"] is True and model["generated"].strip()
    assert "CPU" in model["system_info"] and model["buffers"]
    assert model["extra_buffers"] is False and model["extra_types"] == []
    text = folio("--data-dir", str(tmp_path / "data"), "doctor")
    assert "model check: passed" in text.out
    assert "extra buffer types off" in text.out

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\xff" * 256)  # a header, then garbage: llama.cpp refuses it
    monkeypatch.setenv("FOLIO_GENERATOR__MODEL_PATH", str(broken))
    failed = folio("--data-dir", str(tmp_path / "data"), "doctor")
    assert failed.code == 1
    [line] = [line for line in failed.out.splitlines() if line.startswith("model check:")]
    assert line.startswith("model check: FAILED, broken.gguf:"), line


def test_chat_talks_to_the_collection_it_is_given(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("FOLIO_", "DISCORD_", "SLACK_"))}
    environment.update(FOLIO_WEB__ENABLED="false", FOLIO_DATA_DIR=str(tmp_path / "data"))
    completed = subprocess.run(
        [sys.executable, "-m", "bot", "--collection", "harbour", "chat"],
        cwd=tmp_path, input="/quit\n", capture_output=True, text=True, timeout=180,
        env=environment, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert 'Folio chat on "harbour"' in completed.stdout

