"""The README's first command, end to end, as a new user runs it: `scripts/run` sets up, indexes
the bundled guide, starts the terminal chat on the embedded models (in their child process), and
answers a question typed into it (stdin is a pipe here), with a citation of the guide."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_scripts_run_reaches_the_chat_and_answers_a_question_about_the_guide(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FOLIO_", "DISCORD_", "SLACK_"))}
    env |= {"FOLIO_DATA_DIR": str(tmp_path / "data"), "FOLIO_GENERATOR__THREADS": "1"}
    done = subprocess.run(
        [str(ROOT / "scripts" / "run")],
        input="How do I add a PDF from the terminal?\n", capture_output=True, text=True,
        env=env, cwd=tmp_path, timeout=600, check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Indexing the bundled user guide" in output
    assert re.search(r"\[folio-guide\.pdf p\.\d+\]", done.stdout), done.stdout[-3000:]
    before_sources = [line for line in done.stdout.split("Sources:")[0].splitlines() if line]
    last = re.sub(r"(\s*\[folio-guide\.pdf p\.\d+\])+$", "", before_sources[-1].rstrip())
    assert last.endswith((".", "!", "?")), before_sources  # a complete answer
