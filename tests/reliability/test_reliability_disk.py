"""A data folder on a real small file system that fills up, or turns read-only, during ingest.

The data folder is a tmpfs of a few megabytes mounted for the test (root can mount one; elsewhere
these tests skip, or fail under CI, and test_reliability_faults.py's read-only folder still
runs). `folio` runs as a real process, as an admin would run it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pdfs
import pytest
from prerequisites import missing
from reliability_env import clean_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SIZE_KB = 4096
HEADROOM_KB = 200  # left free by the filler: enough to start, too little for the big file


def folio(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_env() | {"FOLIO_GENERATOR__THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(data), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def mount(target: Path, options: str) -> bool:
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True, text=True,
    )
    return done.returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A `SIZE_KB` tmpfs, unmounted afterwards."""
    target = tmp_path / "disk"
    target.mkdir()
    if not mount(target, f"size={SIZE_KB}k"):
        missing("mounting a tmpfs needs root and mount(8) (and a container allowed to mount)")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def big_pdf() -> bytes:
    sentence = "The lighthouse log {n}-{i} notes the lamp, the fog horn and the keeper's rounds."
    return pdfs.make_pdf(
        [f"Page {n}. " + " ".join(sentence.format(n=n, i=i) for i in range(12)) for n in range(80)]
    )


def fill(disk: Path, leave_kb: int) -> Path:
    stats = os.statvfs(disk)
    free_kb = stats.f_bavail * stats.f_frsize // 1024
    filler = disk / "filler"
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, free_kb - leave_kb) * 1024)
    return filler


def documents(data: Path) -> list[str]:
    listed = folio(data, "docs", "--json")
    assert listed.returncode == 0, listed.stderr
    return sorted(d["name"] for d in json.loads(listed.stdout))


def failure_lines(stderr: str, name: str) -> list[str]:
    return [line for line in stderr.splitlines() if name in line and "FAILED" in line]


def test_a_full_disk_fails_the_file_in_one_line_and_keeps_the_index_whole(
    small_disk: Path, tmp_path: Path
) -> None:
    data = small_disk / "data"
    small, big = tmp_path / "small.pdf", tmp_path / "big.pdf"
    small.write_bytes(pdfs.make_pdf(["The small file says the ferry leaves at seven."]))
    big.write_bytes(big_pdf())
    assert folio(data, "ingest", str(small)).returncode == 0

    filler = fill(small_disk, HEADROOM_KB)
    full = folio(data, "ingest", str(big))

    assert full.returncode == 1, full.stdout + full.stderr
    failed = failure_lines(full.stderr, "big.pdf")
    assert len(failed) == 1 and "disk is full" in failed[0], full.stderr
    assert "Traceback" not in full.stderr  # an expected fault, not a crash
    assert documents(data) == ["small.pdf"]
    doctor = folio(data, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert not list((data / "faiss").glob("*.tmp")), "a torn index copy was left behind"

    filler.unlink()  # space again: the same file now goes in whole, and answers cite it
    again = folio(data, "ingest", str(big))
    assert again.returncode == 0, again.stderr
    assert documents(data) == ["big.pdf", "small.pdf"]
    asked = folio(data, "ask", "--json", "What does the lighthouse log 7-3 note?")
    assert asked.returncode == 0, asked.stderr
    assert ["big.pdf", 8] in [list(r) for r in json.loads(asked.stdout)["retrieved"]]


def test_a_read_only_file_system_fails_the_file_in_one_line_and_changes_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    data = small_disk / "data"
    first, second = tmp_path / "first.pdf", tmp_path / "second.pdf"
    first.write_bytes(pdfs.make_pdf(["The first file says the pier opens at dawn."]))
    second.write_bytes(pdfs.make_pdf(["The second file says the pier closes at dusk."]))
    assert folio(data, "ingest", str(first)).returncode == 0

    remount = subprocess.run(
        ["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True
    )
    assert remount.returncode == 0, remount.stderr
    try:
        refused = folio(data, "ingest", str(second))
        listed_while_read_only = folio(data, "docs", "--json")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)

    assert refused.returncode != 0, refused.stdout
    for done in (refused, listed_while_read_only):
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert "Traceback" not in done.stderr, done.stderr
        assert any("read-only file system" in line for line in lines), done.stderr
    # Writable again: nothing was half-written, the first file is still all there.
    assert documents(data) == ["first.pdf"]
    assert folio(data, "doctor").returncode == 0
