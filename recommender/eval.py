"""Offline evaluation: the leave-last-out split, ranking metrics and the cold-item split.

The protocol (shared by every system in ``benchmarks/quality.py``): each user's last
interaction, by timestamp, is the test case; everything else trains. Logs such as
MovieLens record whole sessions under one timestamp; :func:`break_ties` orders each
user's equal timestamps by a seeded shuffle (and nudges them apart by whole seconds), so
no system learns from the order the item ids happen to have. Systems rank *all* items,
the user's training items excluded, and are scored on the top ``k``.

Examples
--------
>>> import numpy as np
>>> topk = np.array([[3, 1, 2], [0, 4, 5]])
>>> hit_rate_at_k(topk, np.array([1, 9]))
0.5
>>> round(ndcg_at_k(topk, np.array([1, 9])), 4)  # hit at rank 2: 1/log2(3) / 2 users
0.3155
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recommender.errors import InputError
from recommender.topk import top_k

__all__ = [
    "break_ties",
    "shuffle_within_users",
    "last_case_mask",
    "leave_last_out",
    "cold_item_split",
    "hit_rate_at_k",
    "ndcg_at_k",
    "coverage_at_k",
    "hit_positions",
    "evaluate_rankings",
    "topk_from_scores",
    "val_metrics",
]

log = logging.getLogger(__name__)

_USER, _ITEM, _TS = "user_id", "item_id", "timestamp"


def _check_columns(df: pd.DataFrame, name: str) -> None:
    missing = [c for c in (_USER, _ITEM, _TS) if c not in df.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {missing}; expected user_id, item_id, timestamp",
            field=name,
            value=missing,
        )


def _chronological(interactions: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by user, timestamp, item_id (the order every split relies on)."""
    return interactions.sort_values([_USER, _TS, _ITEM], kind="stable").reset_index(drop=True)


