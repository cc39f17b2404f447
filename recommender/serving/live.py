"""Live histories: feedback events applied on top of a model's stored log.

The feedback side owns this object (see :mod:`recommender.refresh`): it appends the
events the feedback store has committed and remembers the newest one applied
(``seq``); the request path only reads it, through :meth:`LiveHistories.get`.

Examples
--------
>>> import numpy as np, pandas as pd
>>> live = LiveHistories()
>>> live.add(["u1", "u1"], np.array([3, 5]), np.array([10, 20]), np.ones(2))
2
>>> live.get("u1").items.tolist(), "u2" in live
([3, 5], False)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from recommender.history import History

__all__ = ["LiveHistories"]


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

    def __contains__(self, user_key: object) -> bool:
        return user_key in self._by_user

    def __len__(self) -> int:
        return len(self._by_user)

    def get(self, user_key: Any) -> History | None:
        """The user's live history, ``None`` when there is none."""
        return self._by_user.get(user_key)

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
