"""The request path's unique and union: NumPy's answers, dtype included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.setops import union_sorted, unique_sorted

_ints = st.lists(st.integers(-5, 10_000), max_size=600)


@settings(max_examples=200, deadline=None)
@given(a=_ints, b=_ints, dtype=st.sampled_from([np.int64, np.int32]))
def test_unique_and_union_are_numpys(a, b, dtype):
    a, b = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    for got, want in ((unique_sorted(a), np.unique(a)), (union_sorted(a, b), np.union1d(a, b))):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
