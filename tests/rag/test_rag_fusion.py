"""Reciprocal rank fusion: score(id) = sum of weight / (k + rank) over the ranked lists."""

from __future__ import annotations

import pytest

from rag.retrieve import reciprocal_rank_fusion


def test_scores_follow_the_rrf_formula() -> None:
    fused = dict(reciprocal_rank_fusion([([10, 20, 30], 1.0), ([30, 40], 1.0)], k=60))
    assert fused[10] == pytest.approx(1 / 61)
    assert fused[20] == pytest.approx(1 / 62)
    assert fused[30] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[40] == pytest.approx(1 / 62)
    assert set(fused) == {10, 20, 30, 40}


def test_results_are_sorted_by_fused_score() -> None:
    fused = reciprocal_rank_fusion([([1, 2, 3], 1.0), ([3, 2, 1], 1.0), ([3], 1.0)], k=1)
    assert [item for item, _ in fused] == [3, 1, 2]
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)


def test_an_item_in_both_lists_beats_the_top_of_one_list() -> None:
    fused = reciprocal_rank_fusion([([1, 2], 1.0), ([3, 2], 1.0)], k=60)
    assert fused[0][0] == 2


def test_weights_scale_each_list() -> None:
    dense, keyword = [1, 2], [2, 1]
    assert reciprocal_rank_fusion([(dense, 2.0), (keyword, 1.0)], k=60)[0][0] == 1
    assert reciprocal_rank_fusion([(dense, 1.0), (keyword, 2.0)], k=60)[0][0] == 2
    fused = dict(reciprocal_rank_fusion([(dense, 0.5), (keyword, 3.0)], k=10))
    assert fused[1] == pytest.approx(0.5 / 11 + 3.0 / 12)


def test_a_zero_weight_list_does_not_change_the_order() -> None:
    fused = reciprocal_rank_fusion([([1, 2, 3], 1.0), ([3, 2, 1], 0.0)], k=60)
    assert [item for item, _ in fused] == [1, 2, 3]


def test_ties_keep_first_seen_order() -> None:
    fused = reciprocal_rank_fusion([([7, 8], 1.0), ([8, 7], 1.0)], k=60)
    assert fused[0][1] == pytest.approx(fused[1][1])
    assert [item for item, _ in fused] == [7, 8]
    fused = reciprocal_rank_fusion([([5], 1.0), ([9], 1.0)], k=60)
    assert [item for item, _ in fused] == [5, 9]


def test_small_k_favours_the_top_ranks_more() -> None:
    # Item 1 is first in one list only; item 9 is fourth in both lists.
    lists = [([1, 2, 3, 9], 1.0), ([4, 5, 6, 9], 1.0)]
    small = dict(reciprocal_rank_fusion(lists, k=1))
    assert small[1] == pytest.approx(1 / 2) and small[9] == pytest.approx(2 / 5)
    assert small[1] > small[9]
    large = dict(reciprocal_rank_fusion(lists, k=60))
    assert large[9] > large[1]


def test_empty_lists_give_nothing() -> None:
    assert reciprocal_rank_fusion([([], 1.0), ([], 1.0)], k=60) == []
    assert reciprocal_rank_fusion([], k=60) == []