def _restamp(df: pd.DataFrame, key: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Order each user's rows by ``key`` and make their timestamps strictly increasing.

    Timestamp ``t`` of a row becomes ``max(t, previous + 1)`` in the new order, so
    every system (splits, baselines, training, serving) reads the same order.
    """
    df = df.assign(_key=key).sort_values([_USER, "_key"], kind="stable")
    users = df[_USER].to_numpy()
    ts = df[_TS].to_numpy(dtype=np.int64)
    first = np.r_[True, users[1:] != users[:-1]]
    # a strictly increasing run: t'_i = max over j <= i in the user of (t_j + i - j)
    idx = np.arange(len(ts))
    start = np.maximum.accumulate(np.where(first, idx, 0))
    shifted = ts - (idx - start)
    # running max restarted at every user: offset each user's block far above the last
    block = np.cumsum(first) * (int(np.abs(shifted).max()) * 2 + 1)
    run = np.maximum.accumulate(shifted + block) - block
    new = run + (idx - start)
    out = df.drop(columns="_key").assign(**{_TS: new}).reset_index(drop=True)
    return out, int((new - ts).max()) if len(ts) else 0


def break_ties(interactions: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """The log with every user's equal timestamps in a seeded random order.

    Rows keep their time order; within a user's rows of one timestamp the order is a
    shuffle drawn from ``seed`` (not ``item_id``, which would tell a sequential model
    which item comes last), and timestamps are nudged by whole seconds so that the
    order is explicit: every later sort by time finds it. The largest nudge is logged.

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [5, 5, 9]})
    >>> out = break_ties(df, seed=0)
    >>> out.timestamp.tolist(), int(out.item_id.iloc[-1])
    ([5, 6, 9], 3)
    """
    _check_columns(interactions, "interactions")
    rng = np.random.default_rng(seed)
    noise = rng.random(len(interactions))
    ts = interactions[_TS].to_numpy(dtype=np.int64)
    # sort key: timestamp first, the shuffle among equal timestamps
    key = np.lexsort((noise, ts))
    rank = np.empty(len(key), dtype=np.int64)
    rank[key] = np.arange(len(key))
    out, nudge = _restamp(interactions, rank)
    log.info("ties broken by a seeded shuffle (seed %d); largest nudge %d s", seed, nudge)
    return out


def shuffle_within_users(interactions: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """A copy of the log whose order within each user is a seeded random permutation.

    Each user keeps their items and their set of timestamps; which item has which
    timestamp is shuffled (a robustness check: a model should not depend on order it
    cannot know).
    """
    _check_columns(interactions, "interactions")
    df = interactions.sort_values([_USER, _TS], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    key = np.lexsort((rng.random(len(df)), df[_USER].to_numpy()))
    shuffled = df.iloc[key].reset_index(drop=True)
    shuffled[_TS] = df[_TS].to_numpy()  # same users in the same row order as df
    return break_ties(shuffled, seed=seed)


def last_case_mask(chronological: pd.DataFrame, *, min_train: int = 1) -> pd.Series:
    """Each user's last row, for users with more than ``min_train`` rows before it.

    ``chronological`` is sorted by user, timestamp, item_id (as every split sorts it),
    so the last row is the latest, ties going to the larger ``item_id``. Both the test
    split here and the validation cases serving is tuned on pick their rows with it.
    """
    n_per_user = chronological.groupby(_USER, sort=False)[_USER].transform("size")
    return ~chronological[_USER].duplicated(keep="last") & (n_per_user > min_train)


def leave_last_out(
    interactions: pd.DataFrame, *, min_train: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off each user's last interaction as the test case.

    Parameters
    ----------
    interactions : DataFrame
        Columns ``user_id``, ``item_id``, ``timestamp`` (others are carried along).
    min_train : int
        A user needs at least this many *training* rows to get a test case; users with
        fewer keep all their rows in train.

    Returns
    -------
    train, test : DataFrame
        Both sorted by user, timestamp, item_id; ``test`` has one row per user.

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [10, 12, 11, 5, 6],
    ...                    "timestamp": [1, 3, 3, 1, 2]})
    >>> train, test = leave_last_out(df)
    >>> test.item_id.tolist()  # user 1: tie at t=3 goes to the larger item_id
    [12, 6]
    """
    _check_columns(interactions, "interactions")
    df = _chronological(interactions)
    test_mask = last_case_mask(df, min_train=min_train)
    train, test = df[~test_mask].reset_index(drop=True), df[test_mask].reset_index(drop=True)
    log.info("leave-last-out: %d train rows, %d test users", len(train), len(test))
    return train, test


