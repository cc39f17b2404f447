"""Training the sequential recommender on interactions, on top of the BERT item vectors.

:class:`SequenceRecommender` is the estimator the CLI's ``recbento train`` fits: a
:class:`~recommender.tower.UserTower` trained with a full softmax over the catalogue on
next-item prediction from every prefix of every user's history, early-stopped on the
NDCG@10 of each user's last training item (the validation case; the real test item is
never seen). It is saved as ``user_tower.safetensors`` + ``tower_config.json``.

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

import copy
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from recommender.errors import BundleError, InputError
from recommender.tower import CooccurrenceScorer, UserTower

__all__ = [
    "TrainConfig",
    "SequenceRecommender",
    "sequences_from_interactions",
    "TOWER_WEIGHTS",
    "TOWER_CONFIG",
]

log = logging.getLogger(__name__)

TOWER_WEIGHTS = "user_tower.safetensors"
TOWER_CONFIG = "tower_config.json"
_FORMAT = 1


#: Keys of towers saved by earlier versions that mean nothing now (the new-item slot
#: moved to the serving config).
_RETIRED = frozenset({"new_item_slots"})


@dataclass
class TrainConfig:
    """Every knob of the user tower and its training loop.

    The defaults train MovieLens-small in under two minutes on two CPU cores (the time
    cap stops it; the best epoch is kept), and were chosen on its validation cases
    (each user's penultimate item) in ``benchmarks/results/quality_log.md``: sampled
    softmax, the latest 50 items per user, ID dropout 0.2.

    Attributes
    ----------
    dim, n_layers, n_heads, max_len, dropout, id_embeddings
        Model shape (see :class:`~recommender.tower.UserTower`).
    id_dropout : float
        Probability, per item and batch, of hiding its ID embedding in training, so that
        the text adapter alone ranks well (what cold items get).
    lr, weight_decay, batch_size : float, float, int
        AdamW settings; ``batch_size`` counts sequence windows of up to ``max_len`` items.
    max_epochs, patience : int
        Epoch cap; stop after ``patience`` epochs without a better validation NDCG.
    max_seconds : float
        Wall-clock cap on training (the best epoch so far is kept). What stopped
        training (``early_stopping``, ``time_cap`` or ``max_epochs``) is recorded as
        ``summary_["stopped_by"]`` and saved with the tower.
    max_train_len : int or None
        Train on each user's latest ``max_train_len + 1`` items only (as SASRec does);
        ``None`` trains on every transition. Bounds the cost of an epoch by the number of
        users, not the length of their histories.
    softmax, full_softmax_max_items, n_negatives : str, int, int
        ``full``: cross-entropy over the whole catalogue; ``sampled``: over the target
        and ``n_negatives`` warm items drawn uniformly per batch (shared by the batch),
        with only those items' embeddings computed, so an epoch costs in proportion to
        the interactions, not interactions x catalogue. ``auto``: full up to
        ``full_softmax_max_items`` items, sampled above.
    val_max_users : int
        Early stopping ranks the catalogue for at most this many validation users (a
        seeded sample), so that validation grows with the catalogue only.
    val_k : int
        Cut-off of the validation metrics.
    random_state : int
        Seed for torch and numpy.
    num_threads : int
        CPU threads torch may use (0 leaves torch's default).
    device : str or None
        ``cpu`` / ``cuda``; ``None`` picks CUDA when present.
    cooc, cooc_lambda, cooc_min_count : bool, float, int
        Add the collaborative half of the hybrid (recency-weighted EASE, see
        :class:`~recommender.tower.CooccurrenceScorer`) for items with at least
        ``cooc_min_count`` training users (at most ``cooc_max_items``, the most
        popular: the closed form costs the cube of their number).
    cooc_decays, cooc_weights : list of float
        Grids searched on the validation cases for the recency decay and the weight of
        the co-occurrence score against the tower score (both z-scored per user).
    """

    dim: int = 64
    n_layers: int = 2
    n_heads: int = 2
    max_len: int = 50
    dropout: float = 0.3
    id_embeddings: bool = True
    id_dropout: float = 0.2
    lr: float = 5e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    max_epochs: int = 100
    patience: int = 6
    max_seconds: float = 80.0
    max_train_len: int | None = 50
    softmax: str = "sampled"
    full_softmax_max_items: int = 20_000
    n_negatives: int = 1024
    val_max_users: int = 2000
    val_k: int = 10
    random_state: int = 0
    num_threads: int = 2
    device: str | None = None
    cooc: bool = True
    cooc_lambda: float = 500.0
    cooc_min_count: int = 2
    cooc_max_items: int | None = 10_000
    cooc_decays: list[float] = field(default_factory=lambda: [0.8, 0.9, 0.95])
    cooc_weights: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    )

    def __post_init__(self) -> None:
        if self.softmax not in ("auto", "full", "sampled"):
            raise InputError(
                f"train config: softmax={self.softmax!r}; expected 'auto', 'full' or 'sampled'",
                field="softmax",
                value=self.softmax,
            )

    def get_config(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-safe)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`get_config`; unknown keys are an :class:`InputError`."""
        known = {f.name for f in fields(cls)}
        config = {k: v for k, v in config.items() if k not in _RETIRED}
        unknown = sorted(set(config) - known)
        if unknown:
            raise InputError(
                f"train config: unknown key(s) {unknown}; expected some of {sorted(known)}",
                field="config",
                value=unknown,
            )
        return cls(**config)


def sequences_from_interactions(
    interactions: pd.DataFrame, item_ids: Sequence[Any] | pd.Series | np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-user chronological item-index sequences (timestamp, ties by ``item_id``).

    Parameters
    ----------
    interactions : DataFrame
        ``user_id``, ``item_id``, ``timestamp``; with a ``type`` column (typed
        feedback), impressions and dislikes are left out
        (:func:`recommender.feedback_rows.weigh_events`).
    item_ids : array-like
        The catalogue's ``item_id`` column; position = item index.

    Returns
    -------
    user_ids : ndarray
        Sorted user ids.
    sequences : list of int64 ndarray
        ``sequences[j]`` are the item indices of ``user_ids[j]``, oldest first.
    """
    from recommender.feedback_rows import weigh_events

    interactions, _ = weigh_events(interactions)
    index = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids))
    df = interactions.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    idx = index.reindex(df["item_id"].to_numpy()).to_numpy()
    if np.isnan(idx.astype(np.float64)).any():
        missing = df["item_id"].to_numpy()[np.isnan(idx.astype(np.float64))][:5].tolist()
        raise InputError(
            f"interactions.item_id: {missing} not in the items table",
            field="item_id",
            value=missing,
        )
    users = df["user_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    parts = np.split(idx.astype(np.int64), starts[1:])
    return users[starts], parts


def _left_pad(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.full((len(rows), length), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)[-length:]
        if len(row):
            out[r, length - len(row) :] = row
    return out


def _windows(sequences: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
    """Cut each sequence into windows of ``max_len + 1`` items (input + shifted target).

    Windows are taken from the end backwards and overlap by one item, so every
    transition ``a -> b`` of every sequence is a training target exactly once.
    """
    out: list[np.ndarray] = []
    for seq in sequences:
        end = len(seq)
        while end >= 2:
            start = max(0, end - max_len - 1)
            out.append(seq[start:end])
            end = start + 1
            if start == 0:
                break
    return out


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
        seqs = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) >= 2]
        for s in seqs:
            if s.min() < 0 or s.max() >= n_items:
                raise InputError(
                    f"sequences: item index out of range [0, {n_items}): {s.min()}..{s.max()}",
                    field="sequences",
                )
        if not seqs:
            raise InputError("sequences: need at least one history of 2+ items", field="sequences")
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.random_state)
        rng = np.random.default_rng(cfg.random_state)
        device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))

        if validate:
            val_hist = [s[:-1] for s in seqs if len(s) >= 3]
            val_target = np.array([s[-1] for s in seqs if len(s) >= 3], dtype=np.int64)
            train_seqs = [s[:-1] if len(s) >= 3 else s for s in seqs]
        else:
            val_hist, val_target, train_seqs = [], np.empty(0, np.int64), seqs
        recent = train_seqs
        if cfg.max_train_len is not None:
            recent = [s[-(cfg.max_train_len + 1) :] for s in train_seqs]
        windows = _windows(recent, cfg.max_len)
        n_pos = sum(len(w) - 1 for w in windows)

        net = UserTower(
            n_items,
            vecs.shape[1],
            dim=cfg.dim,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            max_len=cfg.max_len,
            dropout=cfg.dropout,
            id_embeddings=cfg.id_embeddings,
        ).to(device)
        if warm_start is not None:
            _load_warm_start(net, warm_start)
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

        history: list[dict[str, float]] = []
        best: tuple[tuple[float, float], int] = ((-1.0, -np.inf), -1)
        best_state = copy.deepcopy(net.state_dict())
        t0 = time.perf_counter()
        log.info(
            "training on %d sequences, %d windows, %d targets, %d items, %s softmax",
            len(train_seqs),
            len(windows),
            n_pos,
            n_items,
            "sampled" if sampled else "full",
        )
        stopped_by = "max_epochs"
        bar = tqdm(range(cfg.max_epochs), desc="training", unit="epoch", disable=not progress)
        for epoch in bar:
            te = time.perf_counter()
            net.train()
            order = rng.permutation(len(windows))
            total, count = 0.0, 0
            for start in range(0, len(order), cfg.batch_size):
                batch = [windows[i] for i in order[start : start + cfg.batch_size]]
                length = max(len(w) for w in batch) - 1
                inp = torch.from_numpy(_left_pad([w[:-1] for w in batch], length)).to(device)
                tgt = torch.from_numpy(_left_pad([w[1:] for w in batch], length)).to(device)
                if sampled:
                    loss, valid = _sampled_loss(net, vec_t, inp, tgt, warm_t, cfg, gen)
                else:
                    loss, valid = _full_loss(net, vec_t, inp, tgt, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * int(valid.sum())
                count += int(valid.sum())
            record = {"epoch": epoch + 1, "loss": total / max(count, 1)}
            if len(val_target):
                self.net_ = net
                top, val_loss = self._topk(val_hist, vec_t, cfg.val_k, target=val_target)
                record.update(_metrics(top, val_target, cfg.val_k), val_loss=val_loss)
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
        self.net_ = net
        self.cooc_, self.cooc_decay_, self.cooc_weight_ = None, 1.0, 0.0
        hybrid: dict[str, Any] = {}
        if cfg.cooc:
            hybrid = self._fit_cooc(seqs, train_seqs, val_hist, val_target, n_items, vec_t)
        self.summary_ = {
            "epochs": history,
            "best_epoch": best[1],
            "stopped_by": stopped_by,
            f"best_val_ndcg@{cfg.val_k}": best[0][0] if len(val_target) else None,
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
            len(history),
            self.summary_["seconds"],
            best[1],
            best[0][0],
        )
        return self

    def _fit_cooc(
        self,
        seqs: list[np.ndarray],
        train_seqs: list[np.ndarray],
        val_hist: list[np.ndarray],
        val_target: np.ndarray,
        n_items: int,
        vec_t: torch.Tensor,
    ) -> dict[str, Any]:
        """Fit the co-occurrence half; pick its decay and weight on the validation cases."""
        cfg = self.config
        t0 = time.perf_counter()
        params = {
            "lam": cfg.cooc_lambda,
            "min_count": cfg.cooc_min_count,
            "max_items": cfg.cooc_max_items,
        }
        grid: dict[str, float] = {}
        decay, weight = cfg.cooc_decays[0], cfg.cooc_weights[-1]
        cooc = None
        if len(val_target):
            cooc = CooccurrenceScorer(**params).fit(train_seqs, n_items)
            with torch.inference_mode():
                table = self.net_.item_table(vec_t)
                tower = _zscore(self._user_states(val_hist, table, 256) @ table.T).cpu()
            best = -1.0
            for d in cfg.cooc_decays:
                co = _zscore(cooc.scores(val_hist, n_items, d))
                for w in cfg.cooc_weights:
                    s = tower + w * co
                    for r, h in enumerate(val_hist):
                        s[r, torch.as_tensor(h)] = -float("inf")
                    top = torch.topk(s, min(cfg.val_k, n_items), dim=1).indices.numpy()
                    ndcg = _metrics(top, val_target, cfg.val_k)[f"val_ndcg@{cfg.val_k}"]
                    grid[f"decay={d},weight={w}"] = ndcg
                    if ndcg > best:
                        best, decay, weight = ndcg, d, w
        if cooc is None:
            cooc = CooccurrenceScorer(**params).fit(seqs, n_items)
        # B is kept from the fit without the validation items (one item per user of
        # thousands: refitting would double the closed form's cost for nothing visible)
        cooc.decay = decay
        self.cooc_ = cooc
        self.cooc_decay_, self.cooc_weight_ = decay, weight
        log.info(
            "hybrid: co-occurrence over %d items, decay %.2f, weight %.2f (%.1fs)",
            len(self.cooc_.active_),
            decay,
            weight,
            time.perf_counter() - t0,
        )
        return {
            "decay": decay,
            "weight": weight,
            "n_items": int(len(self.cooc_.active_)),
            f"val_ndcg@{cfg.val_k}": grid.get(f"decay={decay},weight={weight}"),
            "grid": grid,
            "seconds": time.perf_counter() - t0,
        }

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
    ) -> np.ndarray:
        """User vectors ``(b, dim)`` from item-index histories (oldest first).

        Pass the precomputed ``item_table`` (from :meth:`item_embeddings`) or the raw
        ``item_vectors``. An empty history gives the vector of the position embedding
        alone (a popularity-like prior).
        """
        net = self._check_fitted()
        if item_table is None:
            if item_vectors is None:
                raise InputError("user_embeddings needs item_table or item_vectors")
            item_table = self.item_embeddings(item_vectors)
        dev = next(net.parameters()).device
        table = torch.as_tensor(np.asarray(item_table, dtype=np.float32)).to(dev)
        return self._user_states(histories, table, batch_size).cpu().numpy()

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
    ) -> np.ndarray:
        """Relevance of every item for every history, ``(b, n_items)`` (seen items included)."""
        if item_table is None:
            if item_vectors is None:
                raise InputError("scores needs item_table or item_vectors")
            item_table = self.item_embeddings(item_vectors)
        users = self.user_embeddings(histories, item_table=item_table)
        tower = users @ np.asarray(item_table, dtype=np.float32).T
        cooc = getattr(self, "cooc_", None)
        if cooc is None or self.cooc_weight_ == 0.0:
            return tower
        co = cooc.scores(list(histories), tower.shape[1], self.cooc_decay_)
        mixed = _zscore(torch.from_numpy(tower)) + self.cooc_weight_ * _zscore(co)
        return mixed.numpy()

    def new_item_mask(self, n_items: int | None = None) -> np.ndarray:
        """Boolean ``(n_items,)``: True for items with no collaborative signal (text only)."""
        net = self._check_fitted()
        n = n_items or net.n_items
        mask = np.ones(n, dtype=bool)
        m = min(n, net.n_items)
        mask[:m] = ~net.has_id[:m].cpu().numpy() if net.id_emb is not None else True
        return mask

    def _user_states(
        self, histories: Sequence[Sequence[int] | np.ndarray], table: torch.Tensor, batch_size: int
    ) -> torch.Tensor:
        net = self._check_fitted()
        net.eval()
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
            padded = torch.from_numpy(_left_pad(rows, net.max_len)).to(table.device)
            with torch.no_grad():
                h = net.encode(padded, table)
            out.append(h[:, -1])
        if not out:
            return torch.empty(0, net.dim, device=table.device)
        return torch.cat(out)

    @torch.inference_mode()
    def _topk(
        self, histories: Sequence[np.ndarray], vec_t: torch.Tensor, k: int, *, target: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """Top-k (history excluded) and the mean cross-entropy of ``target``."""
        net = self._check_fitted()
        net.eval()
        table = net.item_table(vec_t)
        s = self._user_states(histories, table, 256) @ table.T
        loss = torch.nn.functional.cross_entropy(s, torch.as_tensor(target, device=s.device))
        for r, h in enumerate(histories):
            s[r, torch.as_tensor(np.asarray(h, dtype=np.int64))] = -float("inf")
        top = torch.topk(s, min(k, s.shape[1]), dim=1).indices.cpu().numpy()
        return top, float(loss)

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``user_tower.safetensors`` and ``tower_config.json`` into ``directory``."""
        net = self._check_fitted()
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        cooc = getattr(self, "cooc_", None)
        if cooc is not None:
            state.update({k: v.contiguous() for k, v in cooc.state_dict().items()})
        save_file(state, str(path / TOWER_WEIGHTS))
        meta = {
            "format": _FORMAT,
            "config": self.get_config(),
            "n_items": net.n_items,
            "text_dim": net.text_dim,
            "summary": getattr(self, "summary_", None),
            "cooc": None
            if cooc is None
            else {
                "lam": cooc.lam,
                "decay": self.cooc_decay_,
                "min_count": cooc.min_count,
                "weight": self.cooc_weight_,
            },
        }
        (path / TOWER_CONFIG).write_text(json.dumps(meta, indent=2))
        log.info("saved user tower to %s", path)
        return path

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = None) -> SequenceRecommender:
        """Rebuild a fitted model written by :meth:`save` (no code is unpickled)."""
        path = Path(directory)
        cfg_path, w_path = path / TOWER_CONFIG, path / TOWER_WEIGHTS
        if not cfg_path.is_file() or not w_path.is_file():
            raise BundleError(
                f"user tower in {str(path)!r}: expected {TOWER_CONFIG} and {TOWER_WEIGHTS}"
            )
        meta = json.loads(cfg_path.read_text())
        if meta.get("format") != _FORMAT:
            raise BundleError(
                f"{TOWER_CONFIG}: format={meta.get('format')!r}, expected {_FORMAT}",
                field="format",
                value=meta.get("format"),
            )
        model = cls.from_config(meta["config"])
        cfg = model.config
        net = UserTower(
            meta["n_items"],
            meta["text_dim"],
            dim=cfg.dim,
            n_layers=cfg.n_layers,
            n_heads=cfg.n_heads,
            max_len=cfg.max_len,
            dropout=cfg.dropout,
            id_embeddings=cfg.id_embeddings,
        )
        state = load_file(str(w_path))
        cooc_state = {k: state.pop(k) for k in list(state) if k.startswith("cooc.")}
        net.load_state_dict(state)
        model.cooc_, model.cooc_decay_, model.cooc_weight_ = None, 1.0, 0.0
        hybrid = meta.get("cooc")
        if hybrid is not None:
            params = {k: hybrid[k] for k in ("lam", "decay", "min_count")}
            model.cooc_ = CooccurrenceScorer.from_state(cooc_state, **params)
            model.cooc_decay_, model.cooc_weight_ = hybrid["decay"], hybrid["weight"]
        dev = torch.device(device or cfg.device or "cpu")
        model.net_ = net.to(dev).eval()
        model.summary_ = meta.get("summary")
        return model


def _load_warm_start(net: UserTower, previous: SequenceRecommender) -> None:
    """Copy ``previous``'s weights into the fresh ``net`` (same shapes, or an error)."""
    old = previous._check_fitted().state_dict()
    new = net.state_dict()
    wrong = sorted(k for k in new if k not in old or old[k].shape != new[k].shape)
    if wrong:
        raise InputError(
            f"warm_start: the previous tower's weights do not fit this one ({wrong[:3]}); "
            "its catalogue size, text dimension or shape settings differ. Train from "
            "scratch instead",
            field="warm_start",
            value=wrong[:3],
        )
    net.load_state_dict({k: old[k].to(new[k].device) for k in new})


def _full_loss(
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


def _sampled_loss(
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


def _zscore(s: torch.Tensor) -> torch.Tensor:
    """Per-row standardisation, so that two scorers can be mixed with one weight."""
    mean = s.mean(dim=1, keepdim=True)
    std = s.std(dim=1, keepdim=True).clamp(min=1e-8)
    return (s - mean) / std


def _metrics(topk: np.ndarray, target: np.ndarray, k: int) -> dict[str, float]:
    from recommender.eval import hit_rate_at_k, ndcg_at_k

    return {
        f"val_hr@{k}": hit_rate_at_k(topk, target, k),
        f"val_ndcg@{k}": ndcg_at_k(topk, target, k),
    }
