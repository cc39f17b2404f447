"""Exact vs ANN (faiss HNSW) vector search as the catalogue grows.

For synthetic catalogues of 10k, 100k and 1M unit vectors (384-d, the MiniLM width) of
two kinds, uniform random (``random``) and embedding-like with intrinsic dimension 32
(``lowrank-32``, see :func:`low_rank_unit`), and for the real MiniLM vectors of the
MovieLens-small demo catalogue, this measures:

* build time of each index;
* single-query latency p50 / p99 (``k=10``, 50 excluded items per query, one query
  per call, as the service issues them);
* recall@100 of ANN against exact search (no exclusions), and recall@10 of the
  excluded single-query answers;
* an ``efSearch`` sweep on each HNSW graph (recall vs p99).

Uniform random vectors are the worst case for any ANN method: the nearest neighbour
is barely closer than a random item, so no graph or partition can find it without
looking at most of the catalogue (HNSW recall@100 falls to 0.07 at 1M items with
``efSearch=256``). Real sentence embeddings are nothing like that; the MovieLens row
and ``lowrank-32``, whose neighbour similarities match MiniLM's, are the numbers to
plan with.

Run with ``nice -n 10 python -m benchmarks.index_scaling`` (``--sizes 10000 100000``
for a quick run; ``--catalogues lowrank-32 --append`` re-measures one kind and merges
it into the JSON). The 1M random HNSW graph takes about 13 minutes to build on two
cores, the 1M low-rank one about 6. Prints Markdown tables; writes
``benchmarks/results/index_scaling.json`` and ``benchmarks/results/index_scaling.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from recommender.index import ANNIndex, ExactIndex, recall_at_k

__all__ = ["main", "run_size"]

log = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parent / "results"
MINILM = RESULTS / "item_vectors_minilm.safetensors"
DIM = 384
N_EXCLUDE = 50
K = 10
K_RECALL = 100
EF_SWEEP = (64, 128, 256, 512, 1024, 2048)


def random_unit(n: int, d: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """``(n, d)`` float32 rows uniform on the unit sphere, generated in chunks."""
    out = np.empty((n, d), np.float32)
    for s in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - s), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + len(block)] = block
    return out


def low_rank_unit(
    n: int, d: int, rng: np.random.Generator, rank: int = 32, noise: float = 0.3
) -> np.ndarray:
    """Unit rows with intrinsic dimension ``rank`` plus isotropic noise.

    A stand-in for real sentence embeddings: with ``rank=32, noise=0.3`` the mean
    top-1 / top-100 cosine of a query (0.68 / 0.50) is close to MiniLM's on MovieLens
    titles (0.73 / 0.56), where uniform random vectors give about 0.25 / 0.18. The
    projection is fixed (seed 12345) so that queries share the items' subspace.
    """
    basis = np.random.default_rng(12345).standard_normal((rank, d), dtype=np.float32)
    basis /= np.sqrt(rank)
    out = np.empty((n, d), np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        block = rng.standard_normal((m, rank), dtype=np.float32) @ basis
        block += noise / np.sqrt(d) * rng.standard_normal((m, d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[s : s + m] = block
    return out


GENERATORS = {"random": random_unit, "lowrank-32": low_rank_unit}


def _latency(index, queries, exclude) -> tuple[float, float, np.ndarray]:  # noqa: ANN001
    """p50 / p99 in ms of one-query calls (after 5 warm-up calls), and the answers."""
    for q, ex in zip(queries[:5], exclude[:5], strict=True):
        index.search(q[None, :], K, exclude=[ex])
    times, found = [], []
    for q, ex in zip(queries, exclude, strict=True):
        t0 = time.perf_counter()
        idx, _ = index.search(q[None, :], K, exclude=[ex])
        times.append(time.perf_counter() - t0)
        found.append(idx[0])
    ms = np.array(times) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), np.array(found)


def run_size(
    name: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    rng: np.random.Generator,
    ann_params: dict,
    n_latency: int,
) -> dict:
    """Measure exact and ANN on one catalogue; returns a JSON-able record."""
    n = len(vectors)
    exclude = [rng.choice(n, N_EXCLUDE, replace=False) for _ in range(len(queries))]
    rec: dict = {"catalogue": name, "n_items": n, "dim": vectors.shape[1]}

    t0 = time.perf_counter()
    exact = ExactIndex().build(vectors)
    rec["exact_build_s"] = time.perf_counter() - t0
    lat_q, lat_ex = queries[:n_latency], exclude[:n_latency]
    p50, p99, exact_found = _latency(exact, lat_q, lat_ex)
    rec.update(exact_p50_ms=p50, exact_p99_ms=p99)
    truth, _ = exact.search(queries, K_RECALL)
    log.info("%s exact: p50 %.2f ms, p99 %.2f ms", name, p50, p99)

    t0 = time.perf_counter()
    ann = ANNIndex(**ann_params).build(vectors)
    rec["ann_build_s"] = time.perf_counter() - t0
    rec["ann_params"] = ann.get_config()
    p50, p99, ann_found = _latency(ann, lat_q, lat_ex)
    found, _ = ann.search(queries, K_RECALL)
    rec.update(
        ann_p50_ms=p50,
        ann_p99_ms=p99,
        ann_recall_at_100=recall_at_k(found, truth),
        ann_recall_at_10_excl=recall_at_k(ann_found, exact_found),
    )
    log.info(
        "%s ann: build %.1fs p99 %.2f ms recall@100 %.3f",
        name,
        rec["ann_build_s"],
        p99,
        rec["ann_recall_at_100"],
    )

    sweep = []
    for ef in EF_SWEEP:
        ann.ef_search = ef
        s50, s99, _ = _latency(ann, lat_q, lat_ex)
        found, _ = ann.search(queries, K_RECALL)
        sweep.append(
            {
                "ef_search": ef,
                "p50_ms": s50,
                "p99_ms": s99,
                "recall_at_100": recall_at_k(found, truth),
            }
        )
        log.info("%s ef=%d: p99 %.2f ms recall@100 %.3f", name, ef, s99, sweep[-1]["recall_at_100"])
    ann.ef_search = ann_params.get("ef_search", ann.ef_search)
    rec["ef_sweep"] = sweep
    del ann, exact
    return rec


def _minilm_catalogue(rng: np.random.Generator, n_queries: int):  # noqa: ANN202
    """MovieLens MiniLM item vectors; queries are means of 5 random items (user-like)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(MINILM))
    vectors = np.ascontiguousarray(next(iter(tensors.values())), dtype=np.float32)
    picks = rng.integers(0, len(vectors), size=(n_queries, 5))
    queries = vectors[picks].mean(axis=1)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vectors, queries


