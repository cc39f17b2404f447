"""User groups: discovery with k-means on user vectors (+ attributes), prediction, save/load.

Features are the L2-normalised user vectors, optionally followed by one-hot user attributes
weighted by ``attribute_weight`` (:mod:`recommender.group_features`).

The number of groups is the best silhouette over ``n_groups_range`` (scored on a sample of at
most ``silhouette_sample`` users, for speed) unless ``n_groups`` is set. Everything random
goes through ``random_state``. New users join the nearest centre (:meth:`UserGroups.predict`);
when the model was fitted with attributes and a new user has none, only the vector part of
the centres is compared.

State is saved as ``groups.json`` + ``groups.safetensors`` (no pickle,
:mod:`recommender.group_files`).

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.vstack([rng.normal([5, 0], 0.1, (20, 2)), rng.normal([0, 5], 0.1, (20, 2))])
>>> g = UserGroups(random_state=0).fit(x)
>>> g.n_groups_
2
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from recommender.errors import InputError
from recommender.group_features import attribute_block, fit_attribute_vocab, unit
from recommender.group_files import groups_meta, load_groups, save_groups
from recommender.group_portraits import (
    GroupPortrait,
    describe_groups,
    group_item_popularity,
    plot_groups,
    portraits_table,
)

__all__ = [
    "GroupPortrait",
    "UserGroups",
    "group_item_popularity",
    "plot_groups",
    "portraits_table",
]

log = logging.getLogger(__name__)


class UserGroups:
    """Discover groups of users with k-means; predict the group of new users.

    Parameters
    ----------
    n_groups : int, optional
        Fixed number of groups; when omitted it is chosen by silhouette.
    n_groups_range : tuple of int, default (2, 12)
        Inclusive range searched when ``n_groups`` is omitted.
    attribute_weight : float, default 1.0
        Norm of the attribute part of the features relative to the unit-norm vector part.
    silhouette_sample : int, default 2000
        Users sampled to score the silhouette.
    n_init : int, default 4
        k-means restarts.
    random_state : int, default 0

    Attributes
    ----------
    labels_ : ndarray of int, shape (n_users,)
    centers_ : ndarray, shape (n_groups, n_features)
        In feature space (vector part first, ``vector_dim_`` columns).
    n_groups_ : int
    silhouette_ : float
        Silhouette of the chosen clustering (on the sample).
    silhouette_scores_ : dict of int -> float
        Every scored ``n_groups``.
    vector_dim_ : int
    attribute_categories_ : dict of str -> list of str
        One-hot vocabulary per attribute column (empty without attributes).
    numeric_bins_ : dict of str -> list of float
        Bin edges of binned numeric attribute columns.
    group_popularity_ : ndarray, shape (n_groups, n_items), or None
        Set by ``fit(..., user_items=...)``; see :func:`group_item_popularity`.
    portraits_ : list of GroupPortrait
        Set by :meth:`load` when portraits were saved with the groups (else empty).
    """

    def __init__(
        self,
        *,
        n_groups: int | None = None,
        n_groups_range: tuple[int, int] = (2, 12),
        attribute_weight: float = 1.0,
        silhouette_sample: int = 2000,
        n_init: int = 4,
        random_state: int = 0,
    ) -> None:
        self.n_groups = n_groups
        self.n_groups_range = n_groups_range
        self.attribute_weight = attribute_weight
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.random_state = random_state

    # ------------------------------------------------------------------ config
    def get_config(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-able dict."""
        return {
            "n_groups": self.n_groups,
            "n_groups_range": list(self.n_groups_range),
            "attribute_weight": self.attribute_weight,
            "silhouette_sample": self.silhouette_sample,
            "n_init": self.n_init,
            "random_state": self.random_state,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> UserGroups:
        """Rebuild an unfitted estimator from :meth:`get_config`."""
        cfg = dict(config)
        if "n_groups_range" in cfg:
            cfg["n_groups_range"] = tuple(cfg["n_groups_range"])
        return cls(**cfg)

    # ------------------------------------------------------------------ features
    def _attribute_block(self, attrs: pd.DataFrame) -> np.ndarray:
        return attribute_block(
            attrs, self.attribute_categories_, self.numeric_bins_, self.attribute_weight
        )

    def _features(self, vectors: np.ndarray, attrs: pd.DataFrame | None) -> np.ndarray:
        v = unit(vectors)
        if not self.attribute_categories_ or attrs is None:
            return v
        return np.hstack([v, self._attribute_block(attrs)])

    # ------------------------------------------------------------------ fit / predict
    def fit(
        self,
        user_vectors: np.ndarray,
        user_attributes: pd.DataFrame | None = None,
        *,
        user_items: sp.spmatrix | None = None,
        entity_counts: np.ndarray | sp.spmatrix | None = None,
    ) -> UserGroups:
        """Cluster users.

        Parameters
        ----------
        user_vectors : ndarray, shape (n_users, d)
        user_attributes : DataFrame, optional
            One row per user (same order), attribute columns only (drop ``user_id``).
        user_items : sparse, shape (n_users, n_items), optional
            Interactions; when given, :attr:`group_popularity_` is computed.
        entity_counts : array or sparse, shape (n_users, n_entities), optional
            Entity mentions in each user's history. When given, users are clustered on
            their taste profiles (:mod:`recommender.group_taste`) and the number of
            groups is the most distinctive stable one; :attr:`centers_` are then the
            groups' mean features (user vector + attributes), so :meth:`predict` places
            a new user by their vector as before.

        Returns
        -------
        self
        """
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        x = np.asarray(user_vectors, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2 or not np.isfinite(x).all():
            raise InputError(
                f"user_vectors must be a finite 2-D array with >= 2 rows, got shape {x.shape}",
                field="user_vectors",
            )
        n = x.shape[0]
        if user_attributes is not None:
            if len(user_attributes) != n:
                raise InputError(
                    f"user_attributes has {len(user_attributes)} rows, expected {n}",
                    field="user_attributes",
                )
            user_attributes = user_attributes.drop(columns=["user_id"], errors="ignore")
            user_attributes = user_attributes.reset_index(drop=True)
            self.attribute_categories_, self.numeric_bins_ = fit_attribute_vocab(user_attributes)
        else:
            self.attribute_categories_, self.numeric_bins_ = {}, {}
        self.vector_dim_ = x.shape[1]
        feats = self._features(x, user_attributes)

        if entity_counts is not None:
            return self._fit_taste(x, feats, entity_counts, user_attributes, user_items)
        ks = self._ks(n)
        rng = np.random.default_rng(self.random_state)
        sample = (
            rng.choice(n, self.silhouette_sample, replace=False)
            if n > self.silhouette_sample
            else np.arange(n)
        )
        best = None
        self.silhouette_scores_: dict[int, float] = {}
        for k in tqdm(ks, desc="groups", disable=len(ks) < 3, leave=False):
            km = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
            labels = km.fit_predict(feats)
            lab_s = labels[sample]
            score = (
                float(silhouette_score(feats[sample], lab_s))
                if 1 < len(np.unique(lab_s)) < sample.size
                else -1.0
            )
            self.silhouette_scores_[k] = score
            log.debug("n_groups=%d silhouette=%.4f", k, score)
            if best is None or score > best[0]:
                best = (score, k, km, labels)
        assert best is not None
        self.silhouette_, self.n_groups_, km, self.labels_ = best
        self.centers_ = np.asarray(km.cluster_centers_, dtype=np.float64)
        self.labels_ = np.asarray(self.labels_, dtype=np.int64)
        self.group_popularity_ = (
            None
            if user_items is None
            else group_item_popularity(self.labels_, user_items, self.n_groups_)
        )
        log.info(
            "found %d user groups (silhouette %.3f) among %d users",
            self.n_groups_,
            self.silhouette_,
            n,
        )
        return self

    def _ks(self, n: int) -> list[int]:
        """The numbers of groups to try: ``n_groups``, else ``n_groups_range`` (capped)."""
        if self.n_groups is not None:
            if not 1 <= int(self.n_groups) <= n:
                raise InputError(f"n_groups={self.n_groups} must be in [1, {n}]", field="n_groups")
            return [int(self.n_groups)]
        lo, hi = (int(v) for v in self.n_groups_range)
        if lo < 2 or hi < lo:
            raise InputError(
                f"n_groups_range={self.n_groups_range} must be (lo, hi) with 2 <= lo <= hi",
                field="n_groups_range",
            )
        return list(range(lo, min(hi, n - 1) + 1)) or [min(lo, n)]

    def _fit_taste(
        self,
        x: np.ndarray,
        feats: np.ndarray,
        entity_counts: np.ndarray | sp.spmatrix,
        user_attributes: pd.DataFrame | None,
        user_items: sp.spmatrix | None,
    ) -> UserGroups:
        """Cluster taste profiles (+ attributes); centres in the vector + attribute space."""
        from sklearn.metrics import silhouette_score

        from recommender.group_taste import choose_groups, taste_features

        n = x.shape[0]
        if entity_counts.shape[0] != n:
            raise InputError(
                f"entity_counts has {entity_counts.shape[0]} rows, expected {n}",
                field="entity_counts",
            )
        taste = taste_features(entity_counts)
        if user_attributes is not None and self.attribute_categories_:
            taste = np.hstack([taste, self._attribute_block(user_attributes)])
        k, labels, table = choose_groups(
            taste, entity_counts, ks=self._ks(n), seed=self.random_state
        )
        self.selection_ = table
        self.n_groups_, self.labels_ = k, labels
        self.silhouette_scores_ = {}
        self.silhouette_ = (
            float(silhouette_score(taste, labels)) if 1 < len(np.unique(labels)) < n else -1.0
        )
        self.silhouette_scores_[k] = self.silhouette_
        self.centers_ = np.stack(
            [
                feats[labels == g].mean(axis=0) if (labels == g).any() else feats.mean(axis=0)
                for g in range(k)
            ]
        )
        self.group_popularity_ = (
            None if user_items is None else group_item_popularity(labels, user_items, k)
        )
        log.info("found %d taste groups among %d users: %s", k, n, table)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "centers_"):
            raise InputError("UserGroups is not fitted; call fit() or load() first", field="groups")

    def predict(self, vectors: np.ndarray, attributes: pd.DataFrame | None = None) -> np.ndarray:
        """Nearest group of each user (works for users never seen in ``fit``).

        Parameters
        ----------
        vectors : ndarray, shape (n, d) or (d,)
        attributes : DataFrame, optional
            The same attribute columns as in ``fit``; without them only the vector part of
            the centres is compared.

        Returns
        -------
        ndarray of int64, shape (n,)
        """
        self._check_fitted()
        x = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if x.shape[1] != self.vector_dim_:
            raise InputError(
                f"vectors have {x.shape[1]} dims, expected {self.vector_dim_}", field="vectors"
            )
        if attributes is not None and self.attribute_categories_:
            feats = self._features(x, attributes.reset_index(drop=True))
            centers = self.centers_
        else:
            feats = unit(x)
            centers = self.centers_[:, : self.vector_dim_]
        d2 = (feats**2).sum(1, keepdims=True) - 2 * feats @ centers.T + (centers**2).sum(1)[None]
        return np.argmin(d2, axis=1).astype(np.int64)

    # ------------------------------------------------------------------ portraits
    def portraits(
        self,
        user_items: sp.spmatrix,
        item_entities: sp.spmatrix | None = None,
        entity_names: Sequence[str] | None = None,
        *,
        labels: np.ndarray | None = None,
        **kwargs: Any,
    ) -> list[GroupPortrait]:
        """Describe each group (:func:`recommender.group_portraits.describe_groups`).

        ``labels`` default to :attr:`labels_` (the users ``fit`` saw, in that order); other
        keyword arguments (``item_ids``, ``user_attributes``, ``top_n``, ``min_share``) are
        passed through.
        """
        self._check_fitted()
        labels = self.labels_ if labels is None else labels
        return describe_groups(
            labels, self.n_groups_, user_items, item_entities, entity_names, **kwargs
        )

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """JSON-able config and scalar state (arrays go to safetensors in :meth:`save`)."""
        self._check_fitted()
        return groups_meta(self)

    def save(self, directory: str | Path, portraits: Sequence[GroupPortrait] | None = None) -> None:
        """Write ``groups.json`` and ``groups.safetensors`` into ``directory``.

        ``portraits`` (from :meth:`portraits`) are stored in ``groups.json`` so a service can
        answer the ``groups`` API without the interactions; :meth:`load` puts them in
        ``portraits_``.
        """
        save_groups(self, directory, portraits)

    @classmethod
    def load(cls, directory: str | Path) -> UserGroups:
        """Read what :meth:`save` wrote."""
        return load_groups(cls, directory)
