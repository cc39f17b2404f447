"""Training the sequential recommender on interactions, on top of the BERT item vectors.

:class:`SequenceRecommender` is the estimator the CLI's ``recbento train`` fits: a
:class:`~recommender.tower.UserTower` trained with a softmax over the catalogue (full or sampled) on
next-item prediction from every prefix of every user's history, early-stopped on the
NDCG@10 of each user's last training item (the validation case; the real test item is
never seen). The collaborative half and its weight are then chosen on the same
validation cases (:mod:`recommender.hybrid`). It is saved as
``user_tower.safetensors`` + ``tower_config.json`` (:mod:`recommender.tower_store`).

Serving is two matrix products: ``item_embeddings(item_vectors)`` once at load time,
``user_embeddings(histories)`` per request batch, then ``users @ items.T``.

Examples
--------
>>> import numpy as np
>>> vecs = np.eye(4, dtype=np.float32)
>>> model = SequenceRecommender(TrainConfig(dim=8, max_epochs=2, max_len=4))
>>> _ = model.fit([np.array([0, 1, 2, 3])] * 4, vecs, progress=False)
>>> model.scores([[0, 1]], vecs).shape
(1, 4)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recommender.dots import item_dots
from recommender.errors import BundleError, InputError
from recommender.eval import val_metrics
from recommender.hybrid import fit_hybrid, mix, seen_mask
from recommender.sequences import (
    hold_out_last,
    left_pad,
    sequences_from_interactions,
    trainable_sequences,
    windows,
)
from recommender.tower import UserTower
from recommender.tower_store import (
    TOWER_CONFIG,
    TOWER_WEIGHTS,
    build_tower,
    load_recommender,
    load_warm_start,
    save_recommender,
)
from recommender.train_config import TrainConfig
from recommender.train_loop import run_epochs

if TYPE_CHECKING:
    from recommender.tower_runtime import TowerRuntime

__all__ = [
    "TrainConfig",
    "SequenceRecommender",
    "sequences_from_interactions",
    "TOWER_WEIGHTS",
    "TOWER_CONFIG",
]

log = logging.getLogger(__name__)


class SequenceRecommender:
    """Trainable hybrid recommender: text adapter + ID embeddings + sequential user tower.

    Parameters
    ----------
    config : TrainConfig, optional
        Hyperparameters (defaults when omitted).

    Attributes
    ----------
    net_ : UserTower
        The trained network (after :meth:`fit` or :meth:`load`).
    summary_ : dict
        Per-epoch losses and validation metrics, best epoch, seconds.
    validation_cooc_ : CooccurrenceScorer or None
        After :meth:`fit`: the co-occurrence half fitted without the validation items, for
        choices made later on the same validation cases
        (:mod:`recommender.tune_serving`); not saved.
    """

    def __init__(self, config: TrainConfig | None = None) -> None:
        self.config = config if config is not None else TrainConfig()

    # -- config -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-safe dict."""
        return self.config.get_config()

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SequenceRecommender:
        """Unfitted model from :meth:`get_config` output."""
        return cls(TrainConfig.from_config(config))

    # -- training -----------------------------------------------------------------------
    def fit(
        self,
        sequences: Sequence[np.ndarray],
        item_vectors: np.ndarray,
        *,
        validate: bool = True,
        progress: bool = True,
        warm_start: SequenceRecommender | None = None,
    ) -> SequenceRecommender:
        """Train on next-item prediction over every prefix of every sequence.

        Parameters
        ----------
        sequences : list of int arrays
            Each user's item indices, oldest first (see :func:`sequences_from_interactions`).
        item_vectors : ndarray (n_items, text_dim)
            Frozen text vectors, row = item index.
        validate : bool
            Hold out each sequence's last item (sequences of 3+ items) for early stopping.
        progress : bool
            Show a tqdm bar over epochs.
        warm_start : SequenceRecommender, optional
            A fitted model of the same shape (catalogue size, text dimension, config)
            whose weights training starts from instead of a random start: a scheduled
            retrain then needs fewer epochs. A shape mismatch is an :class:`InputError`.

        Returns
        -------
        self
        """
        cfg = self.config
        vecs = np.asarray(item_vectors, dtype=np.float32)
        if vecs.ndim != 2 or not len(vecs):
            raise InputError(
                f"item_vectors shape {vecs.shape}: expected (n_items, dim) with n_items > 0",
                field="item_vectors",
                value=vecs.shape,
            )
        n_items = vecs.shape[0]
        seqs = trainable_sequences(sequences, n_items)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.random_state)
        rng = np.random.default_rng(cfg.random_state)
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))

        if validate:
            train_seqs, val_hist, val_target = hold_out_last(seqs)
        else:
            train_seqs, val_hist, val_target = seqs, [], np.empty(0, np.int64)
        recent = train_seqs
        if cfg.max_train_len is not None:
            recent = [s[-(cfg.max_train_len + 1) :] for s in train_seqs]
        wins = windows(recent, cfg.max_len)
        n_pos = sum(len(w) - 1 for w in wins)

        net = build_tower(cfg, n_items, vecs.shape[1]).to(device)
        if warm_start is not None:
            load_warm_start(net, warm_start)
        seen = np.zeros(n_items, dtype=bool)
        for s in train_seqs:
            seen[s] = True
        net.has_id.copy_(torch.from_numpy(seen))
        vec_t = torch.from_numpy(vecs).to(device)
        sampled = cfg.softmax == "sampled" or (
            cfg.softmax == "auto" and n_items > cfg.full_softmax_max_items
        )
        warm_t = torch.from_numpy(np.flatnonzero(seen)).to(device)
        gen = torch.Generator(device=device).manual_seed(cfg.random_state)
        if len(val_target) > cfg.val_max_users:
            pick = np.sort(rng.choice(len(val_target), cfg.val_max_users, replace=False))
            val_hist, val_target = [val_hist[i] for i in pick], val_target[pick]
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        t0 = time.perf_counter()
        log.info(
            "training on %d sequences, %d windows, %d targets, %d items, %s softmax",
            len(train_seqs),
            len(wins),
            n_pos,
            n_items,
            "sampled" if sampled else "full",
        )

        def evaluate() -> dict[str, float]:
            self.net_ = net
            top, val_loss = self._topk(val_hist, vec_t, cfg.val_k, target=val_target)
            return {**val_metrics(top, val_target, cfg.val_k), "val_loss": val_loss}

        run = run_epochs(
            net,
            opt,
            wins,
            vec_t,
            cfg,
            warm_t=warm_t if sampled else None,
            gen=gen,
            rng=rng,
            evaluate=evaluate if len(val_target) else None,
            progress=progress,
        )
        self.net_ = net
        self.cooc_, self.cooc_decay_, self.cooc_weight_ = None, 1.0, 0.0
        self.validation_cooc_ = None
        hybrid: dict[str, Any] = {}
        if cfg.cooc:
            tower_val = None
            if len(val_target):
                tower_val = self._all_scores(val_hist, vec_t).cpu()
            self.cooc_, hybrid, self.validation_cooc_ = fit_hybrid(
                cfg,
                sequences=seqs,
                train_sequences=train_seqs,
                val_hist=val_hist,
                val_target=val_target,
                tower_val=tower_val,
                n_items=n_items,
            )
            self.cooc_decay_, self.cooc_weight_ = hybrid["decay"], hybrid["weight"]
        self.summary_ = {
            "epochs": run.history,
            "best_epoch": run.best_epoch,
            "stopped_by": run.stopped_by,
            f"best_val_ndcg@{cfg.val_k}": run.best_val_ndcg if len(val_target) else None,
            "seconds": time.perf_counter() - t0,
            "n_sequences": len(train_seqs),
            "n_targets": n_pos,
            "n_items": n_items,
            "n_warm_items": int(seen.sum()),
            "softmax": "sampled" if sampled else "full",
            "n_val_users": int(len(val_target)),
            "hybrid": hybrid,
        }
        log.info(
            "trained %d epochs in %.1fs; best epoch %d, val ndcg %.4f",
            len(run.history),
            self.summary_["seconds"],
            run.best_epoch,
            run.best_val_ndcg,
        )
        return self

    # -- inference -----------------------------------------------------------------------
    def _check_fitted(self) -> UserTower:
        net = getattr(self, "net_", None)
        if net is None:
            raise BundleError("SequenceRecommender is not fitted; call fit() or load() first")
        return net

    @torch.inference_mode()
    def item_embeddings(self, item_vectors: np.ndarray | torch.Tensor) -> np.ndarray:
        """``(n, text_dim)`` text vectors -> ``(n, dim)`` float32 item embeddings.

        ``n`` may exceed the trained catalogue: extra rows (new items) are text-only.
        Compute once when a bundle is loaded.
        """
        net = self._check_fitted()
        vec = torch.as_tensor(np.asarray(item_vectors, dtype=np.float32))
        dev = next(net.parameters()).device
        return net.item_table(vec.to(dev)).cpu().numpy()

    @torch.inference_mode()
    def user_embeddings(
        self,
        histories: Sequence[Sequence[int] | np.ndarray],
        item_vectors: np.ndarray | None = None,
        *,
        item_table: np.ndarray | None = None,
        batch_size: int = 256,
        runtime: TowerRuntime | None = None,
    ) -> np.ndarray:
        """User vectors ``(b, dim)`` from item-index histories (oldest first).

        Pass the precomputed ``item_table`` (from :meth:`item_embeddings`) or the raw
        ``item_vectors``. An empty history gives the vector of the position embedding
        alone (a popularity-like prior). ``runtime``: the tower's forward pass on ONNX
        Runtime (:mod:`recommender.tower_runtime`), made from this model's network;
        PyTorch runs it otherwise.
        """
        net = self._check_fitted()
        if item_table is None:
            if item_vectors is None:
                raise InputError("user_embeddings needs item_table or item_vectors")
            item_table = self.item_embeddings(item_vectors)
        dev = next(net.parameters()).device
        table = torch.as_tensor(np.asarray(item_table, dtype=np.float32)).to(dev)
        return self._user_states(histories, table, batch_size, runtime).cpu().numpy()

    def user_embedding(
        self,
        history: Sequence[int] | np.ndarray,
        item_vectors: np.ndarray | None = None,
        *,
        item_table: np.ndarray | None = None,
    ) -> np.ndarray:
        """One user's ``(dim,)`` vector; see :meth:`user_embeddings`."""
        return self.user_embeddings([history], item_vectors, item_table=item_table)[0]

    def scores(
        self,
        histories: Sequence[Sequence[int] | np.ndarray],
        item_vectors: np.ndarray | None = None,
        *,
        item_table: np.ndarray | None = None,
        runtime: TowerRuntime | None = None,
    ) -> np.ndarray:
        """Relevance of every item for every history, ``(b, n_items)`` (seen items included).

        ``runtime``: see :meth:`user_embeddings`.
        """
        if item_table is None:
            if item_vectors is None:
                raise InputError("scores needs item_table or item_vectors")
            item_table = self.item_embeddings(item_vectors)
        users = self.user_embeddings(histories, item_table=item_table, runtime=runtime)
        tower = item_dots(item_table, users)
        cooc = getattr(self, "cooc_", None)
        if cooc is None or self.cooc_weight_ == 0.0:
            return tower
        co = cooc.scores(list(histories), tower.shape[1], self.cooc_decay_)
        return mix(tower, co.numpy(), self.cooc_weight_)

    def new_item_mask(self, n_items: int | None = None) -> np.ndarray:
        """Boolean ``(n_items,)``: True for items with no collaborative signal (text only)."""
        net = self._check_fitted()
        n = n_items or net.n_items
        mask = np.ones(n, dtype=bool)
        m = min(n, net.n_items)
        mask[:m] = ~net.has_id[:m].cpu().numpy() if net.id_emb is not None else True
        return mask

    def _user_states(
        self,
        histories: Sequence[Sequence[int] | np.ndarray],
        table: torch.Tensor,
        batch_size: int,
        runtime: TowerRuntime | None = None,
    ) -> torch.Tensor:
        net = self._check_fitted()
        if net.training:  # a loaded model is in eval mode already; eval() walks every module
            net.eval()
        if runtime is not None and runtime.net is not net:
            raise ValueError("runtime: made from another network than this model's")
        if runtime is not None and table.device.type != "cpu":
            raise ValueError(f"runtime: runs on the CPU, the item table is on {table.device}")
        out = []
        n = table.shape[0]
        for start in range(0, len(histories), batch_size):
            rows = [np.asarray(h, dtype=np.int64) for h in histories[start : start + batch_size]]
            for r in rows:
                if len(r) and (r.min() < 0 or r.max() >= n):
                    raise InputError(
                        f"history: item index out of range [0, {n}): {r.min()}..{r.max()}",
                        field="history",
                    )
            padded = left_pad(rows, net.max_len)
            if runtime is not None:
                out.append(torch.from_numpy(runtime.last_state(padded, table.numpy())))
                continue
            with torch.no_grad():
                out.append(net.last_state(torch.from_numpy(padded).to(table.device), table))
        if not out:
            return torch.empty(0, net.dim, device=table.device)
        return torch.cat(out)

    @torch.inference_mode()
    def _all_scores(self, histories: Sequence[np.ndarray], vec_t: torch.Tensor) -> torch.Tensor:
        """The tower's ``(len(histories), n_items)`` scores over the whole catalogue."""
        table = self.net_.item_table(vec_t)
        return self._user_states(histories, table, 256) @ table.T

    @torch.inference_mode()
    def _topk(
        self, histories: Sequence[np.ndarray], vec_t: torch.Tensor, k: int, *, target: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Top-k (history excluded) and the mean cross-entropy of ``target``."""
        self._check_fitted().eval()
        s = self._all_scores(histories, vec_t)
        loss = torch.nn.functional.cross_entropy(s, torch.as_tensor(target, device=s.device))
        s.masked_fill_(seen_mask(histories, s.shape[1]).to(s.device), -float("inf"))
        top = torch.topk(s, min(k, s.shape[1]), dim=1).indices.cpu().numpy()
        return top, float(loss)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``user_tower.safetensors`` and ``tower_config.json`` into ``directory``."""
        return save_recommender(self, directory)

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> SequenceRecommender:
        """Rebuild a fitted model written by :meth:`save` (no code is unpickled)."""
        return load_recommender(cls, directory, device=device)
