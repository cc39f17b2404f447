"""Every knob of the user tower, its training loop and its collaborative hybrid.

>>> TrainConfig(dim=32).get_config()["dim"]
32
>>> TrainConfig.from_config({"softmax": "dense"})
Traceback (most recent call last):
...
recommender.errors.InputError: train config: softmax='dense'; expected 'auto', 'full' or 'sampled'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from recommender.errors import InputError
from recommender.validate import from_mapping

__all__ = ["TrainConfig"]

#: Keys of towers saved by earlier versions that mean nothing now (the new-item slot
#: moved to the serving config; the one EASE weight became the grid ``cooc_lambdas``).
_RETIRED = frozenset({"new_item_slots", "cooc_lambda"})


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
    cooc, cooc_min_count : bool, int
        Add the collaborative half of the hybrid (recency-weighted EASE, see
        :class:`~recommender.cooccurrence.CooccurrenceScorer`) for items with at least
        ``cooc_min_count`` training users (at most ``cooc_max_items``, the most
        popular: the closed form costs the cube of their number).
    cooc_lambdas, cooc_decays, cooc_weights : list of float
        Grids searched together on the validation cases (:mod:`recommender.hybrid`):
        EASE's L2 weight, the recency decay per history position (1.0 ignores the order
        of a history, what a log without a meaningful order needs) and the weight of
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
    cooc_min_count: int = 2
    cooc_max_items: int | None = 10_000
    cooc_lambdas: list[float] = field(default_factory=lambda: [100.0, 250.0, 500.0])
    cooc_decays: list[float] = field(default_factory=lambda: [0.8, 0.9, 0.95, 1.0])
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
        for name in ("cooc_lambdas", "cooc_decays", "cooc_weights"):
            grid = getattr(self, name)
            if not grid or any(not isinstance(v, (int, float)) or v < 0 for v in grid):
                raise InputError(
                    f"train config: {name}={grid!r}; expected a non-empty list of numbers >= 0",
                    field=name,
                    value=grid,
                )

    def get_config(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-safe)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`get_config`; unknown keys are an :class:`InputError`."""
        kept = {k: v for k, v in config.items() if k not in _RETIRED}
        return from_mapping(cls, kept, "train")
