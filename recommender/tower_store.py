"""A trained sequential recommender on disk: ``user_tower.safetensors`` + ``tower_config.json``.

The weights file holds the tower's tensors and the co-occurrence half's (``cooc.*``); the
JSON holds the training config, the shapes, the training summary and the hybrid's chosen
settings. Nothing is pickled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from recommender.cooccurrence import CooccurrenceScorer
from recommender.errors import BundleError, InputError
from recommender.tower import UserTower

if TYPE_CHECKING:
    from recommender.train import SequenceRecommender
    from recommender.train_config import TrainConfig

__all__ = [
    "TOWER_WEIGHTS",
    "TOWER_CONFIG",
    "build_tower",
    "load_recommender",
    "load_warm_start",
    "save_recommender",
]

log = logging.getLogger(__name__)

TOWER_WEIGHTS = "user_tower.safetensors"
TOWER_CONFIG = "tower_config.json"
_FORMAT = 1


def build_tower(config: TrainConfig, n_items: int, text_dim: int) -> UserTower:
    """An untrained :class:`UserTower` of the shape ``config`` gives, for training or loading."""
    return UserTower(
        n_items,
        text_dim,
        dim=config.dim,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        max_len=config.max_len,
        dropout=config.dropout,
        id_embeddings=config.id_embeddings,
    )


def save_recommender(model: SequenceRecommender, directory: str | Path) -> Path:
    """Write ``model``'s weights and metadata into ``directory``."""
    net = model._check_fitted()
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    cooc = getattr(model, "cooc_", None)
    if cooc is not None:
        state.update({k: v.contiguous() for k, v in cooc.state_dict().items()})
    save_file(state, str(path / TOWER_WEIGHTS))
    meta = {
        "format": _FORMAT,
        "config": model.get_config(),
        "n_items": net.n_items,
        "text_dim": net.text_dim,
        "summary": getattr(model, "summary_", None),
        "cooc": None
        if cooc is None
        else {
            "lam": cooc.lam,
            "decay": model.cooc_decay_,
            "min_count": cooc.min_count,
            "weight": model.cooc_weight_,
        },
    }
    (path / TOWER_CONFIG).write_text(json.dumps(meta, indent=2))
    log.info("saved user tower to %s", path)
    return path


def load_recommender(
    cls: type[SequenceRecommender], directory: str | Path, *, device: str | None = None
) -> SequenceRecommender:
    """Rebuild a fitted ``cls`` written by :func:`save_recommender`."""
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
    net = build_tower(cfg, meta["n_items"], meta["text_dim"])
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


def load_warm_start(net: UserTower, previous: SequenceRecommender) -> None:
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
