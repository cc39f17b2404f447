"""The quality benchmark's report: a Markdown table with the verdict line, and a bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality_variants import BASELINE_NAMES, DEFAULT_VARIANT

__all__ = ["markdown", "plot"]


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table plus the verdict line."""
    k = report["k"]
    lines = [
        f"| model | HR@{k} | NDCG@{k} | coverage@{k} | cold-start HR@{k} | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["results"].items():
        if not r.get("available", True):
            lines.append(f"| {name} | not built yet | | | | |")
            continue
        lines.append(
            f"| {name} | {_fmt(r[f'hr@{k}'])} | {_fmt(r[f'ndcg@{k}'])} | "
            f"{_fmt(r[f'coverage@{k}'])} | {_fmt(r.get(f'cold_hr@{k}'))} | {r['seconds']:.0f} |"
        )
    res = report["results"]
    base = {n: res[n][f"ndcg@{k}"] for n in BASELINE_NAMES if n in res and f"ndcg@{k}" in res[n]}
    if base and DEFAULT_VARIANT in res and f"ndcg@{k}" in res[DEFAULT_VARIANT]:
        best = max(base, key=base.get)
        ours = res[DEFAULT_VARIANT][f"ndcg@{k}"]
        lines.append("")
        lines.append(
            f"{DEFAULT_VARIANT}: NDCG@{k} {ours:.4f} vs best baseline {best} "
            f"{base[best]:.4f} ({(ours / base[best] - 1) * 100:+.1f}%)."
        )
    sub = {name: n for name, n in report.get("subsets", {}).items() if n}
    if sub:
        heads = [f"{name.replace('_', ' ')} NDCG@{k} ({n} cases)" for name, n in sub.items()]
        lines += ["", "| model | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(sub)]
        for name, r in report["results"].items():
            if r.get("available", True):
                cells = [_fmt(r.get(f"{s}_ndcg@{k}")) for s in sub]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    c = report["cold"]
    if "n_cases" in c:
        lines.append(
            f"Cold start: {c['n_cold_items']} items ({c['frac']:.0%}, seed {c['seed']}) removed "
            f"from training; {c['n_cases']} test cases target one of them."
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Bar chart of HR@k, NDCG@k and cold-start HR@k per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["k"]
    res = {n: r for n, r in report["results"].items() if r.get("available", True)}
    names = list(res)
    metrics = [f"hr@{k}", f"ndcg@{k}", f"cold_hr@{k}"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(names)), 4.5))
    for j, m in enumerate(metrics):
        vals = [res[n].get(m) or 0.0 for n in names]
        ax.bar(x + (j - 1) * 0.27, vals, width=0.27, label=m.replace("_", "-start "))
    ax.set_xticks(x, names, fontsize=7, rotation=25, ha="right")
    ax.set_ylabel("score")
    ax.set_title(
        f"leave-last-out, {report['n_users']} users, {report['n_items']} items "
        f"(full ranking, seen excluded)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