def markdown(records: list[dict]) -> str:
    """The summary table and the efSearch sweep as Markdown."""
    lines = [
        "| catalogue | items | exact build s | exact p50 ms | exact p99 ms | ANN build s "
        "| ANN p50 ms | ANN p99 ms | ANN recall@100 | ANN recall@10 (50 excl.) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(
            f"| {r['catalogue']} | {r['n_items']:,} | {r['exact_build_s']:.2f} "
            f"| {r['exact_p50_ms']:.2f} | {r['exact_p99_ms']:.2f} | {r['ann_build_s']:.1f} "
            f"| {r['ann_p50_ms']:.2f} | {r['ann_p99_ms']:.2f} | {r['ann_recall_at_100']:.3f} "
            f"| {r['ann_recall_at_10_excl']:.3f} |"
        )
    lines += ["", "efSearch sweep (HNSW, single queries k=10 with 50 exclusions; recall@100):", ""]
    lines.append("| catalogue | items | " + " | ".join(f"ef={e}" for e in EF_SWEEP) + " |")
    lines.append("|---|---:|" + "---|" * len(EF_SWEEP))
    for r in records:
        cells = [f"{s['recall_at_100']:.3f} / {s['p99_ms']:.1f} ms" for s in r["ef_sweep"]]
        lines.append(f"| {r['catalogue']} | {r['n_items']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Recall@100 vs p99 (efSearch sweep) and p99 vs catalogue size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in records:
        xs = [s["p99_ms"] for s in r["ef_sweep"]]
        ys = [s["recall_at_100"] for s in r["ef_sweep"]]
        ax1.plot(xs, ys, marker="o", label=f"{r['catalogue']} ({r['n_items']:,})")
        for s in r["ef_sweep"]:
            ax1.annotate(str(s["ef_search"]), (s["p99_ms"], s["recall_at_100"]), fontsize=7)
    ax1.set_xscale("log")
    ax1.set_xlabel("single-query p99 latency (ms, log)")
    ax1.set_ylabel("recall@100 vs exact")
    ax1.set_title("HNSW efSearch sweep")
    ax1.legend(fontsize=8)
    for name in GENERATORS:
        synth = [r for r in records if r["catalogue"] == name]
        if not synth:
            continue
        ns = [r["n_items"] for r in synth]
        ax2.plot(ns, [r["exact_p99_ms"] for r in synth], marker="o", label=f"exact p99 ({name})")
        ax2.plot(ns, [r["ann_p99_ms"] for r in synth], marker="s", label=f"ANN p99 ({name})")
    ax2.axhline(100, color="grey", ls="--", lw=1, label="100 ms")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("catalogue size (384-d synthetic)")
    ax2.set_ylabel("single-query p99 (ms, log)")
    ax2.set_title("k=10, 50 exclusions")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef-search", type=int, default=None, help="default: library default")
    parser.add_argument("--catalogues", nargs="+", default=list(GENERATORS), choices=GENERATORS)
    parser.add_argument("--no-minilm", action="store_true", help="skip the MovieLens row")
    parser.add_argument(
        "--append", action="store_true", help="merge into --out, replacing re-measured rows"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "index_scaling.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import faiss

    faiss.omp_set_num_threads(2)
    ann_params = {} if args.ef_search is None else {"ef_search": args.ef_search}
    rng = np.random.default_rng(0)
    records: list[dict] = []
    if args.append and args.out.exists():
        records = json.loads(args.out.read_text())

    def keep(rec: dict) -> None:
        records[:] = [
            r
            for r in records
            if (r["catalogue"], r["n_items"]) != (rec["catalogue"], rec["n_items"])
        ]
        records.append(rec)
        records.sort(
            key=lambda r: (r["catalogue"] != "movielens-minilm", r["catalogue"], r["n_items"])
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(records, indent=2))  # keep partial results

    if MINILM.exists() and not args.no_minilm:
        vectors, queries = _minilm_catalogue(rng, args.queries)
        keep(run_size("movielens-minilm", vectors, queries, rng, ann_params, args.queries))
    for name in args.catalogues:
        for n in args.sizes:
            vectors = GENERATORS[name](n, DIM, rng)
            queries = GENERATORS[name](args.queries, DIM, rng)
            keep(run_size(name, vectors, queries, rng, ann_params, args.queries))
            del vectors
    table = markdown(records)
    print(table)  # noqa: T201 - a benchmark script reports on stdout
    plot(records, args.out.with_suffix(".png"))
    return records


if __name__ == "__main__":
    main()
