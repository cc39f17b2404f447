"""Live histories: feedback events applied on top of a model's stored log.

The feedback side owns this object (see :mod:`recommender.refresh`): it appends the
events the feedback store has committed and remembers the newest one applied
(``seq``); the request path only reads it, through :meth:`LiveHistories.get` and
:meth:`LiveHistories.disliked` (items a user disliked: never recommended to them again,
their neighbours lowered).

Examples
--------
>>> import numpy as np, pandas as pd
>>> live = LiveHistories()
>>> live.add(["u1", "u1"], np.array([3, 5]), np.array([10, 20]), np.ones(2))
2
>>> live.get("u1").items.tolist(), "u2" in live
([3, 5], False)
>>> live.dislike(["u2"], np.array([4]))
1
>>> live.disliked("u2").tolist(), "u2" in live
([4], False)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from recommender.history import History

__all__ = ["LiveHistories"]

_NONE = np.zeros(0, dtype=np.int64)


class LiveHistories:
    """Per-user histories from feedback, safe to read while another thread appends.

    Attributes
    ----------
    seq : int
        The newest feedback-store sequence number applied (a refresh high-water mark).
    sync_lock : threading.Lock
        Held by whoever pulls new events from the store, so two threads of one worker
        never apply the same events twice.
    """

    def __init__(self, seq: int = 0) -> None:
        self.seq = int(seq)
        self.sync_lock = threading.Lock()
        self._lock = threading.Lock()
        self._by_user: dict[Any, History] = {}
        self._disliked: dict[Any, np.ndarray] = {}

    def __contains__(self, user_key: object) -> bool:
        return user_key in self._by_user

    def __len__(self) -> int:
        return len(self._by_user)

    def get(self, user_key: Any) -> History | None:
        """The user's live history, ``None`` when there is none."""
        return self._by_user.get(user_key)

    def disliked(self, user_key: Any) -> np.ndarray:
        """Item rows the user disliked, sorted (empty when none)."""
        return self._disliked.get(user_key, _NONE)

    def dislike(self, user_keys: Sequence[Any], rows: np.ndarray) -> int:
        """Record that each user disliked the item row at the same position."""
        rows = np.asarray(rows, dtype=np.int64)
        with self._lock:
            for u, r in zip(user_keys, rows, strict=True):
                self._disliked[u] = np.union1d(self._disliked.get(u, _NONE), [r])
        return len(rows)

    def add(
        self,
        user_keys: Sequence[Any],
        rows: np.ndarray,
        timestamps: np.ndarray,
        weights: np.ndarray,
    ) -> int:
        """Append events (one per position of the arrays); return how many."""
        rows = np.asarray(rows, dtype=np.int64)
        ts = np.asarray(timestamps, dtype=np.int64)
        w = np.asarray(weights, dtype=np.float64)
        with self._lock:
            for u in dict.fromkeys(user_keys):
                sel = np.array([x == u for x in user_keys])
                add = History(rows[sel], ts[sel], w[sel])
                old = self._by_user.get(u)
                self._by_user[u] = add if old is None else old.extend(add)
        return len(rows)
