"""Metrics and splits against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recommender.errors import InputError
from recommender.eval import (
    cold_item_split,
    coverage_at_k,
    evaluate_rankings,
    hit_positions,
    hit_rate_at_k,
    leave_last_out,
    ndcg_at_k,
    topk_from_scores,
)

TOPK = np.array([[5, 2, 7], [1, 0, 3], [4, 6, 8], [9, 3, 2]])
TARGET = np.array([5, 3, 0, 2])  # ranks 0, 2, miss, 2


def test_hit_positions() -> None:
    assert hit_positions(TOPK, TARGET).tolist() == [0, 2, -1, 2]


def test_hit_rate_by_hand() -> None:
    assert hit_rate_at_k(TOPK, TARGET) == pytest.approx(3 / 4)
    assert hit_rate_at_k(TOPK, TARGET, k=1) == pytest.approx(1 / 4)
    assert hit_rate_at_k(TOPK, TARGET, k=2) == pytest.approx(1 / 4)


def test_ndcg_by_hand() -> None:
    expected = (1.0 + 1 / math.log2(4) + 0.0 + 1 / math.log2(4)) / 4  # = 0.5
    assert ndcg_at_k(TOPK, TARGET) == pytest.approx(expected)
    assert ndcg_at_k(TOPK, TARGET, k=1) == pytest.approx(0.25)
    assert ndcg_at_k(np.array([[1, 0]]), np.array([0])) == pytest.approx(1 / math.log2(3))


def test_coverage_by_hand() -> None:
    # distinct items in the top-3 rows: 0..9 all appear -> 10 / 20
    assert coverage_at_k(TOPK, n_items=20) == pytest.approx(0.5)
    # top-1 only: {5, 1, 4, 9}
    assert coverage_at_k(TOPK, n_items=20, k=1) == pytest.approx(4 / 20)


def test_evaluate_rankings_dict() -> None:
    out = evaluate_rankings(TOPK, TARGET, n_items=10, k=3)
    assert out == {"hr@3": 0.75, "ndcg@3": pytest.approx(0.5), "coverage@3": 1.0, "n": 4}


def test_shape_mismatch_is_an_input_error() -> None:
    with pytest.raises(InputError, match="topk_item_idx"):
        hit_rate_at_k(TOPK, TARGET[:2])


def test_leave_last_out_uses_timestamp_then_item_id() -> None:
    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 2, 2, 3],
            "item_id": [30, 10, 20, 5, 7, 8, 1],
            "timestamp": [5, 1, 5, 2, 9, 3, 1],
        }
    )
    train, test = leave_last_out(df)
    # user 1: ties at t=5 between 20 and 30 -> 30 is last; user 2: t=9 -> 7;
    # user 3 has a single row and keeps it in train.
    assert test[["user_id", "item_id"]].values.tolist() == [[1, 30], [2, 7]]
    assert train[train.user_id == 1].item_id.tolist() == [10, 5, 20]
    assert train[train.user_id == 3].item_id.tolist() == [1]
    assert len(train) + len(test) == len(df)


def test_leave_last_out_needs_columns() -> None:
    with pytest.raises(InputError, match="timestamp"):
        leave_last_out(pd.DataFrame({"user_id": [1], "item_id": [1]}))


def test_cold_item_split_removes_items_from_training() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "user_id": np.repeat(np.arange(20), 5),
            "item_id": rng.integers(0, 30, 100),
            "timestamp": np.tile(np.arange(5), 20),
        }
    )
    items = pd.DataFrame({"item_id": np.arange(30)})
    train, test, cold = cold_item_split(df, items, frac=0.1, seed=3)
    _, full_test = leave_last_out(df)
    assert len(cold) == 3
    assert not train.item_id.isin(cold).any()
    assert test.item_id.tolist() == full_test.item_id.tolist()
    assert test.cold.tolist() == full_test.item_id.isin(cold).tolist()
    again = cold_item_split(df, items, frac=0.1, seed=3)[2]
    assert again.tolist() == cold.tolist()


def test_topk_from_scores_excludes_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.9, 0.5], [1.0, 0.0, 0.2, 0.3]])
    top = topk_from_scores(scores, 2, exclude=[np.array([], dtype=int), np.array([0])])
    assert top.tolist() == [[1, 2], [3, 2]]
