"""What the reranker benchmark shows: a Markdown table and the accuracy/diversity plot."""

from __future__ import annotations

from pathlib import Path

from benchmarks.rerank_metrics import COLS

__all__ = ["pareto_plot", "print_table"]


def print_table(rows: dict[str, dict]) -> None:
    print(
        "| config | " + " | ".join(COLS) + " | NDCG vs off [95% CI] | ILD vs off "
        "| cov. vs off | ms/user |"
    )
    print("|---|" + "---:|" * (len(COLS) + 4))
    for name, r in rows.items():
        lo, hi = r["ndcg_vs_off_ci95"]
        print(
            f"| {name} | "
            + " | ".join(f"{r[c]:.4f}" for c in COLS)
            + f" | {r['ndcg@10_vs_off']:+.1%} [{lo:+.0%}, {hi:+.0%}] | {r['ild_vs_off']:+.1%} "
            f"| {r['coverage@10_vs_off']:+.1%} | {r['ms_per_user']:.2f} |"
        )


def pareto_plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, metric, label in (
        (axes[0], "ild", "intra-list diversity (MiniLM)"),
        (axes[1], "coverage@10", "catalogue coverage@10"),
    ):
        div = sorted(
            (r for n, r in rows.items() if n.startswith("diversity=")),
            key=lambda r: r["config"]["diversity"],
        )
        ax.plot(
            [r[metric] for r in div],
            [r["ndcg@10"] for r in div],
            "o-",
            color="tab:blue",
            label="default, diversity swept",
        )
        for d, r in zip([r["config"]["diversity"] for r in div], div, strict=True):
            ax.annotate(
                f"{d:g}",
                (r[metric], r["ndcg@10"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        others = {n: r for n, r in rows.items() if not n.startswith(("diversity=", "grid"))}
        for n, r in others.items():
            big = n in ("off", "default", "diversity-heavy")
            ax.scatter(
                r[metric], r["ndcg@10"], s=70 if big else 20, zorder=3, marker="*" if big else "x"
            )
            ax.annotate(
                n,
                (r[metric], r["ndcg@10"]),
                fontsize=8 if big else 6,
                textcoords="offset points",
                xytext=(4, -8),
            )
        ax.axhline(rows["off"]["ndcg@10"] * 0.97, color="grey", ls="--", lw=0.8, label="off - 3%")
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.legend(fontsize=8)
    fig.suptitle("Reranker trade-off on MovieLens-small (leave-last-out, EASE candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
