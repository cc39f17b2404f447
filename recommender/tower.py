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

import functools
import logging
import math

import torch
import torch.nn.functional as F
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
        """Boolean attention mask (True = blocked), one per head: see :func:`_allowed`."""
        return (~_allowed(valid)).repeat_interleave(self.n_heads, dim=0)

    def _inputs(self, seq: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input ``(b, L, dim)`` before dropout, and which positions are items."""
        valid = seq >= 0
        x = table[seq.clamp(min=0)] * valid.unsqueeze(-1).to(table.dtype)
        pos = self.pos_emb.weight[self.max_len - seq.shape[1] :]  # the last L positions
        return x * math.sqrt(self.dim) + pos, valid

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
        x, valid = self._inputs(seq, table)
        x = self.emb_drop(x) * valid.unsqueeze(-1).to(x.dtype)
        h = self.encoder(x, mask=self._mask(valid))
        return self.out_norm(h)

    def last_state(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """``encode(seq, table)[:, -1]``: the state that recommends, for inference.

        The same layers called through their functions, without the modules' per-call
        checks, and the last layer run for the last position only (its keys and values
        still come from every position). Equal to :meth:`encode`'s last position up to
        float rounding; no dropout, so for eval mode only. A third less time than
        :meth:`encode` for the few users of a serving batch, most of which is the cost
        of each torch call on a CPU (a few microseconds), so it makes as few as it can.
        A served model on a CPU runs this same computation as an ONNX graph instead
        (:mod:`recommender.tower_runtime`, which tests hold equal to it).
        """
        x, valid = self._inputs(seq, table)
        x = x * valid.unsqueeze(-1).to(x.dtype)  # padded positions are zeros
        allowed = _allowed(valid).unsqueeze(1)  # (b, 1, L, L): the same for every head
        layers = list(self.encoder.layers)
        for n, layer in enumerate(layers):
            last = n == len(layers) - 1
            x = _pre_norm_layer(layer, x, allowed[:, :, -1:] if last else allowed, last)
        norm = self.out_norm
        return F.layer_norm(x[:, -1], (self.dim,), norm.weight, norm.bias, norm.eps)


def _allowed(valid: torch.Tensor) -> torch.Tensor:
    """``(b, L, L)``, True where a position may attend: causally, to items, and always to
    itself (so a padded position is never left with nothing to attend to)."""
    causal, eye = _causal_and_eye(valid.shape[1], valid.device)
    return causal & (valid.unsqueeze(1) | eye)


@functools.lru_cache(maxsize=16)
def _causal_and_eye(length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(1, L, L)`` causal mask and diagonal, made once per length (never written to;
    ordinary tensors even when first asked for in inference mode)."""
    with torch.inference_mode(False):
        causal = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=device)
    return causal.unsqueeze(0), eye.unsqueeze(0)


def _pre_norm_layer(
    layer: nn.TransformerEncoderLayer, x: torch.Tensor, allowed: torch.Tensor, last_only: bool
) -> torch.Tensor:
    """A ``norm_first`` encoder layer in eval mode; ``last_only``: its last position only."""
    attn = layer.self_attn
    b, length, d = x.shape
    heads = attn.num_heads
    n1, n2 = layer.norm1, layer.norm2
    h = F.layer_norm(x, (d,), n1.weight, n1.bias, n1.eps)
    qkv = F.linear(h, attn.in_proj_weight, attn.in_proj_bias).view(b, length, 3, heads, -1)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, L, d / heads)
    if last_only:
        q, x = q[:, :, -1:], x[:, -1:]
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    out = attn.out_proj
    x = x + F.linear(o.transpose(1, 2).reshape(b, -1, d), out.weight, out.bias)
    h = F.layer_norm(x, (d,), n2.weight, n2.bias, n2.eps)
    up, down = layer.linear1, layer.linear2
    return x + F.linear(layer.activation(F.linear(h, up.weight, up.bias)), down.weight, down.bias)
