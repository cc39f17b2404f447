"""The quality benchmark's data: the split every system shares, item vectors, log copies.

A :class:`Split` holds one train/test split in item-index space; :data:`LOGS` are the
copies of the log the robustness runs use (users cut short, order shuffled within users),
and :func:`robustness_subsets` picks the test cases of short users and rare items.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from benchmarks.baselines import interaction_matrix
from recommender.eval import shuffle_within_users
from recommender.schemas import Tables
from recommender.train import TrainConfig, sequences_from_interactions

__all__ = [
    "FEW",
    "LOGS",
    "Split",
    "dataset_tables",
    "item_vectors",
    "make_split",
    "robustness_subsets",
    "short_users",
]

log = logging.getLogger("benchmarks.quality")


@dataclass
class Split:
    """One train/test split, in item-index space, shared by every variant.

    ``histories[j]`` is the chronological training history (item indices) of test user
    ``j``; ``X`` is the binary training matrix whose row ``rows[j]`` belongs to that user.
    """

    items: pd.DataFrame
    item_vectors: np.ndarray
    X: sp.csr_matrix
    rows: np.ndarray
    histories: list[np.ndarray]
    all_sequences: list[np.ndarray]
    target: np.ndarray
    train: pd.DataFrame | None = None
    user_ids: list[Any] = field(default_factory=list)
    cold_mask: np.ndarray | None = None
    train_config: TrainConfig = field(default_factory=TrainConfig)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)


def make_split(
    items: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    vectors: np.ndarray,
    train_config: TrainConfig,
) -> Split:
    """Index a train/test pair (``test`` may carry a boolean ``cold`` column)."""
    index = pd.Series(np.arange(len(items)), index=pd.Index(items["item_id"]))
    users = np.sort(pd.concat([train["user_id"], test["user_id"]]).unique())
    uindex = pd.Series(np.arange(len(users)), index=pd.Index(users))
    X = interaction_matrix(
        uindex[train["user_id"]].to_numpy(),
        index[train["item_id"]].to_numpy(),
        (len(users), len(items)),
    )
    seq_users, seqs = sequences_from_interactions(train, items["item_id"])
    by_user = dict(zip(seq_users.tolist(), seqs, strict=True))
    test = test.sort_values("user_id")
    histories = [by_user.get(u, np.empty(0, np.int64)) for u in test["user_id"].tolist()]
    return Split(
        items=items,
        item_vectors=vectors,
        X=X,
        rows=uindex[test["user_id"]].to_numpy(),
        histories=histories,
        all_sequences=seqs,
        target=index[test["item_id"]].to_numpy(),
        train=train,
        user_ids=test["user_id"].tolist(),
        cold_mask=test["cold"].to_numpy() if "cold" in test.columns else None,
        train_config=train_config,
    )


# -- data ---------------------------------------------------------------------------------
def dataset_tables(
    items: Path | None, interactions: Path | None, users: Path | None = None
) -> Tables:
    """The benchmark's tables, validated: the given files, else the bundled demo catalogue."""
    from recommender.data import demo_dir, load_tables

    demo = demo_dir()
    return load_tables(
        items or demo / "items.csv", interactions or demo / "interactions.csv", users
    )


def item_vectors(items: pd.DataFrame, encoder: str | None, cache: Path) -> np.ndarray:
    """MiniLM (or ``encoder``) vectors of the item texts, cached by a hash of texts + name."""
    from safetensors.numpy import load_file, save_file

    from recommender.data import item_texts
    from recommender.encoder import DEFAULT_ENCODER, TextEncoder

    texts = item_texts(items)
    name = encoder or DEFAULT_ENCODER
    digest = hashlib.sha256(("\n".join(texts) + name).encode()).hexdigest()[:16]
    path = cache / f"item_vectors-{digest}.safetensors"
    if path.is_file():
        log.info("item vectors from cache %s", path.name)
        return load_file(str(path))["item_vectors"]
    enc = TextEncoder.from_pretrained(encoder)
    t0 = time.perf_counter()
    vecs = enc.encode(texts, progress=True, desc="encoding items")
    log.info("encoded %d items in %.1fs", len(texts), time.perf_counter() - t0)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({"item_vectors": vecs}, str(path))
    return vecs


#: A test case is a "short user" or a "rare item" case at or below this many training rows.
FEW = 5


def robustness_subsets(split: Split) -> dict[str, np.ndarray]:
    """Test cases of users with at most :data:`FEW` training items, and of target items
    with at most :data:`FEW` training interactions."""
    counts = np.asarray(split.X.sum(axis=0)).ravel()
    return {
        "short_users": np.array([len(h) <= FEW for h in split.histories]),
        "rare_items": counts[split.target] <= FEW,
    }


def short_users(interactions: pd.DataFrame, *, frac: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """The log with a seeded ``frac`` of users cut to their latest ``FEW + 1`` rows
    (``FEW`` to train on, one to test): users who have only just arrived."""
    users = np.sort(interactions["user_id"].unique())
    rng = np.random.default_rng(seed)
    cut = set(rng.choice(users, size=int(round(frac * len(users))), replace=False).tolist())
    df = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    from_end = df.groupby("user_id").cumcount(ascending=False)
    keep = ~df["user_id"].isin(cut) | (from_end <= FEW)
    return df[keep].reset_index(drop=True)


#: Copies of the log the robustness runs use (``--log``); ``as_is`` is the benchmark.
LOGS: dict[str, Callable[..., pd.DataFrame]] = {
    "as_is": lambda df, seed: df,
    "short_users": lambda df, seed: short_users(df, seed=seed),
    "shuffled": lambda df, seed: shuffle_within_users(df, seed=seed),
}