def cold_item_split(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    *,
    frac: float = 0.1,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Leave-last-out, then remove a random ``frac`` of items from training entirely.

    The test set is the same as :func:`leave_last_out` on the full log; the training
    rows of the sampled ("cold") items are dropped, so no system sees them interacted
    with. Evaluate on the test rows whose ``item_id`` is in the returned cold ids.

    Returns
    -------
    train : DataFrame
        Training rows without any cold item.
    test : DataFrame
        One row per user (unchanged by the removal) with a boolean column ``cold``.
    cold_ids : ndarray
        The removed ``item_id`` values.

    Examples
    --------
    >>> df = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    >>> items = pd.DataFrame({"item_id": [1, 2, 3, 4]})
    >>> train, test, cold = cold_item_split(df, items, frac=0.5, seed=0)
    >>> len(cold), bool(train.item_id.isin(cold).any())
    (2, False)
    """
    if not 0.0 < frac < 1.0:
        raise InputError(f"frac={frac!r}: expected a fraction in (0, 1)", field="frac", value=frac)
    train, test = leave_last_out(interactions)
    ids = items[_ITEM].to_numpy()
    rng = np.random.default_rng(seed)
    n_cold = max(1, int(round(frac * len(ids))))
    cold_ids = np.sort(rng.choice(ids, size=n_cold, replace=False))
    train = train[~train[_ITEM].isin(cold_ids)].reset_index(drop=True)
    test = test.assign(cold=test[_ITEM].isin(cold_ids).to_numpy())
    log.info(
        "cold split: %d cold items, %d train rows left, %d cold test cases",
        n_cold,
        len(train),
        int(test["cold"].sum()),
    )
    return train, test, cold_ids


def hit_positions(topk_item_idx: np.ndarray, test_item_idx: np.ndarray) -> np.ndarray:
    """0-based rank of each user's test item in its top-k row, ``-1`` when absent."""
    topk = np.asarray(topk_item_idx)
    target = np.asarray(test_item_idx).reshape(-1, 1)
    if topk.ndim != 2 or topk.shape[0] != target.shape[0]:
        raise InputError(
            f"topk_item_idx shape {topk.shape} does not match {target.shape[0]} test items; "
            "expected (n_users, k)",
            field="topk_item_idx",
            value=topk.shape,
        )
    match = topk == target
    return np.where(match.any(axis=1), match.argmax(axis=1), -1)


def hit_rate_at_k(
    topk_item_idx: np.ndarray, test_item_idx: np.ndarray, k: int | None = None
) -> float:
    """Fraction of users whose test item is in their top ``k`` (default: all columns)."""
    topk = np.asarray(topk_item_idx)[:, :k] if k else np.asarray(topk_item_idx)
    pos = hit_positions(topk, test_item_idx)
    return float((pos >= 0).mean()) if len(pos) else 0.0


def ndcg_at_k(topk_item_idx: np.ndarray, test_item_idx: np.ndarray, k: int | None = None) -> float:
    """Mean NDCG@k with one relevant item per user: ``1 / log2(rank + 2)`` on a hit."""
    topk = np.asarray(topk_item_idx)[:, :k] if k else np.asarray(topk_item_idx)
    pos = hit_positions(topk, test_item_idx)
    if not len(pos):
        return 0.0
    gain = np.where(pos >= 0, 1.0 / np.log2(np.maximum(pos, 0) + 2.0), 0.0)
    return float(gain.mean())


def coverage_at_k(topk_item_idx: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Fraction of the catalogue that appears in at least one user's top ``k``."""
    topk = np.asarray(topk_item_idx)[:, :k] if k else np.asarray(topk_item_idx)
    if n_items <= 0:
        raise InputError(f"n_items={n_items!r}: expected > 0", field="n_items", value=n_items)
    valid = topk[topk >= 0]
    return float(len(np.unique(valid)) / n_items)


def val_metrics(topk_item_idx: np.ndarray, target: np.ndarray, k: int) -> dict[str, float]:
    """HR@k and NDCG@k of validation cases, named ``val_hr@k`` and ``val_ndcg@k``.

    >>> val_metrics(np.array([[3, 1]]), np.array([1]), 2)["val_hr@2"]
    1.0
    """
    return {
        f"val_hr@{k}": hit_rate_at_k(topk_item_idx, target, k),
        f"val_ndcg@{k}": ndcg_at_k(topk_item_idx, target, k),
    }


def evaluate_rankings(
    topk_item_idx: np.ndarray,
    test_item_idx: np.ndarray,
    *,
    n_items: int | None = None,
    k: int = 10,
) -> dict[str, float]:
    """HR@k, NDCG@k and (when ``n_items`` is given) coverage@k in one dict.

    Keys are ``hr@{k}``, ``ndcg@{k}``, ``coverage@{k}`` and ``n`` (number of users).

    Examples
    --------
    >>> evaluate_rankings(np.array([[0, 1], [1, 2]]), np.array([0, 3]), n_items=4, k=2)
    {'hr@2': 0.5, 'ndcg@2': 0.5, 'coverage@2': 0.75, 'n': 2}
    """
    out = {
        f"hr@{k}": hit_rate_at_k(topk_item_idx, test_item_idx, k),
        f"ndcg@{k}": ndcg_at_k(topk_item_idx, test_item_idx, k),
    }
    if n_items is not None:
        out[f"coverage@{k}"] = coverage_at_k(topk_item_idx, n_items, k)
    out["n"] = int(len(test_item_idx))
    return out


def topk_from_scores(
    scores: np.ndarray,
    k: int,
    exclude: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Top-``k`` item indices per row of a ``(n_users, n_items)`` score matrix.

    ``exclude[u]`` lists item indices that user ``u`` must not get (seen items). Ties
    are broken by the lower item index (:func:`recommender.topk.top_k`).
    """
    return top_k(scores, k, exclude=exclude)[0]
