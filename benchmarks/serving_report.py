"""The serving benchmark's report: Markdown tables, ratios against the floor, a plot."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _md(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: Any, col: str) -> str:
        if v is None:
            return ""
        if not isinstance(v, float):
            return str(v)
        return f"{v:.2f}" if col.endswith(("ratio", "worker", "pass")) else f"{v:,.1f}"

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, ""), c) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _plot(rows: list[dict], scaling: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name in sorted({(r.get("system", "recbento"), r["endpoint"]) for r in rows}):
        rs = [r for r in rows if (r.get("system", "recbento"), r["endpoint"]) == name]
        label = " ".join(name)
        axes[0].plot([r["concurrency"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=label)
        axes[1].plot([r["concurrency"] for r in rs], [r["rps"] for r in rs], "o-", label=label)
    axes[0].set(
        xscale="log", yscale="log", xlabel="concurrency", ylabel="p99 latency (ms)", title="latency"
    )
    axes[1].set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="throughput")
    for kind in sorted({r["index"] for r in scaling}):
        rs = [r for r in scaling if r["index"] == kind]
        axes[2].plot([r["items"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=kind)
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="catalogue size (items)",
        ylabel="in-process recommend p99 (ms)",
        title="catalogue scaling",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run without scaling rows leaves one empty
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _buckets(h: dict[str, float]) -> str:
    """``<=1: 3, <=2: 9, ... (mean 5.2)`` for a histogram read by the benchmark."""
    if not h.get("count"):
        return "(not read)"
    cells = [f"<={k}: {v:,.0f}" for k, v in h.items() if k not in ("sum", "count")]
    return ", ".join(cells) + f" (mean {h['sum'] / h['count']:.1f})"


def ratios(floor: list[dict], rows: list[dict]) -> list[dict[str, Any]]:
    """recbento's ``recommend`` against the floor at each concurrency both ran."""
    out = []
    for f in floor:
        r = next(
            (
                x
                for x in rows
                if x["endpoint"] == "recommend" and x["concurrency"] == f["concurrency"]
            ),
            None,
        )
        if r is None:
            continue
        out.append(
            {
                "concurrency": f["concurrency"],
                "floor_rps": f["rps"],
                "recbento_rps": r["rps"],
                "rps_ratio": r["rps"] / f["rps"],
                "floor_p99_ms": f["p99_ms"],
                "recbento_p99_ms": r["p99_ms"],
                "p99_ratio": r["p99_ms"] / f["p99_ms"],
                "floor_cpu_ms": f.get("server_cpu_ms", float("nan")),
                "recbento_cpu_ms": r.get("server_cpu_ms", float("nan")),
                "floor_busiest_worker": f.get("busiest_worker", float("nan")),
            }
        )
    return out


def write_report(report: dict[str, Any], out: Path) -> None:
    """Print and write ``serving.{md,json,png}`` for one run's ``report``."""
    rows, scaling = report["load"], report["catalogue_scaling"]
    floor = report.get("floor", [])
    inproc = report["encode_inprocess_texts_per_s"]
    best_bs, best = max(inproc.items(), key=lambda kv: kv[1])
    svc_best = max(r.get("texts_per_s", 0) for r in rows)
    query = [r for r in rows if r["endpoint"] == "recommend(query)"]
    query_best = max((r["rps"] for r in query), default=0.0)
    query_32 = next((r["rps"] for r in query if r["concurrency"] == 32), float("nan"))
    rss = report["server_rss_mb"]
    report["ratios_vs_floor"] = ratios(floor, rows)
    report["encode_ratio_service_vs_inprocess"] = svc_best / best
    report["query_ratio_vs_inprocess_encode"] = query_best / best
    report["query_ratio_at_32_vs_inprocess_encode"] = query_32 / best
    hist = report.get("encode_batch_histogram") or {}
    cols = ["system", "endpoint", "concurrency", "requests", "errors", "rps"]
    cols += ["p50_ms", "p95_ms", "p99_ms", "server_cpu_ms", "busiest_worker", "requests_per_pass"]
    md = [
        f"## Serving benchmark ({report['model']}, {os.cpu_count()} CPU cores"
        f"{', ' + report['gpu'] if report.get('gpu') else ''}, "
        f"{report.get('seconds_per_cell', 10):.0f} s per cell, load generator: "
        f"{report.get('client', 'httpx')}, feedback store: "
        f"{report.get('feedback_store', 'the model default')})",
        "",
        _md(floor + rows, cols),
        "",
        "recbento `recommend` against the floor (a BentoML service that does no work, same "
        "workers, same run):",
        "",
        _md(
            report["ratios_vs_floor"],
            ["concurrency", "floor_rps", "recbento_rps", "rps_ratio"]
            + ["floor_p99_ms", "recbento_p99_ms", "p99_ratio"]
            + ["floor_cpu_ms", "recbento_cpu_ms", "floor_busiest_worker"],
        ),
        "",
        "A floor cell at a concurrency over 1 whose busiest worker did more than 0.75 of "
        "the work (every connection landed on one worker) measured one core, not the "
        "floor, and is run again on a freshly started floor, up to four times; a row "
        "still above 0.75 flatters its ratio.",
        "",
        "`server_cpu_ms`: CPU time of all the server's processes per answered request; "
        "`busiest_worker`: the busiest API worker's share of the API workers' CPU (0.5: "
        "both workers evenly loaded; 1.0: one did all the work); `requests_per_pass`: "
        "`recommend` requests the workers scored together, on average "
        "(`recbento_recommend_batch_requests`).",
        "",
        f"free-text recommend: {query_32:,.1f} requests/s at concurrency 32 = "
        f"{query_32 / best:.2f} of in-process encoding at its best batch; best "
        f"{query_best:,.1f} requests/s = "
        f"{query_best / best:.2f} of in-process encoding at its best batch ({best:,.0f} "
        f"texts/s at batch {best_bs}); encode through the service: best {svc_best:,.0f} "
        f"texts/s, ratio {svc_best / best:.2f}",
        "",
        "encoder batches after the load (cumulative counts by upper bound): free-text "
        "queries per forward pass in the API workers (recbento_encode_batch_texts, "
        "service=recbento) "
        + _buckets(hist.get("texts_worker", {}))
        + "; in the encoder service, calls merged per batch (BentoML's adaptive_batch_size) "
        + _buckets(hist.get("calls", {}))
        + " and texts per forward pass "
        + _buckets(hist.get("texts_service", {})),
        "",
        f"in-process encode ({report.get('encode_precision', 'default')} precision, "
        "texts/s by batch size): " + ", ".join(f"{k}: {v:,.0f}" for k, v in inproc.items()),
        "",
        "in-process recommend on synthetic catalogues (embedding-like vectors, k=10, reranker on):",
        "",
        _md(scaling, ["items", "index", "build_s", "p50_ms", "p99_ms", "recall@10"])
        if scaling
        else "(not measured in this run)",
        "",
        f"server memory (all processes): {rss['idle']:,.0f} MiB idle, "
        f"{rss['after_load']:,.0f} MiB after the load test",
    ]
    text = "\n".join(md)
    print(text)  # noqa: T201 - a benchmark script prints its table
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.md").write_text(text + "\n")
    (out / "serving.json").write_text(json.dumps(report, indent=2))
    _plot(floor + rows, scaling, out / "serving.png")
