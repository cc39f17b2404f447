"""Metrics and splits against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recommender.errors import InputError
from recommender.eval import (
    break_ties,
    cold_item_split,
    coverage_at_k,
    evaluate_rankings,
    hit_positions,
    hit_rate_at_k,
    leave_last_out,
    ndcg_at_k,
    shuffle_within_users,
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


def _session_log(n_users: int = 400) -> pd.DataFrame:
    """Every user rates items 0..4 in one session (one timestamp), then item 9 later."""
    rows = []
    for u in range(n_users):
        rows += [(u, i, 1000) for i in range(5)] + [(u, 9, 2000)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_break_ties_shuffles_equal_timestamps_by_seed() -> None:
    df = _session_log()
    out = break_ties(df, seed=3)
    assert len(out) == len(df)
    per_user = out.groupby("user_id")
    assert per_user["timestamp"].apply(lambda s: s.is_monotonic_increasing and s.is_unique).all()
    assert (
        per_user["item_id"].apply(sorted) == df.groupby("user_id")["item_id"].apply(sorted)
    ).all()
    # the later event stays last; its timestamp is untouched
    assert (per_user["item_id"].last() == 9).all() and (per_user["timestamp"].last() == 2000).all()
    # within the session the last item is not the largest id: each of 0..4 about 1/5
    _, test = leave_last_out(out[out["item_id"] != 9])
    shares = test["item_id"].value_counts(normalize=True)
    assert set(shares.index) == {0, 1, 2, 3, 4} and shares.max() < 0.3
    # the same seed gives the same order, another seed another one
    pd.testing.assert_frame_equal(out, break_ties(df, seed=3))
    assert not out["item_id"].equals(break_ties(df, seed=4)["item_id"])


def test_shuffle_within_users_keeps_items_and_times() -> None:
    df = pd.DataFrame(
        {
            "user_id": [1] * 50 + [2] * 3,
            "item_id": list(range(50)) + [7, 8, 9],
            "timestamp": list(range(100, 150)) + [5, 6, 7],
        }
    )
    out = shuffle_within_users(df, seed=0)
    u1 = out[out["user_id"] == 1]
    assert sorted(u1["item_id"]) == list(range(50))
    assert u1["timestamp"].tolist() == list(range(100, 150))  # same times, new order
    assert u1["item_id"].tolist() != list(range(50))
