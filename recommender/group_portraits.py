"""Group portraits: what characterises each user group, as data, a table and a plot.

A portrait lists a group's size, the entities (genres, tags, knowledge-graph entities) whose
share of the group's interactions most exceeds their share of everyone's (*lift*), its most
interacted items and, when users have attributes, its attribute mix.
:func:`group_item_popularity` is the in-group collaborative signal the reranker reads.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import InputError

__all__ = [
    "GroupPortrait",
    "describe_groups",
    "group_item_popularity",
    "plot_groups",
    "portraits_table",
]

log = logging.getLogger(__name__)


@dataclass
class GroupPortrait:
    """What characterises one group.

    Attributes
    ----------
    group : int
    size : int
        Number of users.
    share : float
        ``size`` over all users.
    top_entities : list of dict
        ``{"entity", "lift", "share"}``: entities whose share of the group's interactions most
        exceeds their share of everyone's (``lift = group share / population share``).
    top_items : list of dict
        ``{"item", "share"}``: the group's most interacted items (``item`` is an item id when
        ids were given, else an item index) and their share of the group's interactions.
    attribute_mix : dict
        ``{column: {value: share of the group's users}}`` (top values), when users had attributes.
    """

    group: int
    size: int
    share: float
    top_entities: list[dict[str, Any]] = field(default_factory=list)
    top_items: list[dict[str, Any]] = field(default_factory=list)
    attribute_mix: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the ``groups`` API returns a list of these)."""
        return asdict(self)


def group_item_popularity(labels: np.ndarray, user_items: sp.spmatrix, n_groups: int) -> np.ndarray:
    """Per-group item popularity: each row is the share of the group's interactions per item.

    Parameters
    ----------
    labels : array of int, shape (n_users,)
    user_items : sparse, shape (n_users, n_items)
        Interaction counts or weights.
    n_groups : int

    Returns
    -------
    ndarray, shape (n_groups, n_items); each row sums to 1 (or is 0 for an empty group).
    """
    labels = np.asarray(labels, dtype=np.int64)
    ui = sp.csr_matrix(user_items, dtype=np.float64)
    if ui.shape[0] != labels.size:
        raise InputError(
            f"user_items has {ui.shape[0]} rows, expected {labels.size} (one per user)",
            field="user_items",
        )
    member = sp.csr_matrix(
        (np.ones(labels.size), (labels, np.arange(labels.size))), shape=(n_groups, labels.size)
    )
    pop = np.asarray((member @ ui).todense())
    sums = pop.sum(axis=1, keepdims=True)
    return np.divide(pop, sums, out=np.zeros_like(pop), where=sums > 0)


def describe_groups(
    labels: np.ndarray,
    n_groups: int,
    user_items: sp.spmatrix,
    item_entities: sp.spmatrix | None = None,
    entity_names: Sequence[str] | None = None,
    *,
    item_ids: Sequence[Any] | None = None,
    user_attributes: pd.DataFrame | None = None,
    top_n: int = 5,
    min_share: float = 0.01,
) -> list[GroupPortrait]:
    """Describe each group: size, entities by lift, top items, attribute mix.

    Parameters
    ----------
    labels : array of int, shape (n_users,)
        Group of each user.
    n_groups : int
    user_items : sparse, shape (n_users, n_items)
        Interactions of the users in ``labels`` order.
    item_entities : sparse, shape (n_items, n_entities), optional
        From :func:`recommender.item_signals.item_entity_matrix`.
    entity_names : sequence of str, optional
        Column names of ``item_entities``.
    item_ids : sequence, optional
        Item id (or title) per item index, to report instead of indices.
    user_attributes : DataFrame, optional
        Attribute columns per user for the attribute mix.
    top_n : int
        Entities, items and attribute values listed per group.
    min_share : float
        Entities must make up at least this share of a group's entity mentions to be
        listed, so tiny niches with huge lift do not crowd out what defines the group.
    """
    labels = np.asarray(labels, dtype=np.int64)
    ui = sp.csr_matrix(user_items, dtype=np.float64)
    if ui.shape[0] != labels.size:
        raise InputError(
            f"user_items has {ui.shape[0]} rows, expected {labels.size}", field="user_items"
        )
    pop = group_item_popularity(labels, (ui > 0).astype(np.float64), n_groups)
    counts = np.bincount(labels, minlength=n_groups)
    ent_share = overall = None
    if item_entities is not None:
        ent = sp.csr_matrix(item_entities, dtype=np.float64)
        names = (
            list(entity_names)
            if entity_names is not None
            else [str(i) for i in range(ent.shape[1])]
        )
        mentions = pop @ ent  # (n_groups, n_entities): group's mass on each entity
        item_total = np.asarray((ui > 0).sum(axis=0)).ravel().astype(np.float64)
        overall = np.asarray(ent.T @ item_total).ravel()
        overall = overall / overall.sum() if overall.sum() > 0 else overall
        ent_share = mentions / np.maximum(mentions.sum(axis=1, keepdims=True), 1e-12)
    out = []
    for g in range(n_groups):
        p = GroupPortrait(group=g, size=int(counts[g]), share=float(counts[g] / labels.size))
        if ent_share is not None and overall is not None:
            share = ent_share[g]
            lift = np.divide(share, overall, out=np.zeros_like(share), where=overall > 0)
            ok = np.flatnonzero(share >= min_share)
            top = ok[np.lexsort((ok, -lift[ok]))][:top_n]
            p.top_entities = [
                {
                    "entity": names[e],
                    "lift": round(float(lift[e]), 4),
                    "share": round(float(share[e]), 4),
                }
                for e in top
            ]
        row = pop[g]
        top_items = np.lexsort((np.arange(row.size), -row))[:top_n]
        p.top_items = [
            {
                "item": _jsonable(item_ids[i]) if item_ids is not None else int(i),
                "share": round(float(row[i]), 4),
            }
            for i in top_items
            if row[i] > 0
        ]
        if user_attributes is not None:
            attrs = user_attributes.drop(columns=["user_id"], errors="ignore")
            attrs = attrs.reset_index(drop=True)
            members = np.flatnonzero(labels == g)
            for col in attrs.columns:
                vals = attrs[col].iloc[members].astype("string").fillna("")
                vals = vals.str.split("|").explode().str.strip()
                mix = vals[vals != ""].value_counts() / max(members.size, 1)
                p.attribute_mix[str(col)] = {
                    str(k): round(float(v), 4) for k, v in mix.head(top_n).items()
                }
        out.append(p)
    return out


def portraits_table(portraits: Sequence[GroupPortrait], *, n_entities: int = 3) -> str:
    """A Markdown table of portraits, for the CLI and reports."""
    lines = [
        "| group | users | share | top entities (lift) | top items |",
        "|---:|---:|---:|---|---|",
    ]
    for p in portraits:
        ents = ", ".join(f"{e['entity']} ({e['lift']:.2f})" for e in p.top_entities[:n_entities])
        items = ", ".join(str(i["item"]) for i in p.top_items[:3])
        lines.append(f"| {p.group} | {p.size} | {p.share:.1%} | {ents} | {items} |")
    return "\n".join(lines)


def plot_groups(
    user_vectors: np.ndarray,
    labels: np.ndarray,
    portraits: Sequence[GroupPortrait],
    path: str | Path,
    *,
    random_state: int = 0,
    title: str = "User groups",
) -> Path:
    """PNG: users in 2-D (PCA) coloured by group, and each group's top entities by lift.

    Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    x = np.asarray(user_vectors, dtype=np.float64)
    labels = np.asarray(labels)
    xy = PCA(n_components=2, random_state=random_state).fit_transform(x) if x.shape[1] > 2 else x
    n = len(portraits)
    cols = min(n, 4)
    rows = math.ceil(n / cols) if n else 1
    fig = plt.figure(figsize=(6 + 3.2 * cols, max(5, 2.6 * rows)))
    grid = fig.add_gridspec(rows, cols + 2)
    ax = fig.add_subplot(grid[:, :2])
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    for p in portraits:
        m = labels == p.group
        ax.scatter(
            xy[m, 0],
            xy[m, 1],
            s=8,
            alpha=0.6,
            color=cmap(p.group % cmap.N),
            label=f"group {p.group} ({p.size})",
        )
    ax.set_title(f"{title}: PCA of user vectors")
    ax.legend(fontsize=7, markerscale=2)
    for i, p in enumerate(portraits):
        a = fig.add_subplot(grid[i // cols, 2 + i % cols])
        ents = p.top_entities[::-1]
        a.barh(
            [e["entity"].split(":", 1)[-1] for e in ents],
            [e["lift"] for e in ents],
            color=cmap(p.group % cmap.N),
        )
        a.axvline(1.0, color="grey", lw=0.8, ls="--")
        a.set_title(f"group {p.group}: lift", fontsize=9)
        a.tick_params(labelsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    log.info("wrote group plot to %s", out)
    return out


def _jsonable(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
