"""The collaborative half of the trained hybrid: recency-weighted EASE item-item scores.

A closed-form item-item matrix ``B`` is fitted on the training histories
(:meth:`CooccurrenceScorer.fit`); a user's scores are the rows of ``B`` of the items in
their history, each weighted by how recently it was seen (:func:`ease_rows`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recommender.jit import njit

__all__ = ["CooccurrenceScorer", "ease_rows"]


class CooccurrenceScorer:
    """Recency-weighted EASE item-item scores: the collaborative half of the hybrid.

    EASE (Steck 2019) learns a dense item-item weight matrix ``B`` in closed form from the
    binary user-item matrix. recbento weights each history item by ``decay ** age`` (age
    in positions from the most recent) before the product, which matters a great deal
    for next-item prediction. Only items with at least ``min_count`` training users get
    a row/column in ``B``; every other item (and every cold item) scores 0 here and is
    ranked by the text-aware tower alone.

    Parameters
    ----------
    lam : float
        L2 weight of EASE.
    decay : float
        Recency decay per history position (1.0 = plain EASE).
    min_count : int
        Minimum number of training users for an item to enter ``B``.
    max_items : int or None
        At most this many items (the most popular) enter ``B``: its inverse costs the
        cube of their number, so a large catalogue keeps the head only.
    """

    def __init__(
        self,
        lam: float = 500.0,
        decay: float = 0.9,
        min_count: int = 2,
        max_items: int | None = None,
    ) -> None:
        self.lam, self.decay, self.min_count = lam, decay, min_count
        self.max_items = max_items

    def fit(self, sequences: list, n_items: int, *, device: torch.device | None = None):  # noqa: ANN201
        """Closed-form fit on the users' training sequences; returns ``self``."""
        counts = torch.zeros(n_items, dtype=torch.float64)
        rows, cols = [], []
        for u, s in enumerate(sequences):
            items = torch.unique(torch.as_tensor(s, dtype=torch.long))
            counts[items] += 1
            rows.append(torch.full((len(items),), u, dtype=torch.long))
            cols.append(items)
        active = torch.nonzero(counts >= self.min_count).squeeze(1)
        if self.max_items is not None and len(active) > self.max_items:
            head = torch.argsort(counts[active], descending=True, stable=True)[: self.max_items]
            active = torch.sort(active[head]).values
        pos = torch.full((n_items,), -1, dtype=torch.long)
        pos[active] = torch.arange(len(active))
        r, c = torch.cat(rows), pos[torch.cat(cols)]
        keep = c >= 0
        X = torch.zeros(len(sequences), len(active), dtype=torch.float32, device=device)
        X[r[keep], c[keep]] = 1.0
        G = X.T @ X
        G.diagonal().add_(self.lam)
        P = torch.linalg.inv(G)
        B = P / (-P.diagonal())
        B.diagonal().zero_()
        self.n_items_ = n_items
        self.active_ = active
        self.pos_ = pos
        self.B_ = B.cpu().half().float().contiguous()  # as save() stores it: load is exact
        return self

    def scores(self, histories: list, n_items: int | None = None, decay: float | None = None):  # noqa: ANN201
        """``(b, n_items)`` scores; items outside ``B`` (and new items) get 0.

        Each row is the sum of ``B``'s rows of the history's items, weighted by recency
        (an item seen twice counts once, at its most recent position). Only those rows
        are read (:func:`ease_rows`): a request costs its history's length, not the
        whole ``B`` (158 MB for the demo catalogue), and scores the same alone or in
        any batch. Positions older than :func:`reach` are not read: together they
        weigh less than float32's resolution of the newest item's weight.
        """
        decay = self.decay if decay is None else decay
        n = n_items or self.n_items_
        items = [np.asarray(h, dtype=np.int64) for h in histories]
        items = [h[(h >= 0) & (h < self.n_items_)] for h in items]
        offsets = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum([len(h) for h in items], out=offsets[1:])
        longest = int(max((len(h) for h in items), default=0))
        powers = np.float32(decay) ** np.arange(min(longest, reach(decay)), dtype=np.float32)
        out = np.zeros((len(items), n), dtype=np.float32)
        flat = np.concatenate(items) if items else np.zeros(0, dtype=np.int64)
        B, pos, active = self.B_.numpy(), self.pos_.numpy(), self.active_.numpy()
        ease_rows(B, pos, active, flat, offsets, powers, out)
        return torch.from_numpy(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to save (B in float16 to halve the bundle)."""
        return {
            "cooc.active": self.active_,
            "cooc.B": self.B_.half(),
            "cooc.n_items": torch.tensor([self.n_items_]),
        }

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], **params: float) -> CooccurrenceScorer:
        """Rebuild from :meth:`state_dict` plus the constructor parameters."""
        self = cls(**params)
        self.n_items_ = int(state["cooc.n_items"][0])
        self.active_ = state["cooc.active"].long()
        self.pos_ = torch.full((self.n_items_,), -1, dtype=torch.long)
        self.pos_[self.active_] = torch.arange(len(self.active_))
        self.B_ = state["cooc.B"].float().contiguous()
        return self


@njit()
def ease_rows(
    B: np.ndarray,
    pos: np.ndarray,
    active: np.ndarray,
    items: np.ndarray,
    offsets: np.ndarray,
    powers: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """``out[u, active] = w . B[history u]``: each history's recency-weighted sum of
    ``B``'s rows, written to the catalogue's columns (``out`` starts at zero).

    History ``u`` is ``items[offsets[u]:offsets[u + 1]]`` (catalogue indices, oldest
    first); ``pos`` maps an item to its row of ``B`` (-1: not in ``B``) and ``active``
    each row back to its item; the item ``a`` positions from the end weighs
    ``powers[a]`` (older positions than ``powers`` holds are skipped), and an item seen
    more than once keeps its largest weight. Rows are added in ascending order of
    ``B``'s rows, so a history sums the same alone or in any batch.

    >>> B = np.array([[0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    >>> out = np.zeros((1, 3), dtype=np.float32)  # item 1 is not in B
    >>> powers = np.array([1.0, 0.5, 0.25], dtype=np.float32)
    >>> pos, active = np.array([0, -1, 1]), np.array([0, 2])
    >>> ease_rows(B, pos, active, np.array([2, 0, 2]), np.array([0, 3]), powers, out)
    >>> out.tolist()  # item 2 at its latest (weight 1), item 0 one step older (0.5)
    [[2.0, 0.0, 0.5]]
    """
    n_rows, width = B.shape
    depth = powers.size
    weight = np.zeros(n_rows, dtype=np.float32)
    seen = np.zeros(n_rows, dtype=np.bool_)
    rows = np.empty(n_rows, dtype=np.int64)
    acc = np.zeros(width, dtype=np.float32)
    for u in range(len(offsets) - 1):
        lo, hi = offsets[u], offsets[u + 1]
        n = 0
        for t in range(max(lo, hi - depth), hi):  # the last ``depth`` positions
            p = pos[items[t]]
            if p < 0:
                continue
            w = powers[hi - 1 - t]
            if not seen[p]:
                seen[p] = True
                weight[p] = w
                rows[n] = p
                n += 1
            elif w > weight[p]:
                weight[p] = w
        picked = np.sort(rows[:n])
        for q in picked:
            w = weight[q]
            for j in range(width):
                acc[j] += w * B[q, j]
            seen[q] = False
            weight[q] = 0.0
        for j in range(width):
            out[u, active[j]] = acc[j]
            acc[j] = 0.0


def reach(decay: float) -> int:
    """How many of a history's newest positions the recency-weighted sum reads.

    The positions from there on weigh ``decay ** reach / (1 - decay)`` together, under
    ``2 ** -24`` of the newest item's weight (float32's resolution), so leaving them out
    changes a score by less than its rounding. ``decay`` 1 reads every position.

    >>> reach(0.8), reach(0.95), reach(1.0) > 10**9
    (82, 383, True)
    """
    if not 0 < decay < 1:
        return 2**62
    return math.ceil(math.log(2.0**-24 * (1 - decay)) / math.log(decay))
