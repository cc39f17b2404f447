"""Every item's dot product with a batch of user vectors (text relevance, tower scores)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.dots import item_dots


def test_item_dots_are_the_product_and_the_same_alone_or_batched() -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((777, 64)).astype(np.float32)
    users = rng.standard_normal((5, 64)).astype(np.float32)
    got = item_dots(items, users)
    assert got.shape == (5, 777) and got.dtype == np.float32
    np.testing.assert_allclose(got, users @ items.T, rtol=1e-4, atol=1e-4)
    for r in range(5):  # a request scores the same whatever else is in its pass
        assert np.array_equal(item_dots(items, users[r])[0], got[r])
        assert np.array_equal(item_dots(items, users[[r, (r + 2) % 5]])[0], got[r])


def test_item_dots_refuse_vectors_of_another_width() -> None:
    with pytest.raises(ValueError, match="disagree"):
        item_dots(np.ones((3, 4), np.float32), np.ones((1, 5), np.float32))
