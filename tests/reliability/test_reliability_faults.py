"""Faults: `folio ingest` SIGKILLed while it embeds, a missing or corrupt generation model, and a
data folder that cannot be written. Real processes (`python -m bot`) where a crash could take
the test run down with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfs
import pytest
from logging_support import restored_root_logger
from prerequisites import missing
from reliability_env import clean_env, drop_settings_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGES = 96  # two chunks a page: three embedding batches of 64, a few seconds on a busy CPU


def big_pdf() -> bytes:
    sentence = "The harbour ledger entry {n}-{i} records cargo, crew and weather for the crossing."
    return pdfs.make_pdf(
        [
            f"Page {n}. " + " ".join(sentence.format(n=n, i=i) for i in range(12))
            for n in range(PAGES)
        ]
    )


def folio(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv],
        cwd=ROOT,
        env={**clean_env(), "FOLIO_GENERATOR__THREADS": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Killed:
    data_dir: Path
    pdf: Path
    expected_chunks: int
    killed_after_s: float
    doctor: Any
    docs_after_kill: list[dict[str, Any]]
    reingest: Any
    docs_after_reingest: list[dict[str, Any]]


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    """`folio ingest big.pdf` killed with SIGKILL once the first embedding batch reported
    progress; then `doctor --json`, `docs --json`, and the same ingest again."""
    from rag.chunk import chunk_document
    from rag.parse import ParseLimits, parse_pdf

    root = tmp_path_factory.mktemp("killed")
    data_dir, pdf = root / "data", root / "big.pdf"
    pdf.write_bytes(big_pdf())
    parsed = parse_pdf(pdf.read_bytes(), ParseLimits(50_000_000, 2000, 60, 2048))
    expected = len(chunk_document(parsed.pages, 110, 25))
    assert expected > 2 * 64  # control: the file is big enough to be killed mid-embedding

    child = subprocess.Popen(
        [sys.executable, "-m", "bot", "--data-dir", str(data_dir), "ingest", str(pdf)],
        cwd=ROOT,
        env={**clean_env(), "FOLIO_GENERATOR__THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    started = time.monotonic()
    progressed = threading.Event()

    def watch() -> None:
        assert child.stderr is not None
        for line in iter(lambda: child.stderr.read1(4096), b""):  # type: ignore[union-attr]
            if b"page" in line:  # the tqdm bar appears after the first embedded batch
                progressed.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert progressed.wait(90), "folio ingest never reported embedding progress"
        assert child.poll() is None, "the ingest finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    watcher.join(5)
    killed_after = time.monotonic() - started
    assert child.returncode == -signal.SIGKILL

    doctor = folio("--data-dir", str(data_dir), "doctor", "--json")
    docs_after = json.loads(folio("--data-dir", str(data_dir), "docs", "--json").stdout)
    reingest = folio("--data-dir", str(data_dir), "ingest", "--json", str(pdf))
    docs_final = json.loads(folio("--data-dir", str(data_dir), "docs", "--json").stdout)
    return Killed(data_dir, pdf, expected, killed_after, doctor, docs_after, reingest, docs_final)


def test_after_sigkill_mid_ingest_doctor_exits_0(killed: Killed) -> None:
    assert killed.doctor.returncode == 0, killed.doctor.stderr
    json.loads(killed.doctor.stdout)
    assert "Traceback" not in killed.doctor.stderr


def test_after_sigkill_the_document_is_whole_or_absent(killed: Killed) -> None:
    chunks = [d["chunks"] for d in killed.docs_after_kill if d["name"] == "big.pdf"]
    assert chunks in ([], [killed.expected_chunks]), chunks
    assert len(killed.docs_after_kill) <= 1


def test_after_sigkill_the_file_ingests_again_completely(killed: Killed) -> None:
    assert killed.reingest.returncode == 0, killed.reingest.stderr
    report = json.loads(killed.reingest.stdout)
    assert report["failures"] == []
    assert [(d["name"], d["pages"], d["chunks"]) for d in killed.docs_after_reingest] == [
        ("big.pdf", PAGES, killed.expected_chunks)
    ]
    with contextlib.closing(sqlite3.connect(killed.data_dir / "documents.sqlite")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_missing_generation_model_is_one_line_naming_the_path_exit_2(killed: Killed) -> None:
    result = folio(
        "--data-dir",
        str(killed.data_dir),
        "ask",
        "What does the ledger record?",
        # hybrid: the mode that loads the model (evidence answers never need it)
        env={"FOLIO_GENERATOR__MODEL_PATH": "/nonexistent.gguf",
             "FOLIO_GENERATOR__ANSWER_MODE": "hybrid"},
    )
    assert result.returncode == 2, result.stderr
    line = one_line_error(result.stderr)
    assert "/nonexistent.gguf" in line and "does not exist" in line


def test_a_corrupt_gguf_is_a_clear_error_naming_the_path_not_a_traceback(
    killed: Killed, tmp_path: Path
) -> None:
    model = tmp_path / "broken-model.gguf"
    model.write_bytes(b"GGUF" + os.urandom(64 * 1024))  # the magic, then garbage
    result = folio(
        "--data-dir",
        str(killed.data_dir),
        "ask",
        "What does the ledger record?",
        env={"FOLIO_GENERATOR__MODEL_PATH": str(model), "FOLIO_GENERATOR__ANSWER_MODE": "hybrid"},
    )
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    line = one_line_error(result.stderr)
    assert str(model) in line


# --- a data folder that cannot be written ----------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder really read-only for this process: a read-only bind mount of it as root
    (whom permission bits do not stop), else its permission bits."""
    if os.geteuid() == 0:
        if shutil.which("mount") is None:
            missing("making a folder read-only as root needs mount(8)")
        bound = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
        if bound.returncode != 0:
            missing(f"cannot bind-mount {folder}: {bound.stderr.decode().strip()}")
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True)
            yield
        finally:
            if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], check=True)
                pytest.fail(f"{folder} was still in use after the command: a file left open")
        return
    modes = {path: path.stat().st_mode for path in (folder, *folder.rglob("*"))}
    for path in modes:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_read_only_data_folder_is_a_one_line_refusal_that_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    drop_settings_env(monkeypatch)
    monkeypatch.setenv("FOLIO_GENERATOR__THREADS", "1")
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    first.write_bytes(pdfs.make_pdf(["The first file says the pier opens at dawn."]))
    second.write_bytes(pdfs.make_pdf(["The second file says the pier closes at dusk."]))
    with restored_root_logger():
        assert main(["--data-dir", str(data), "ingest", str(first)]) == 0
    capsys.readouterr()
    with read_only(data):
        with pytest.raises(OSError):
            (data / "probe").write_bytes(b"x")  # the kernel refuses writes now
        with restored_root_logger():
            code = main(["--data-dir", str(data), "ingest", str(second)])
        err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    told = [line for line in lines if any(w in line for w in ("read-only", "readonly", "writable"))]
    assert len(told) == 1, err  # one line that says what is wrong with the folder
    with restored_root_logger():
        assert main(["--data-dir", str(data), "docs", "--json"]) == 0
    names = [d["name"] for d in json.loads(capsys.readouterr().out)]
    assert names == ["first.pdf"]
    with restored_root_logger():
        assert main(["--data-dir", str(data), "doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["collections"] == {"default": "ok"}
