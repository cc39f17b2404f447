"""Online metrics of served lists: how users reacted to what they were shown.

Computed from the feedback store alone: the impression log
(:mod:`recommender.impressions`, one row per served list) and the typed events. Per
slice (model version, experiment arm, user group, day; any subset):

* ``impressions``: lists served; ``items_shown``: items in them;
* ``ctr``: the share of lists with at least one ``click`` carrying their
  ``request_id``, with its 95 % Wilson interval (``ctr_low``, ``ctr_high``);
* ``conversion``: the share of lists with a ``purchase`` or ``add_to_cart`` carrying
  their ``request_id``;
* ``hit_rate``: the share of lists where the user later (at or after serving) had a
  positive event (any type but ``impression`` and ``dislike``) on a shown item,
  attributed or not;
* ``coverage``: distinct items shown over the catalogue size (``n_items``; else
  ``None``) and ``distinct_items``;
* ``novelty``: mean self-information ``-log2 p(item)`` of shown items, ``p`` the item's
  share of positive events in the store (add-one smoothed).

:func:`compare_arms` adds a two-proportion z-test of each arm's CTR against the first;
:func:`experiment_results` measures one experiment's arms and names the better one;
:func:`plot_metrics` draws a table as a PNG.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recommender.errors import InputError
from recommender.impressions import impressions_frame

__all__ = [
    "SLICES",
    "compare_arms",
    "experiment_results",
    "online_metrics",
    "plot_metrics",
    "wilson",
    "z_test",
]

log = logging.getLogger(__name__)

#: What metrics may be sliced by.
SLICES: tuple[str, ...] = ("model", "arm", "user_group", "day")

_POSITIVE_EXCLUDED = ("impression", "dislike")
_CONVERSIONS = ("purchase", "add_to_cart")


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (``(nan, nan)`` when ``n`` is 0).

    >>> [round(x, 3) for x in wilson(5, 100)]
    [0.022, 0.112]
    """
    if n <= 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def z_test(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Two-proportion z-test (pooled): ``(z, two-sided p)`` of ``k2/n2 - k1/n1``.

    >>> z, p = z_test(50, 1000, 80, 1000)
    >>> round(z, 2), round(p, 4)
    (2.72, 0.0065)
    """
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan
    from scipy.stats import norm

    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (k2 / n2 - k1 / n1) / se
    return float(z), float(2 * norm.sf(abs(z)))


def online_metrics(
    store: Any,
    *,
    by: Sequence[str] = ("model", "arm"),
    since: float | None = None,
    until: float | None = None,
    filters: Mapping[str, Any] | None = None,
    n_items: int | None = None,
) -> pd.DataFrame:
    """Metrics of the lists served in ``[since, until)``, one row per slice of ``by``.

    Parameters
    ----------
    store : recommender.feedback.EventStore
        The feedback store holding the impressions and the events.
    by : sequence of str
        Slice columns, some of :data:`SLICES` (``[]``: one row for everything).
    since, until : float, optional
        Unix seconds bounding when the lists were served.
    filters : mapping, optional
        ``{"model": ..., "arm": ..., "user_group": ..., "day": "YYYY-MM-DD"}``: keep only
        the impressions matching every given value.
    n_items : int, optional
        Catalogue size, for ``coverage``.
    """
    by = list(by)
    bad = [b for b in by if b not in SLICES] + [f for f in filters or {} if f not in SLICES]
    if bad:
        raise InputError(
            f"online metrics: cannot slice or filter by {bad[0]!r}; expected some of "
            f"{list(SLICES)}",
            field="by",
            value=bad[0],
        )
    imp = impressions_frame(store, since=since, until=until)
    imp["day"] = pd.to_datetime(imp["served_at"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    for col, value in (filters or {}).items():
        imp = imp[imp[col] == value]
    events = store.all_events() if len(imp) else store.all_events(since=0, until=0)
    flags = _list_flags(imp, events)
    novelty = _novelty(events)
    columns = [
        *by,
        "impressions",
        "items_shown",
        "clicks",
        "ctr",
        "ctr_low",
        "ctr_high",
        "conversion",
        "hit_rate",
        "distinct_items",
        "coverage",
        "novelty",
    ]
    if not len(imp):
        return pd.DataFrame(columns=columns)
    imp = imp.join(flags, on="request_id")
    groups = imp.groupby(by, dropna=False, sort=True) if by else [((), imp)]
    rows = []
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        n = len(part)
        clicked = int(part["clicked"].sum())
        shown = [i for items in part["items"] for i in items]
        distinct = len(set(shown))
        low, high = wilson(clicked, n)
        rows.append(
            [
                *(None if _isna(k) else k for k in key),
                n,
                len(shown),
                int(part["clicks"].sum()),
                clicked / n,
                low,
                high,
                float(part["converted"].mean()),
                float(part["hit"].mean()),
                distinct,
                distinct / n_items if n_items else None,
                float(np.mean([novelty(i) for i in shown])) if shown else None,
            ]
        )
    return pd.DataFrame(rows, columns=columns)


def compare_arms(metrics: pd.DataFrame, *, control: str | None = None) -> pd.DataFrame:
    """Per-arm rows of :func:`online_metrics` (``by=["arm"]``) with a CTR test vs control.

    Adds ``ctr_lift`` (difference to the control's CTR), ``z`` and ``p_value`` (two-
    proportion z-test); the control is ``control`` or the first arm.
    """
    if "arm" not in metrics.columns:
        raise InputError("compare_arms: metrics must be sliced by 'arm'", field="by", value="arm")
    out = metrics.reset_index(drop=True).copy()
    if not len(out):
        return out.assign(ctr_lift=[], z=[], p_value=[])
    arms = out["arm"].tolist()
    ref = arms.index(control) if control in arms else 0
    k1 = round(out.at[ref, "ctr"] * out.at[ref, "impressions"])
    n1 = int(out.at[ref, "impressions"])
    lift, zs, ps = [], [], []
    for i in range(len(out)):
        n2 = int(out.at[i, "impressions"])
        z, p = z_test(k1, n1, round(out.at[i, "ctr"] * n2), n2) if i != ref else (0.0, 1.0)
        lift.append(out.at[i, "ctr"] - out.at[ref, "ctr"])
        zs.append(z)
        ps.append(p)
    return out.assign(ctr_lift=lift, z=zs, p_value=ps)


def experiment_results(
    store: Any, experiment: Any, *, alpha: float = 0.05, n_items: int | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-arm metrics of ``experiment`` (a :class:`recommender.experiments.Experiment`).

    Only lists served while it ran, by its arms, count. Returns the table of
    :func:`compare_arms` (control: the first arm) and a verdict: ``{"winner": arm or
    None, "ctr", "ctr_low", "ctr_high", "p_value", "message"}`` where the winner is the
    arm with the highest CTR when its difference to the control is significant at
    ``alpha`` (else the control stays, ``winner`` None).
    """
    table = online_metrics(
        store,
        by=["arm"],
        since=experiment.started_at,
        until=experiment.stopped_at,
        n_items=n_items,
    )
    names = [a.name for a in experiment.arms]
    table = table[table["arm"].isin(names)]
    table = table.set_index("arm").reindex([n for n in names if n in set(table["arm"])])
    table = compare_arms(table.reset_index(), control=names[0])
    if len(table) < 2:
        return table, {"winner": None, "message": "not enough traffic on every arm yet"}
    best = table.loc[table["ctr"].idxmax()]
    significant = best["arm"] != names[0] and best["p_value"] < alpha
    better = table[table["arm"] != names[0]]
    p_best = float(better.loc[better["ctr"].idxmax(), "p_value"])
    if significant:
        message = (
            f"{best['arm']} wins: CTR {best['ctr']:.2%} "
            f"[{best['ctr_low']:.2%}, {best['ctr_high']:.2%}] vs control "
            f"{table.iloc[0]['ctr']:.2%}, p={best['p_value']:.3g}"
        )
    else:
        message = f"no arm beats control {names[0]} at p<{alpha:g} (best p={p_best:.3g}); keep it"
    verdict = {
        "winner": best["arm"] if significant else None,
        "ctr": float(best["ctr"]),
        "ctr_low": float(best["ctr_low"]),
        "ctr_high": float(best["ctr_high"]),
        "p_value": p_best,
        "message": message,
    }
    return table, verdict


def plot_metrics(table: pd.DataFrame, path: Any, *, title: str = "Online metrics") -> Any:
    """CTR (with its Wilson interval), conversion and hit rate per row of ``table``, as PNG.

    Rows are labelled by their slice columns. Written to a temporary file and moved
    into place. Returns the path.
    """
    import os
    import tempfile
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [c for c in table.columns if c in SLICES]
    labels = [
        " / ".join("-" if _isna(v) else str(v) for v in row) or "all"
        for row in table[keys].itertuples(index=False)
    ]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(table) + 3), 4.5))
    width = 0.27
    ctr = table["ctr"].to_numpy(dtype=float)
    err = np.vstack(
        [
            ctr - table["ctr_low"].to_numpy(dtype=float),
            table["ctr_high"].to_numpy(dtype=float) - ctr,
        ]
    )
    ax.bar(x - width, ctr, width, yerr=err, capsize=4, label="CTR (95% Wilson)")
    ax.bar(x, table["conversion"].to_numpy(dtype=float), width, label="conversion")
    ax.bar(x + width, table["hit_rate"].to_numpy(dtype=float), width, label="hit rate")
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel("share of served lists")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _list_flags(imp: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Per request_id: clicks, clicked (any), converted, hit."""
    ids = pd.Index(imp["request_id"])
    types = events["type"]
    attributed = events[events["request_id"].isin(ids)]
    clicks = attributed[attributed["type"] == "click"].groupby("request_id").size()
    converted = set(attributed.loc[attributed["type"].isin(_CONVERSIONS), "request_id"])
    positive = events[~types.isin(_POSITIVE_EXCLUDED)]
    shown = imp[["request_id", "user_id", "served_at", "items"]].explode("items")
    shown = shown.rename(columns={"items": "item_id"}).dropna(subset=["user_id", "item_id"])
    hits: set[str] = set()
    if len(shown) and len(positive):
        key = ["user_id", "item_id"]
        left = shown.assign(**{k: shown[k].map(_key) for k in key})
        right = positive[[*key, "timestamp"]].assign(**{k: positive[k].map(_key) for k in key})
        joined = left.merge(right, on=key)
        hits = set(joined.loc[joined["timestamp"] >= np.floor(joined["served_at"]), "request_id"])
    clicks = clicks.reindex(ids, fill_value=0)
    return pd.DataFrame(
        {
            "clicks": clicks.to_numpy(),
            "clicked": clicks.to_numpy() > 0,
            "converted": ids.isin(list(converted)),
            "hit": ids.isin(list(hits)),
        },
        index=ids,
    )


def _novelty(events: pd.DataFrame) -> Any:
    positive = events[~events["type"].isin(_POSITIVE_EXCLUDED)]
    counts = positive["item_id"].map(_key).value_counts()
    total = float(counts.sum()) + len(counts) + 1

    def novelty(item: Any) -> float:
        return -math.log2((float(counts.get(_key(item), 0)) + 1) / total)

    return novelty


def _key(v: Any) -> str:
    """One comparable key for ids that may be ints or strings (``7`` and ``"7"`` differ)."""
    if isinstance(v, np.generic):
        v = v.item()
    return f"{type(v).__name__}:{v}"


def _isna(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
