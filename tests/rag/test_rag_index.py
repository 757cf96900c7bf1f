"""The FAISS index without models: per-collection files, search, remove, rebuild from SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rag.index import FaissIndex, index_file

DIMENSION = 8


def unit(*hot: int) -> np.ndarray:
    vector = np.zeros(DIMENSION, dtype=np.float32)
    vector[list(hot)] = 1.0
    return vector / np.linalg.norm(vector)


def source(pairs: dict[int, np.ndarray]) -> Iterator[tuple[list[int], np.ndarray]]:
    ids = sorted(pairs)
    yield ids, np.stack([pairs[i] for i in ids])


def test_search_is_scoped_to_the_collection_and_scores_are_cosines(tmp_path: Path) -> None:
    index = FaissIndex(tmp_path, DIMENSION)
    index.add("a", [1, 2], np.stack([unit(0), unit(1)]))
    index.add("b", [3], np.stack([unit(0)]))
    hits = index.search("a", unit(0), 5)
    assert hits[0][0] == 1 and abs(hits[0][1] - 1.0) < 1e-6
    assert {i for i, _ in hits} == {1, 2}
    assert [i for i, _ in index.search("b", unit(0), 5)] == [3]
    assert index.search("empty", unit(0), 5) == []


def test_remove_and_replace_persist_across_instances(tmp_path: Path) -> None:
    index = FaissIndex(tmp_path, DIMENSION)
    index.add("a", [1, 2, 3], np.stack([unit(0), unit(1), unit(2)]))
    index.remove("a", [2])
    index.replace("a", [3], [4], np.stack([unit(3)]))
    reopened = FaissIndex(tmp_path, DIMENSION)
    assert reopened.ids("a") == [1, 4]


def test_a_stray_id_triggers_a_rebuild_from_the_source(tmp_path: Path) -> None:
    truth = {1: unit(0), 2: unit(1)}
    index = FaissIndex(tmp_path, DIMENSION)
    index.add("a", [1, 2, 99], np.stack([unit(0), unit(1), unit(5)]))
    assert index.ensure_consistent("a", [1, 2], source(truth)) is True
    assert index.ids("a") == [1, 2]
    assert 99 not in [i for i, _ in index.search("a", unit(5), 5)]
    assert FaissIndex(tmp_path, DIMENSION).ids("a") == [1, 2]  # the rebuild was saved
    assert index.ensure_consistent("a", [1, 2], source(truth)) is False


def test_a_deleted_or_unreadable_file_is_rebuilt(tmp_path: Path) -> None:
    truth = {1: unit(0), 2: unit(1)}
    FaissIndex(tmp_path, DIMENSION).add("a", [1, 2], np.stack([unit(0), unit(1)]))
    index_file(tmp_path, "a").unlink()
    fresh = FaissIndex(tmp_path, DIMENSION)
    assert fresh.ensure_consistent("a", [1, 2], source(truth)) is True
    assert index_file(tmp_path, "a").exists()
    index_file(tmp_path, "a").write_bytes(b"not a faiss index")
    fresh = FaissIndex(tmp_path, DIMENSION)
    assert fresh.ensure_consistent("a", [1, 2], source(truth)) is True
    assert [i for i, _ in fresh.search("a", unit(1), 1)] == [2]


def test_an_index_of_another_dimension_is_rebuilt(tmp_path: Path) -> None:
    FaissIndex(tmp_path, 4).add("a", [1], np.full((1, 4), 0.5, dtype=np.float32))
    index = FaissIndex(tmp_path, DIMENSION)
    assert index.ensure_consistent("a", [1], source({1: unit(0)})) is True
    assert [i for i, _ in index.search("a", unit(0), 1)] == [1]


def test_collections_whose_names_differ_only_in_punctuation_get_separate_files(
    tmp_path: Path,
) -> None:
    first = FaissIndex(tmp_path, DIMENSION)
    first.add("team:1", [1], np.stack([unit(0)]))
    first.add("team_1", [2], np.stack([unit(1)]))
    reopened = FaissIndex(tmp_path, DIMENSION)
    assert reopened.ids("team:1") == [1]
    assert reopened.ids("team_1") == [2]


# --- shared by several processes: generations and the lock ----------------------------------


def test_a_change_is_stamped_with_a_generation_only_when_it_follows_the_last_one(
    tmp_path: Path,
) -> None:
    index = FaissIndex(tmp_path, DIMENSION)
    index.rebuild("a", source({1: unit(0)}), generation=4)
    assert index.generation("a") == 4
    index.add("a", [2], np.stack([unit(1)]), generation=5)  # the next write: stamped
    assert index.generation("a") == 5
    assert FaissIndex(tmp_path, DIMENSION).reload("a") == 5  # saved with the file
    index.add("a", [3], np.stack([unit(2)]), generation=7)  # write 6 was missed: unknown
    assert index.generation("a") is None
    assert FaissIndex(tmp_path, DIMENSION).reload("a") is None
    index.remove("a", [3])  # a change without a generation is unknown too
    assert index.generation("a") is None


def test_reload_reads_what_another_instance_saved(tmp_path: Path) -> None:
    mine, theirs = FaissIndex(tmp_path, DIMENSION), FaissIndex(tmp_path, DIMENSION)
    mine.rebuild("a", source({1: unit(0)}), generation=1)
    assert theirs.ids("a") == [1]
    mine.add("a", [2], np.stack([unit(1)]), generation=2)
    assert theirs.ids("a") == [1]  # its copy in memory is as it was
    assert theirs.reload("a") == 2 and theirs.ids("a") == [1, 2]


def test_a_missing_file_has_no_generation_even_if_its_generation_file_survives(
    tmp_path: Path,
) -> None:
    FaissIndex(tmp_path, DIMENSION).rebuild("a", source({1: unit(0)}), generation=3)
    index_file(tmp_path, "a").unlink()
    assert FaissIndex(tmp_path, DIMENSION).reload("a") is None


def test_the_lock_is_held_against_other_processes(tmp_path: Path) -> None:
    """While this process holds a collection's lock, a process that takes it must wait."""
    import subprocess
    import sys
    import time

    from rag.index import lock_file

    index = FaissIndex(tmp_path, DIMENSION)
    take = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); print('taking', flush=True); "
        "started = time.monotonic(); fcntl.flock(f, fcntl.LOCK_EX); "
        "print(time.monotonic() - started, flush=True)"
    )

    def taker() -> subprocess.Popen[str]:
        other = subprocess.Popen(
            [sys.executable, "-c", take, str(lock_file(tmp_path, "a"))],
            stdout=subprocess.PIPE, text=True,
        )
        assert other.stdout is not None and other.stdout.readline() == "taking\n"
        return other

    def waited(other: subprocess.Popen[str]) -> float:
        assert other.stdout is not None  # (readline: the first one may have buffered it)
        seconds = float(other.stdout.readline())
        other.wait(timeout=30)
        return seconds

    with index.locked("a"), index.locked("a"):  # re-entrant within the process
        other = taker()
        time.sleep(0.5)
        assert other.poll() is None  # still waiting for the lock
    assert waited(other) >= 0.5
    with index.locked("b"):  # another collection's lock is another file
        assert waited(taker()) < 0.5
