"""The one top-k: the same ranking as sorting every eligible score, ties by lower index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge_graph.expand import top_n
from recommender.topk import kth_smallest, top_k


def _by_sorting(row, k, exclude, allowed, above=-np.inf):
    """The definition: every eligible entry sorted by (-score, index), the first k."""
    row = np.asarray(row)
    ok = np.isfinite(row) & (row > above) & allowed
    ok[exclude] = False
    idx = np.flatnonzero(ok)
    order = np.lexsort((idx, -row[idx]))
    return idx[order][:k].tolist()


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 60),
    levels=st.sampled_from([3, 20, 10**6]),  # few levels: many ties at the cut
    seed=st.integers(0, 10**6),
)
def test_top_k_is_the_sorted_eligible_prefix(n, k, levels, seed):
    rng = np.random.default_rng(seed)
    row = (rng.integers(0, levels, n) / levels).astype(np.float32)
    row[rng.random(n) < 0.1] = -np.inf
    exclude = rng.integers(0, n, rng.integers(0, 6))
    allowed = rng.random(n) < 0.8
    idx, sc = top_k(row, k, exclude=[exclude], allowed=allowed)
    want = _by_sorting(row, k, exclude, allowed)
    assert idx[0][: len(want)].tolist() == want
    assert (idx[0][len(want) :] == -1).all() and np.isneginf(sc[0][len(want) :]).all()
    np.testing.assert_array_equal(sc[0][: len(want)], row[want])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2_000, 30_000),
    k=st.integers(1, 250),
    shape=st.sampled_from(["random", "rising", "few levels"]),
    seed=st.integers(0, 10**6),
)
def test_catalogue_sized_rows_rank_as_sorting_does(n, k, shape, seed):
    """Rows many times longer than ``k`` are first cut at a bar drawn from a sample:
    rising scores (a popularity-ordered catalogue) and many ties give the definition's
    answer."""
    rng = np.random.default_rng(seed)
    row = {
        "random": lambda: rng.normal(size=n),
        "rising": lambda: np.sort(rng.normal(size=n)),
        "few levels": lambda: rng.integers(0, 4, n) / 4,
    }[shape]().astype(np.float32)
    row[rng.random(n) < 0.05] = -np.inf
    exclude = rng.integers(0, n, rng.integers(0, 50))
    allowed = rng.random(n) < 0.9
    idx, sc = top_k(row, k, exclude=[exclude], allowed=allowed)
    want = _by_sorting(row, k, exclude, allowed)
    assert idx[0].tolist() == want
    np.testing.assert_array_equal(sc[0], row[want])


@pytest.mark.parametrize("n", [4_000, 10_000, 50_000])
def test_a_sample_that_sees_only_the_best_scores_still_ranks_the_whole_row(n):
    """The few best scores sit exactly where the sample looks (every ``n // 1024``-th
    item), so its bar lets fewer than ``k`` through: the whole row is ranked instead."""
    k = 200
    row = np.full(n, 0.5, dtype=np.float32)
    row[: (k // 4) * (n // 1024) : n // 1024] = 1.0
    want = _by_sorting(row, k, np.zeros(0, int), np.ones(n, bool))
    assert top_k(row, k)[0][0].tolist() == want


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 3_000),
    order=st.sampled_from(["random", "rising", "falling"]),
    levels=st.sampled_from([1, 3, None]),  # one or few levels: the pivot's value repeats
    dtype=st.sampled_from([np.float32, np.float64]),
    data=st.data(),
)
def test_kth_smallest_is_numpys_partition(n, order, levels, dtype, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 10**6)))
    x = (rng.normal(size=n) if levels is None else rng.integers(0, levels, n) / 3).astype(dtype)
    x = {"random": x, "rising": np.sort(x), "falling": np.sort(x)[::-1].copy()}[order]
    before = x.copy()
    k = data.draw(st.integers(0, n - 1))
    assert kth_smallest(x, k) == np.partition(x, k)[k]
    np.testing.assert_array_equal(x, before)  # the caller's values are left as they are


def test_ties_at_the_cut_go_to_the_lower_index():
    row = np.array([0, 2, 3, 3, 1, 2, 0, 1, 3, 2, 0, 3, 3, 1], dtype=np.float32)
    # the four 3s, then two of the three 2s: items 1 and 5, not 9
    assert top_k(row, 6)[0][0].tolist() == [2, 3, 8, 11, 12, 1]
    assert top_k(row, 7)[0][0].tolist() == [2, 3, 8, 11, 12, 1, 5]


def test_rows_of_a_matrix_are_ranked_apart():
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.7]])
    idx, _ = top_k(scores, 2, exclude=[np.array([1]), np.array([], dtype=int)])
    assert idx.tolist() == [[2, 0], [0, 2]]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), k=st.integers(0, 40), seed=st.integers(0, 10**6))
def test_graph_top_n_keeps_positive_scores_in_float64(n, k, seed):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=n), 2)  # ties and non-positive scores
    exclude = rng.integers(0, n, 3)
    idx, vals = top_n(scores, k, exclude=exclude)
    want = _by_sorting(scores, k, exclude, np.ones(n, bool), above=0.0)
    assert idx.tolist() == want and vals.dtype == np.float64
    np.testing.assert_array_equal(vals, scores[want])


def test_masks_and_exclusions_that_do_not_fit_the_scores_are_refused():
    scores = np.array([[0.1, 0.9, 0.5], [0.7, 0.2, 0.3]])
    # a (1, n) mask is shared by every row, as broadcasting it would be
    idx, _ = top_k(scores, 1, allowed=np.array([[True, False, True]]))
    assert idx.tolist() == [[2], [0]]
    with pytest.raises(ValueError):
        top_k(scores, 1, allowed=np.array([True, False]))  # another length
    with pytest.raises(ValueError, match="exclude has 1 index arrays for 2 rows"):
        top_k(scores, 1, exclude=[np.array([1])])
    with pytest.raises(IndexError, match=r"exclude\[0\] holds an index outside 0..2"):
        top_k(scores, 1, exclude=[np.array([3]), np.array([], dtype=int)])
