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
