"""Fixtures for the CLI tests: `tests/` on sys.path, a clean FOLIO_* environment, and the root
logger restored after each in-process `main()` (it installs its own handlers)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
if str(_TESTS) not in sys.path:
    sys.path.insert(0, str(_TESTS))

from logging_support import restored_root_logger  # noqa: E402  (needs tests/ on sys.path)

_SETTINGS_ENV = (
    "FOLIO_",
    "DISCORD_BOT_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)


def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FOLIO_* settings from the developer's shell; one generator thread, because llama.cpp's
    spinning thread barriers slow down many times over when the cores are shared (CI, other
    test runs), and a 135M model gains little from a second thread."""
    for name in list(os.environ):
        if name.startswith(_SETTINGS_ENV):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FOLIO_GENERATOR__THREADS", "1")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_main(*argv: str) -> Result:
    """`folio ARGV` in-process, its output captured (for module-scoped fixtures)."""
    from bot.cli import main

    out, err = io.StringIO(), io.StringIO()
    with restored_root_logger(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    clean_environment(monkeypatch)
    monkeypatch.chdir(tmp_path)  # a stray relative "data" folder lands in tmp, not the checkout
    with restored_root_logger():
        yield


GUIDE = [
    "Harbor Lights Ferry Company operates passenger boats across the bay. The company was "
    "founded by sailors who wanted a reliable crossing for the island villages.",
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. A single adult ticket "
    "costs 14 euros and children under twelve travel free. The crossing takes forty minutes in "
    "calm weather.",
    "Lost property is kept at the harbour office for thirty days. Passengers can collect items "
    "between nine and five on weekdays.",
]


@dataclass(frozen=True)
class Indexed:
    data_dir: Path
    guide: Path
    pages: list[str]
    ingest: Result


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Indexed]:
    """A data folder whose default collection holds guide.pdf (three pages, the answer to
    "How often does the ferry to Marrow Island depart?" on page 2), ingested by `folio ingest`."""
    import pdfs

    root = tmp_path_factory.mktemp("cli")
    guide = root / "guide.pdf"
    guide.write_bytes(pdfs.make_pdf(GUIDE, title="Harbor"))
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean_environment(monkeypatch)
        result = run_main("--data-dir", str(root / "data"), "ingest", str(guide))
        yield Indexed(root / "data", guide, GUIDE, result)


@pytest.fixture
def folio(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`folio(*argv) -> Result`: run `bot.cli.main` in-process, output captured with capsys."""
    from bot.cli import main

    def run(*argv: str) -> Result:
        capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
