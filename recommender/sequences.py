"""Interaction logs as per-user item sequences, and the padded windows training reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recommender.errors import InputError

__all__ = [
    "sequences_from_interactions",
    "hold_out_last",
    "left_pad",
    "trainable_sequences",
    "windows",
]


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


def trainable_sequences(sequences: Sequence[np.ndarray], n_items: int) -> list[np.ndarray]:
    """The histories of 2+ items, as int64 arrays; an error names an index out of range.

    >>> [s.tolist() for s in trainable_sequences([[0, 1], [2], [1, 2, 0]], 3)]
    [[0, 1], [1, 2, 0]]
    """
    seqs = [np.asarray(s, dtype=np.int64) for s in sequences if len(s) >= 2]
    for s in seqs:
        if s.min() < 0 or s.max() >= n_items:
            raise InputError(
                f"sequences: item index out of range [0, {n_items}): {s.min()}..{s.max()}",
                field="sequences",
            )
    if not seqs:
        raise InputError("sequences: need at least one history of 2+ items", field="sequences")
    return seqs


def left_pad(rows: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Rows right-aligned in a ``(len(rows), length)`` array, -1 on the left; longer rows
    keep their last ``length`` items.

    >>> left_pad([np.array([1, 2]), np.array([3, 4, 5, 6])], 3).tolist()
    [[-1, 1, 2], [4, 5, 6]]
    """
    out = np.full((len(rows), length), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        row = np.asarray(row, dtype=np.int64)[-length:]
        if len(row):
            out[r, length - len(row) :] = row
    return out


def windows(sequences: Sequence[np.ndarray], max_len: int) -> list[np.ndarray]:
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


def hold_out_last(
    sequences: Sequence[np.ndarray],
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Training sequences, validation histories and targets: each sequence of 3+ items
    gives its last item to validation (shorter ones are kept whole for training).

    >>> train, hist, target = hold_out_last([np.array([1, 2, 3]), np.array([4, 5])])
    >>> [t.tolist() for t in train], [h.tolist() for h in hist], target.tolist()
    ([[1, 2], [4, 5]], [[1, 2]], [3])
    """
    val_hist = [s[:-1] for s in sequences if len(s) >= 3]
    val_target = np.array([s[-1] for s in sequences if len(s) >= 3], dtype=np.int64)
    train = [s[:-1] if len(s) >= 3 else s for s in sequences]
    return train, val_hist, val_target
