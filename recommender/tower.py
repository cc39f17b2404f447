"""The learned part of recbento: an item adapter over BERT vectors and a sequential user tower.

Items are represented by a trainable adapter over their frozen text vectors plus, for
items seen in training, a learned ID embedding (zero-initialised, so an untrained
model is a pure text model). Users are represented by a small causal transformer
(SASRec-style) over their last ``max_len`` items. The relevance of item ``i`` to a
user is the dot product ``user_vector . item_embedding[i]``.

Items that were never trained on (``has_id`` false, or an index past the trained
catalogue) keep only their text part, so a brand-new item is scorable the moment its
text is encoded: this is the hybrid that serves cold items.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

__all__ = ["UserTower"]

log = logging.getLogger(__name__)


class UserTower(nn.Module):
    """Item adapter + causal self-attention user encoder.

    Parameters
    ----------
    n_items : int
        Catalogue size at training time (the rows of the ID embedding).
    text_dim : int
        Width of the text vectors (384 for MiniLM).
    dim : int
        Width of the learned item and user vectors.
    n_layers, n_heads : int
        Transformer depth and attention heads.
    max_len : int
        History items the user encoder reads (the most recent ones).
    dropout : float
        Dropout on embeddings and inside the transformer.
    id_embeddings : bool
        Learn an ID embedding for warm items on top of the text adapter.
    """

    def __init__(
        self,
        n_items: int,
        text_dim: int,
        *,
        dim: int = 64,
        n_layers: int = 2,
        n_heads: int = 2,
        max_len: int = 200,
        dropout: float = 0.2,
        id_embeddings: bool = True,
    ) -> None:
        super().__init__()
        self.n_items, self.text_dim, self.dim, self.max_len = n_items, text_dim, dim, max_len
        self.n_heads = n_heads
        self.text_proj = nn.Linear(text_dim, dim)
        self.text_mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.id_emb = nn.Embedding(n_items, dim) if id_embeddings else None
        if self.id_emb is not None:
            nn.init.zeros_(self.id_emb.weight)
        self.register_buffer("has_id", torch.zeros(n_items, dtype=torch.bool))
        self.pos_emb = nn.Embedding(max_len, dim)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.emb_drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            dim,
            n_heads,
            dim_feedforward=2 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(dim)

    def item_table(
        self, item_vectors: torch.Tensor, id_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(n, text_dim)`` text vectors -> ``(n, dim)`` item embeddings.

        Rows past the trained catalogue, and rows with ``has_id`` false, are text-only.
        ``id_keep`` (bool, training only) drops the ID part of some items so that the
        text path learns to stand on its own.
        """
        p = self.text_proj(item_vectors)
        e = p + self.text_mlp(p)
        if self.id_emb is None:
            return e
        n_id = min(e.shape[0], self.n_items)
        keep = self.has_id[:n_id]
        if id_keep is not None:
            keep = keep & id_keep[:n_id]
        ide = self.id_emb.weight[:n_id] * keep.unsqueeze(1).to(e.dtype)
        if n_id == e.shape[0]:
            return e + ide
        return torch.cat([e[:n_id] + ide, e[n_id:]], dim=0)

    def item_rows(
        self,
        item_vectors: torch.Tensor,
        rows: torch.Tensor,
        id_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Embeddings of the items ``rows`` only: ``item_table(item_vectors)[rows]``.

        Costs ``len(rows)``, not the catalogue (sampled-softmax training on a large
        catalogue). ``id_keep`` is aligned with ``rows``.
        """
        p = self.text_proj(item_vectors[rows])
        e = p + self.text_mlp(p)
        if self.id_emb is None:
            return e
        inside = rows < self.n_items
        r = rows.clamp(max=self.n_items - 1)
        keep = self.has_id[r] & inside
        if id_keep is not None:
            keep = keep & id_keep
        return e + self.id_emb(r) * keep.unsqueeze(1).to(e.dtype)

    def _mask(self, valid: torch.Tensor) -> torch.Tensor:
        """Boolean attention mask (True = blocked): causal, pads blocked except self."""
        b, length = valid.shape
        causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=valid.device)
        allowed = causal.unsqueeze(0) & (valid.unsqueeze(1) | eye.unsqueeze(0))
        return (~allowed).repeat_interleave(self.n_heads, dim=0)

    def encode(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """User states at every position of left-padded sequences.

        Parameters
        ----------
        seq : LongTensor (b, L)
            Item indices, left-padded with ``-1``; ``L <= max_len``.
        table : Tensor (n, dim)
            Item embeddings from :meth:`item_table`.

        Returns
        -------
        Tensor (b, L, dim)
            Position ``t`` summarises items ``0..t`` (the state that predicts ``t+1``).
        """
        valid = seq >= 0
        x = table[seq.clamp(min=0)] * valid.unsqueeze(-1).to(table.dtype)
        length = seq.shape[1]
        pos = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = x * math.sqrt(self.dim) + self.pos_emb(pos).unsqueeze(0)
        x = self.emb_drop(x) * valid.unsqueeze(-1).to(x.dtype)
        h = self.encoder(x, mask=self._mask(valid))
        return self.out_norm(h)


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

    def weights(self, histories: list, decay: float | None = None) -> torch.Tensor:
        """``(b, n_active)`` recency weights of the active items in each history."""
        decay = self.decay if decay is None else decay
        W = torch.zeros(len(histories), len(self.active_))
        for u, h in enumerate(histories):
            h = torch.as_tensor(h, dtype=torch.long)
            h = h[h < self.n_items_]
            if not len(h):
                continue
            w = decay ** torch.arange(len(h) - 1, -1, -1, dtype=torch.float32)
            p = self.pos_[h]
            ok = p >= 0
            W[u].scatter_reduce_(0, p[ok], w[ok], reduce="amax")
        return W

    def scores(self, histories: list, n_items: int | None = None, decay: float | None = None):  # noqa: ANN201
        """``(b, n_items)`` scores; items outside ``B`` (and new items) get 0."""
        n = n_items or self.n_items_
        out = torch.zeros(len(histories), n)
        out[:, self.active_] = self.weights(histories, decay) @ self.B_.float()
        return out

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
        self.B_ = state["cooc.B"].float()
        return self
