"""Stage 4: the final ``k`` of each pool: reranker knobs, group signals, new-item slot.

The reranker blends relevance with the user's group and global signals, diversity
(MMR), calibration to the user's entity profile and a long-tail share. Where the
trained tower scored a request, the last ``new_item_slots`` positions go to the best
items the tower never saw in training when the list holds none, so new items can
earn interactions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recommender.serving.types import Candidates, Ranked, Request, UserState
from recommender.topk import top_k

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["rerank", "reserve_new_items"]


def rerank(
    model: LoadedModel,
    cands: Sequence[Candidates],
    states: Sequence[UserState],
    reqs: Sequence[Request],
) -> list[Ranked]:
    """One :class:`Ranked` (``k`` items at most) per request."""
    out = []
    for c, st, req in zip(cands, states, reqs, strict=True):
        idx, sc = c.idx, c.scores
        cfg = c.knobs.rerank
        if cfg is not None and len(idx):
            profile = None
            if len(st.history):
                profile = model.reranker.user_profile(st.history.items)
            idx, sc = model.reranker.rerank(
                idx, sc, req.k, group=st.group, user_profile=profile, config=cfg
            )
        idx, sc = idx[: req.k], sc[: req.k]
        if c.trained:
            idx, sc = reserve_new_items(model, idx, sc, c.relevance, st, req.k)
        out.append(Ranked(np.asarray(idx, np.int64), np.asarray(sc, np.float64)))
    return out


def reserve_new_items(
    model: LoadedModel,
    idx: np.ndarray,
    sc: np.ndarray,
    row: np.ndarray,
    st: UserState,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Give the last ``new_item_slots`` positions to the best items new to the tower.

    Only when the list is full and holds none of them; their score is shown as the
    last kept item's, so scores stay in order.
    """
    new = model.new_items
    slots = min(model.serving.new_item_slots, len(idx) - 1)
    if new is None or slots <= 0 or len(idx) < k or new[idx].any():
        return idx, sc
    # a top-k over the few new items, not the catalogue; in index order, so ties still
    # go to the lower index
    rows = model.new_rows
    scores = row[rows]
    if st.allowed is not None:
        scores = np.where(st.allowed[rows], scores, -np.inf)
    seen = np.searchsorted(rows, st.seen[new[st.seen]])  # their positions among rows
    found, _ = top_k(scores, slots, exclude=[seen])
    pick = rows[found[0][found[0] >= 0]]
    if not len(pick):
        return idx, sc
    keep = len(idx) - len(pick)
    floor = sc[keep - 1]
    return (
        np.concatenate([idx[:keep], pick]),
        np.concatenate([sc[:keep], np.full(len(pick), floor, sc.dtype)]),
    )
