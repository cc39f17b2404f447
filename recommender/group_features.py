"""The feature space user groups are found in: unit user vectors plus encoded attributes.

Features are the L2-normalised user vectors, optionally followed by one-hot (multi-hot for
``|``-separated values) user attributes. Each attribute column's block is scaled to norm
``attribute_weight / sqrt(n_columns)``, so the whole attribute part has norm
``attribute_weight`` -- comparable to the unit-norm vector part (1.0 weighs them equally).
Numeric attribute columns with more than 10 distinct values are cut into 5 quantile bins.

Examples
--------
>>> import pandas as pd
>>> attrs = pd.DataFrame({"country": ["de", "fr|de", None]})
>>> categories, bins = fit_attribute_vocab(attrs)
>>> categories
{'country': ['de', 'fr']}
>>> attribute_block(attrs, categories, bins, weight=1.0).round(3).tolist()
[[1.0, 0.0], [0.707, 0.707], [0.0, 0.0]]
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recommender.errors import InputError

__all__ = ["NUMERIC_BINS", "attribute_block", "attribute_values", "fit_attribute_vocab", "unit"]

#: Quantile bins of a numeric attribute column with more than 10 distinct values.
NUMERIC_BINS = 5


def fit_attribute_vocab(
    attrs: pd.DataFrame,
) -> tuple[dict[str, list[str]], dict[str, list[float]]]:
    """Each column's one-hot vocabulary, and the bin edges of the binned numeric columns."""
    categories: dict[str, list[str]] = {}
    numeric_bins: dict[str, list[float]] = {}
    for col in attrs.columns:
        s = attrs[col]
        if pd.api.types.is_numeric_dtype(s) and s.nunique() > 10:
            qs = np.nanquantile(s.to_numpy(dtype=float), np.linspace(0, 1, NUMERIC_BINS + 1))
            numeric_bins[col] = [float(q) for q in np.unique(qs)[1:-1]]
        values = attribute_values(s, numeric_bins.get(col))
        categories[col] = sorted({v for vs in values for v in vs})
    return categories, numeric_bins


def attribute_values(s: pd.Series, bins: list[float] | None = None) -> list[list[str]]:
    """Each row's values: its bin (``bins`` given), else its ``|``-separated parts."""
    if bins is not None:
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
        b = np.searchsorted(bins, x, side="right")
        return [[] if np.isnan(v) else [f"bin{int(i)}"] for v, i in zip(x, b, strict=True)]
    out = []
    for v in s.tolist():
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out.append([])
        else:
            out.append([p.strip() for p in str(v).split("|") if p.strip()])
    return out


def attribute_block(
    attrs: pd.DataFrame,
    categories: dict[str, list[str]],
    numeric_bins: dict[str, list[float]],
    weight: float,
) -> np.ndarray:
    """The attribute part of the features: one scaled multi-hot block per column."""
    cols = list(categories)
    missing = [c for c in cols if c not in attrs.columns]
    if missing:
        raise InputError(
            f"user attributes lack columns {missing}; expected {cols}", field="user_attributes"
        )
    scale = weight / math.sqrt(max(len(cols), 1))
    blocks = []
    for col in cols:
        vocab = {v: i for i, v in enumerate(categories[col])}
        block = np.zeros((len(attrs), len(vocab)))
        for r, vs in enumerate(attribute_values(attrs[col], numeric_bins.get(col))):
            hits = [vocab[v] for v in vs if v in vocab]
            if hits:
                block[r, hits] = scale / math.sqrt(len(hits))
        blocks.append(block)
    return np.hstack(blocks) if blocks else np.zeros((len(attrs), 0))


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float64."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)
