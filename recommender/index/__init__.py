"""Vector search for the scoring stage: exact while it is fast enough, HNSW above that.

Every index answers the same question, the ``k`` items with the largest inner product
with each query (item vectors are L2-normalised, so this is cosine similarity), with
per-row exclusions (the user's history) and an optional boolean mask of allowed items
(the request's attribute filters). Excluded or disallowed items are never returned;
rows with fewer than ``k`` eligible items are padded with index ``-1`` and score
``-inf``.

* :class:`ExactIndex` is one matrix product plus ``argpartition``; it is the reference
  and the right choice up to a few hundred thousand items.
* :class:`ANNIndex` wraps a faiss HNSW graph (or an IVF index) on inner product. It
  over-fetches ``k + len(exclude)`` candidates, drops the excluded ones and widens the
  search for the rows that came up short; the allowed mask is applied inside faiss with
  an ``IDSelectorBitmap``, or by exact search over the allowed subset when that subset
  is small. Any row that still comes up short is answered exactly, so an ANN search
  never returns fewer eligible items than exist.

:func:`make_index` picks one by catalogue size. Indexes are persisted as JSON (the
configuration and a fingerprint of the vectors) plus, for ANN, faiss's own binary
file written by ``faiss.write_index`` (a plain data format read by C++, not pickle):
rebuilding a million-item HNSW graph takes minutes, reading it takes seconds.

Examples
--------
>>> V = np.eye(3, dtype=np.float32)
>>> idx, scores = ExactIndex().build(V).search(V[:1] + V[1:2] * 0.5, 2, exclude=[np.array([0])])
>>> idx.tolist(), scores.round(2).tolist()
([[1, 2]], [[0.5, 0.0]])
"""

from __future__ import annotations

import numpy as np  # noqa: F401 - the doctest above uses it

from recommender.index.ann import ANNIndex
from recommender.index.base import VectorIndex, fingerprint, recall_at_k
from recommender.index.exact import ExactIndex
from recommender.index.factory import load_index, make_index

__all__ = [
    "ANNIndex",
    "ExactIndex",
    "VectorIndex",
    "fingerprint",
    "load_index",
    "make_index",
    "recall_at_k",
]
