"""The user tower's epochs, early-stopped on validation: which epoch's weights to keep.

:func:`run_epochs` trains epoch after epoch (:func:`~recommender.train_losses.train_epoch`),
scores the validation cases after each, and stops after ``cfg.patience`` epochs without
a better validation NDCG (a tie goes to the lower validation loss), at
``cfg.max_epochs``, or at the ``cfg.max_seconds`` time cap. The best epoch's weights are
loaded back into the network before it returns.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from recommender.tower import UserTower
from recommender.train_config import TrainConfig
from recommender.train_losses import train_epoch

__all__ = ["EpochRun", "run_epochs"]

log = logging.getLogger(__name__)


@dataclass
class EpochRun:
    """What the epochs did: one record per epoch, the epoch kept and why they stopped."""

    history: list[dict[str, float]]
    best_epoch: int
    best_val_ndcg: float
    stopped_by: str  # "max_epochs", "early_stopping" or "time_cap"


def run_epochs(
    net: UserTower,
    opt: torch.optim.Optimizer,
    wins: list[np.ndarray],
    vec_t: torch.Tensor,
    cfg: TrainConfig,
    *,
    warm_t: torch.Tensor | None,
    gen: torch.Generator,
    rng: np.random.Generator,
    evaluate: Callable[[], dict[str, float]] | None,
    progress: bool = True,
) -> EpochRun:
    """Train ``net`` on ``wins`` until a stop; ``net`` ends with the best epoch's weights.

    ``warm_t`` (the items seen in training) selects the sampled softmax; ``evaluate``
    returns the validation metrics (``val_ndcg@<val_k>``, ``val_loss``...) of ``net`` as
    it is, ``None`` when there are no validation cases (then the training loss decides).
    """
    history: list[dict[str, float]] = []
    best: tuple[tuple[float, float], int] = ((-1.0, -np.inf), -1)
    best_state = copy.deepcopy(net.state_dict())
    t0 = time.perf_counter()
    stopped_by = "max_epochs"
    bar = tqdm(range(cfg.max_epochs), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        te = time.perf_counter()
        net.train()
        order = rng.permutation(len(wins))
        loss = train_epoch(net, opt, wins, order, vec_t, cfg, warm_t, gen)
        record = {"epoch": epoch + 1, "loss": loss}
        if evaluate is not None:
            record.update(evaluate())
        record["seconds"] = time.perf_counter() - te
        history.append(record)
        # better validation NDCG wins; a tie goes to the lower validation loss
        score = (
            record.get(f"val_ndcg@{cfg.val_k}", 0.0),
            -record.get("val_loss", record["loss"]),
        )
        if score > best[0]:
            best = (score, epoch + 1)
            best_state = copy.deepcopy(net.state_dict())
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            val_ndcg=f"{record.get(f'val_ndcg@{cfg.val_k}', float('nan')):.4f}",
            best=best[1],
        )
        if epoch + 1 - best[1] >= cfg.patience:
            log.info("early stop at epoch %d (best %d)", epoch + 1, best[1])
            stopped_by = "early_stopping"
            break
        if time.perf_counter() - t0 > cfg.max_seconds and epoch + 1 < cfg.max_epochs:
            log.warning(
                "training stopped by the time cap (max_seconds=%.0f) after epoch %d of %d",
                cfg.max_seconds,
                epoch + 1,
                cfg.max_epochs,
            )
            stopped_by = "time_cap"
            break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return EpochRun(history, best[1], best[0][0], stopped_by)
