"""In-process figures of the serving benchmark: encoding by batch size, catalogue scaling.

They set what the served numbers are compared with: ``benchmarks.serving`` reports
free-text requests against in-process encoding at its best batch, and how ``recommend``
latency grows with the catalogue, exact and approximate.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from recommender.config import EncoderConfig

log = logging.getLogger(__name__)

#: Free-text requests of the benchmark (a counter is appended so none repeats).
QUERIES = [
    "something like Heat but funnier",
    "an animated film for the whole family",
    "dark science fiction with robots",
    "romantic comedy set in New York",
    "a slow, beautiful drama about grief",
    "classic western with a great score",
    "pixar",
    "war movie based on a true story",
]


def inprocess_encode_best(
    config: EncoderConfig, n_texts: int | None = None, precision: str = "fast"
) -> tuple[dict[str, float], str]:
    """In-process encoding throughput (texts/s) at several batch sizes, and the dtype it ran in.

    The model's encoder (``config``) is opened as the services open it
    (:func:`~recommender.serving.load_encoder`: a stored checkpoint included), in their
    ``precision`` (``RECBENTO_ENCODE_PRECISION``), so that the served figures are
    compared with the same arithmetic. On CUDA the batches go up to 512 over 4,096 texts
    (a GPU is still gaining at 128); on a CPU up to 128 over 512.
    """
    import torch

    from recommender.serving import load_encoder

    torch.set_num_threads(os.cpu_count() or 1)
    enc = load_encoder(config, precision=precision)
    cuda = enc.device.type == "cuda"
    n_texts = n_texts or (4096 if cuda else 512)
    texts = [f"{QUERIES[i % len(QUERIES)]} #{i}" for i in range(n_texts)]
    enc.encode(texts[:32])
    out = {}
    for bs in (1, 8, 32, 64, 128, 256, 512) if cuda else (1, 8, 32, 64, 128):
        t0 = time.perf_counter()
        enc.encode(texts if bs > 1 else texts[:128], batch_size=bs)
        n = n_texts if bs > 1 else 128
        out[str(bs)] = n / (time.perf_counter() - t0)
    return out, str(enc.dtype).removeprefix("torch.")


def catalogue_scaling(sizes: list[int], dim: int = 384, n_queries: int = 200) -> list[dict]:
    """In-process recommend latency on synthetic catalogues, exact and approximate.

    Item vectors are embedding-like (:func:`benchmarks.index_scaling.low_rank_unit`);
    1,000 users with 50 random interactions each; requests by ``user_id``, k=10, with
    the default reranker. ``recall@10`` compares the approximate answers with the
    exact ones for the same users.
    """
    import pandas as pd

    from benchmarks.index_scaling import low_rank_unit
    from recommender.bundle import Bundle
    from recommender.serving import Request, load_model

    rows = []
    rng = np.random.default_rng(0)
    n_users = 1000
    for n in sizes:
        vecs = low_rank_unit(n, dim, rng)
        items = pd.DataFrame({"item_id": np.arange(n), "title": [f"item {i}" for i in range(n)]})
        inter = pd.DataFrame(
            {
                "user_id": np.repeat(np.arange(n_users), 50),
                "item_id": rng.integers(0, n, n_users * 50),
                "timestamp": np.tile(np.arange(50), n_users),
                "weight": 1.0,
            }
        )
        bundle = Bundle({"serving": {}}, items, vecs, inter)
        answers: dict[str, list[list]] = {}
        for kind in ("exact", "ann"):
            t0 = time.perf_counter()
            rec = load_model(bundle, index=kind)
            build_s = time.perf_counter() - t0
            rec.recommend(Request(user_id=0, k=10))
            lat, got = [], []
            for q in range(n_queries):
                t0 = time.perf_counter()
                out = rec.recommend(Request(user_id=int(q % n_users), k=10))
                lat.append((time.perf_counter() - t0) * 1000)
                got.append([i.item_id for i in out.items])
            answers[kind] = got
            row = {
                "items": n,
                "index": kind,
                "build_s": build_s,
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
            }
            if kind == "ann":
                row["recall@10"] = float(
                    np.mean(
                        [
                            len(set(a) & set(e)) / max(len(e), 1)
                            for a, e in zip(got, answers["exact"], strict=True)
                        ]
                    )
                )
            rows.append(row)
            log.info("catalogue %d (%s): %s", n, kind, row)
            del rec
        del vecs, bundle
    return rows
