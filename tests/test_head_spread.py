"""The graph blend's scale: a row's maximum minus its median, as NumPy computes them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.serving.stages.candidates import _head_spread


def _definition(row: np.ndarray) -> float:
    finite = row[np.isfinite(row)]
    if finite.size < 2:
        return 1.0
    spread = float(finite.max()) - float(np.median(finite))
    return spread if spread > 0 else 1.0


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 30_000),
    dtype=st.sampled_from([np.float32, np.float64]),
    levels=st.sampled_from([2, 50, None]),  # few levels: ties around the median
    seed=st.integers(0, 10**6),
)
def test_the_spread_is_the_maximum_minus_numpys_median(n, dtype, levels, seed):
    """Rows of a catalogue's size take the median from a bracket the sample draws;
    the value is NumPy's to the last bit, with skipped items (-inf) and NaN left out."""
    rng = np.random.default_rng(seed)
    row = rng.normal(size=n) if levels is None else rng.integers(0, levels, n) / levels
    row = row.astype(dtype)
    row[rng.random(n) < 0.05] = -np.inf
    row[rng.random(n) < 0.01] = np.nan
    assert _head_spread(row) == _definition(row)


@pytest.mark.parametrize("n", [5_000, 9_742, 40_001])
def test_a_sample_that_misses_the_middle_still_gives_the_median(n):
    """Every value the sample reads (each ``n // 1024``-th) is high and the rest low, so
    its bracket holds no middle value: the whole row is partitioned instead."""
    row = np.zeros(n)
    row[:: n // 1024] = 10.0 + np.arange(len(row[:: n // 1024]))
    assert _head_spread(row) == _definition(row)
