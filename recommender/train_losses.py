"""The two training losses of the user tower: full softmax and sampled softmax.

Both return the mean cross-entropy of the batch's targets and the mask of the
positions that hold one (windows are left-padded with -1).
"""

from __future__ import annotations

import numpy as np
import torch

from recommender.sequences import left_pad
from recommender.tower import UserTower
from recommender.train_config import TrainConfig

__all__ = ["full_loss", "sampled_loss", "train_epoch"]


def full_loss(
    net: UserTower, vec_t: torch.Tensor, inp: torch.Tensor, tgt: torch.Tensor, cfg: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every target over the whole catalogue."""
    keep = None
    if cfg.id_dropout > 0:
        keep = torch.rand(net.n_items, device=vec_t.device) >= cfg.id_dropout
    table = net.item_table(vec_t, keep)
    h = net.encode(inp, table)
    valid = tgt >= 0
    logits = h[valid] @ table.T
    return torch.nn.functional.cross_entropy(logits, tgt[valid]), valid


def sampled_loss(
    net: UserTower,
    vec_t: torch.Tensor,
    inp: torch.Tensor,
    tgt: torch.Tensor,
    warm: torch.Tensor,
    cfg: TrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of every target against ``n_negatives`` shared uniform negatives.

    Only the embeddings of the batch's items and the negatives are computed.
    """
    negs = warm[torch.randint(len(warm), (cfg.n_negatives,), generator=gen, device=warm.device)]
    valid = tgt >= 0
    rows, local = torch.unique(torch.cat([inp[inp >= 0], tgt[valid], negs]), return_inverse=True)
    keep = None
    if cfg.id_dropout > 0:
        keep = torch.rand(len(rows), device=rows.device) >= cfg.id_dropout
    table = net.item_rows(vec_t, rows, keep)
    n_inp = int((inp >= 0).sum())
    n_tgt = int(valid.sum())
    seq = torch.full_like(inp, -1)
    seq[inp >= 0] = local[:n_inp]
    h = net.encode(seq, table)[valid]
    t_local = local[n_inp : n_inp + n_tgt]
    n_local = local[n_inp + n_tgt :]
    pos = (h * table[t_local]).sum(dim=1, keepdim=True)
    neg = h @ table[n_local].T
    neg = neg.masked_fill(n_local.unsqueeze(0) == t_local.unsqueeze(1), -float("inf"))
    logits = torch.cat([pos, neg], dim=1)
    target = torch.zeros(len(logits), dtype=torch.long, device=logits.device)
    return torch.nn.functional.cross_entropy(logits, target), valid


def train_epoch(
    net: UserTower,
    opt: torch.optim.Optimizer,
    wins: list[np.ndarray],
    order: np.ndarray,
    vec_t: torch.Tensor,
    cfg: TrainConfig,
    warm: torch.Tensor | None,
    gen: torch.Generator,
) -> float:
    """One pass over the training windows in ``order``, a batch per step; mean loss per target.

    ``warm`` (the items seen in training) selects the sampled softmax, ``None`` the full one.
    """
    total, count = 0.0, 0
    for start in range(0, len(order), cfg.batch_size):
        batch = [wins[i] for i in order[start : start + cfg.batch_size]]
        length = max(len(w) for w in batch) - 1
        inp = torch.from_numpy(left_pad([w[:-1] for w in batch], length)).to(vec_t.device)
        tgt = torch.from_numpy(left_pad([w[1:] for w in batch], length)).to(vec_t.device)
        if warm is not None:
            loss, valid = sampled_loss(net, vec_t, inp, tgt, warm, cfg, gen)
        else:
            loss, valid = full_loss(net, vec_t, inp, tgt, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach()) * int(valid.sum())
        count += int(valid.sum())
    return total / max(count, 1)
