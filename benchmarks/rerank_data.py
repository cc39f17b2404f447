"""Inputs of the reranker benchmark: item and user vectors, and EASE candidates.

Item vectors are MiniLM embeddings of ``title. genres. tags`` (cached as safetensors,
keyed by a hash of the texts); a user's vector is the recency-weighted mean of the item
vectors of their training history; the candidates are each user's EASE top-200 unseen
items among those seen in training.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.baselines import EASE
from recommender.topk import top_k

__all__ = ["N_CANDIDATES", "candidates", "item_vectors", "recency_user_vectors"]

log = logging.getLogger(__name__)

#: Candidates per user handed to the reranker.
N_CANDIDATES = 200


def _item_texts(items: pd.DataFrame) -> list[str]:
    texts = []
    for title, genres, tags in zip(
        items["title"], items.get("genres", ""), items.get("tags", ""), strict=True
    ):
        parts = [str(title)]
        for v in (genres, tags):
            if isinstance(v, str) and v:
                parts.append(", ".join(v.split("|")))
        texts.append(". ".join(parts))
    return texts


def item_vectors(items: pd.DataFrame, cache: Path) -> np.ndarray:
    """MiniLM vectors of title + genres + tags, cached as safetensors keyed by a text hash."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    texts = _item_texts(items)
    sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    if cache.exists():
        with safe_open(str(cache), "np") as f:
            if (f.metadata() or {}).get("text_sha") == sha:
                return f.get_tensor("item_vectors")
    import torch

    from recommender.encoder import TextEncoder

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    vecs = TextEncoder.from_pretrained().encode(texts, batch_size=64)
    log.info("encoded %d items in %.1fs", len(texts), time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"item_vectors": np.ascontiguousarray(vecs, dtype=np.float32)},
        str(cache),
        metadata={"text_sha": sha, "encoder": "all-MiniLM-L6-v2"},
    )
    return vecs


def recency_user_vectors(
    train: pd.DataFrame,
    user_index: pd.Index,
    item_index: pd.Index,
    vecs: np.ndarray,
    half_life: float = 20.0,
) -> np.ndarray:
    """Recency-weighted mean of item vectors over each user's training history."""
    u = user_index.get_indexer(train["user_id"])
    i = item_index.get_indexer(train["item_id"])
    steps_from_last = train.groupby("user_id").cumcount(ascending=False).to_numpy()
    w = np.exp2(-steps_from_last / half_life)
    m = sp.csr_matrix((w, (u, i)), shape=(len(user_index), len(item_index)))
    out = np.asarray(m @ vecs)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def candidates(
    X: sp.csr_matrix, n: int = N_CANDIDATES, batch: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """EASE top-``n`` unseen, trained items per user with their scores."""
    t0 = time.perf_counter()
    model = EASE(500.0).fit(X)
    log.info("EASE fitted in %.1fs", time.perf_counter() - t0)
    untrained = np.asarray(X.sum(axis=0)).ravel() == 0
    users = np.arange(X.shape[0])
    cand = np.empty((len(users), n), dtype=np.int64)
    rel = np.empty((len(users), n))
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        s = model.score(rows).astype(np.float64)
        s[:, untrained] = -np.inf
        seen = X[rows]
        s[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
        idx, _ = top_k(s, n)
        cand[rows] = idx
        rel[rows] = np.take_along_axis(s, np.maximum(idx, 0), axis=1)
    return cand, rel
