"""Two processes on one data folder (the running bot and `folio ingest` in a terminal, or two
nodes): each sees the other's documents in its dense search, and neither saves a stale copy of
the vector index over the other's (issue 15, bug 1).

Process A (engine_process.py) keeps one engine for its whole life, as `folio run` does; the
others are the real `folio` command. Every process loads the real embedding model. (The CLI
conftest has already cleaned FOLIO_* from the environment they inherit.)
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pdfs
import pytest

from rag.index import index_file
from rag.store import DocumentStore

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "shared"
# No content word of the question is in the keeper's notes (or their file name), so only the
# dense search can find them: the keyword search comes back without them.
QUESTION = "Who tends the beacon on the coast each evening?"
PAGES = {
    "office.pdf": "The harbour office sells ferry tickets for the island crossing every morning.",
    "keeper-notes.pdf": "The lighthouse keeper climbs the tower at dusk to light the great lamp.",
    "quay.pdf": "Fishing boats unload their catch at the north quay before sunrise.",
}


def folio(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(data), "--collection", COLLECTION, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


class EngineProcess:
    """engine_process.py, spoken to in JSON lines."""

    def __init__(self, data: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("engine_process.py")), str(data),
             COLLECTION],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            bufsize=1,
        )
        assert self._reply(within=180) == {"ready": True}

    def _reply(self, within: float) -> Any:
        out = self.process.stdout
        assert out is not None
        ready, _, _ = select.select([out], [], [], within)
        assert ready, f"no reply from process A within {within} s"
        line = out.readline()
        assert line, f"process A ended (exit {self.process.poll()})"
        return json.loads(line)

    def send(self, **command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self._reply(within=180)

    def ingest(self, path: Path) -> list[str]:
        return [status for _, status, _ in self.send(ingest=str(path))["outcomes"]]

    def found(self, question: str) -> dict[str, int | None]:
        """Document → its best keyword rank (None: found by the dense search alone)."""
        found: dict[str, int | None] = {}
        for document, _page, rank in self.send(retrieve=question)["passages"]:
            found.setdefault(document, rank)
        return found

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for name, text in PAGES.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(pdfs.make_pdf([text]))
    return paths


@pytest.fixture
def process_a(tmp_path: Path) -> Iterator[EngineProcess]:
    process = EngineProcess(tmp_path / "data")
    try:
        yield process
    finally:
        process.stop()


def ids_on_disk(data: Path) -> tuple[list[int], list[int]]:
    """(chunk ids in SQLite, chunk ids in the saved vector index) of the collection."""
    store = DocumentStore(data / "documents.sqlite")
    try:
        expected = store.chunk_ids(COLLECTION)
    finally:
        store.close()
    import faiss

    saved = faiss.read_index(str(index_file(data / "faiss", COLLECTION)))
    return expected, sorted(int(i) for i in faiss.vector_to_array(saved.id_map))


def test_a_document_ingested_by_another_process_is_found_and_kept(
    process_a: EngineProcess, files: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert process_a.ingest(files["office.pdf"]) == ["added"]
    assert set(process_a.found(QUESTION)) == {"office.pdf"}

    by_b = folio(data, "ingest", str(files["keeper-notes.pdf"]))  # process B
    assert by_b.returncode == 0, by_b.stderr

    found = process_a.found(QUESTION)
    assert "keeper-notes.pdf" in found, found
    assert found["keeper-notes.pdf"] is None  # by the dense search: A's copy has B's vectors

    assert process_a.ingest(files["quay.pdf"]) == ["added"]  # A saves its index again
    assert set(process_a.found(QUESTION)) == set(PAGES)
    doctor = folio(data, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["collections"] == {COLLECTION: "ok"}  # nothing to rebuild
    expected, saved = ids_on_disk(data)
    assert saved == expected and len(expected) == 3


def test_a_document_forgotten_by_another_process_leaves_the_dense_search(
    process_a: EngineProcess, files: dict[str, Path], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for name in ("office.pdf", "keeper-notes.pdf"):
        assert process_a.ingest(files[name]) == ["added"]
    assert "keeper-notes.pdf" in process_a.found(QUESTION)
    forgot = folio(data, "forget", "keeper-notes.pdf")
    assert forgot.returncode == 0, forgot.stderr
    assert set(process_a.found(QUESTION)) == {"office.pdf"}
    assert process_a.ingest(files["quay.pdf"]) == ["added"]
    expected, saved = ids_on_disk(data)
    assert saved == expected and len(expected) == 2


def test_two_processes_ingesting_at_once_lose_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folders = [tmp_path / "left", tmp_path / "right"]
    for side, folder in enumerate(folders):
        folder.mkdir()
        for n in range(6):
            text = f"Berth {side}-{n} is kept for the pilot boat on stormy nights number {n}."
            (folder / f"berth-{side}-{n}.pdf").write_bytes(pdfs.make_pdf([text]))
    running = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "--data-dir", str(data), "--collection", COLLECTION,
             "ingest", str(folder)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for folder in folders
    ]
    for process in running:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    expected, saved = ids_on_disk(data)
    assert len(expected) == 12 and saved == expected
    doctor = folio(data, "doctor", "--json")
    assert json.loads(doctor.stdout)["collections"] == {COLLECTION: "ok"}
