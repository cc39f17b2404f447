"""The collaborative half of the trained model, and how much it counts, chosen on validation.

A trained model scores ``zscore(tower) + weight * zscore(co-occurrence)`` per user, the
co-occurrence score a recency-weighted EASE (:class:`~recommender.cooccurrence.CooccurrenceScorer`).
Three things decide what that half says, and they differ from one log to the next:

* EASE's L2 weight ``lam`` (denser logs want less shrinkage);
* the recency decay per history position: a log whose order means something (a session,
  a watch history) rewards a steep decay, while a log whose order carries nothing (ratings
  entered in bulk, shuffled exports) is best read as a set, decay 1.0;
* the mixing weight: how far the order-aware tower is trusted next to the item-item half.

:func:`fit_hybrid` tries every combination of the configured grids on the validation cases
(each user's last training item, never a test item), fitting one ``B`` per ``lam`` on the
sequences without those items, keeps the best by NDCG, then refits the chosen ``B`` on every
sequence (the validation items included) for serving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recommender.cooccurrence import CooccurrenceScorer
from recommender.eval import val_metrics
from recommender.scale import zscore
from recommender.train_config import TrainConfig

__all__ = ["fit_hybrid", "mix"]

log = logging.getLogger(__name__)


def mix(tower: np.ndarray, co: np.ndarray, weight: float) -> np.ndarray:
    """The hybrid score: standardised tower scores plus ``weight`` x standardised co-occurrence."""
    return zscore(tower) + np.float32(weight) * zscore(co)


def seen_mask(histories: Sequence[np.ndarray], n_items: int) -> torch.Tensor:
    """``(len(histories), n_items)``: True where the row's history holds the item."""
    mask = torch.zeros(len(histories), n_items, dtype=torch.bool)
    for r, h in enumerate(histories):
        mask[r, torch.as_tensor(np.asarray(h, dtype=np.int64))] = True
    return mask


def fit_hybrid(
    cfg: TrainConfig,
    *,
    sequences: list[np.ndarray],
    train_sequences: list[np.ndarray],
    val_hist: list[np.ndarray],
    val_target: np.ndarray,
    tower_val: torch.Tensor | None,
    n_items: int,
) -> tuple[CooccurrenceScorer, dict[str, Any], CooccurrenceScorer | None]:
    """Fit the co-occurrence half and choose ``lam``, decay and weight on validation.

    Parameters
    ----------
    cfg : TrainConfig
        Supplies the grids (``cooc_lambdas``, ``cooc_decays``, ``cooc_weights``), the
        item limits and ``val_k``.
    sequences, train_sequences : list of int arrays
        Every user's sequence, and the same without the validation items.
    val_hist, val_target : list of int arrays, int array
        The validation cases (history, held-out item).
    tower_val : tensor ``(len(val_hist), n_items)`` or None
        The tower's scores of the validation histories; ``None`` without validation.
    n_items : int
        Catalogue size.

    Returns
    -------
    scorer : CooccurrenceScorer
        Fitted on ``sequences`` with the chosen ``lam``; its ``decay`` is the chosen one.
    info : dict
        ``lam``, ``decay``, ``weight``, the validation NDCG of the choice, every grid
        point's NDCG and the seconds spent.
    """
    t0 = time.perf_counter()
    params = {"min_count": cfg.cooc_min_count, "max_items": cfg.cooc_max_items}
    k = cfg.val_k
    grid: dict[str, float] = {}
    # without validation cases: the most shrinkage, the steepest decay, the co-occurrence
    # half trusted most (the choices that were best on MovieLens before any search)
    lam, decay, weight = max(cfg.cooc_lambdas), min(cfg.cooc_decays), max(cfg.cooc_weights)
    best = -1.0
    val_scorer = None
    if len(val_target) and tower_val is not None:
        tower_z = torch.from_numpy(zscore(tower_val.float().cpu().numpy()))
        seen = seen_mask(val_hist, n_items)
        for lam_i in cfg.cooc_lambdas:
            cooc = CooccurrenceScorer(lam=lam_i, **params).fit(train_sequences, n_items)
            for d in cfg.cooc_decays:
                co = torch.from_numpy(zscore(cooc.scores(val_hist, n_items, d).numpy()))
                for w in cfg.cooc_weights:
                    s = (tower_z + w * co).masked_fill_(seen, -float("inf"))
                    top = torch.topk(s, min(k, n_items), dim=1).indices.numpy()
                    ndcg = val_metrics(top, val_target, k)[f"val_ndcg@{k}"]
                    grid[f"lam={lam_i:g},decay={d:g},weight={w:g}"] = ndcg
                    if ndcg > best:
                        best, lam, decay, weight = ndcg, lam_i, d, w
                        val_scorer = cooc
    scorer = CooccurrenceScorer(lam=lam, decay=decay, **params).fit(sequences, n_items)
    if val_scorer is not None:
        val_scorer.decay = decay
    seconds = time.perf_counter() - t0
    log.info(
        "hybrid: co-occurrence over %d items, lam %g, decay %.2f, weight %.2f "
        "(validation NDCG@%d %.4f, %.1fs)",
        len(scorer.active_),
        lam,
        decay,
        weight,
        k,
        best,
        seconds,
    )
    return (
        scorer,
        {
            "lam": lam,
            "decay": decay,
            "weight": weight,
            "n_items": int(len(scorer.active_)),
            f"val_ndcg@{k}": best if best >= 0 else None,
            "grid": grid,
            "seconds": seconds,
        },
        val_scorer,
    )
