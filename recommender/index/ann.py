"""Approximate search with faiss (HNSW or IVF on inner product), exact where it comes up short."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recommender.errors import InputError
from recommender.index.base import (
    FAISS_FILE,
    VectorIndex,
    _check_vectors,
    _eligible,
)
from recommender.index.exact import ExactIndex

log = logging.getLogger(__name__)


class ANNIndex(VectorIndex):
    """Approximate inner-product search with faiss (HNSW by default, or IVF).

    Parameters
    ----------
    method : {"hnsw", "ivf"}
        ``hnsw``: ``IndexHNSWFlat`` (no training, best recall per millisecond, slow to
        build). ``ivf``: ``IndexIVFFlat`` (k-means coarse quantiser, fast to build,
        recall grows with ``nprobe / nlist``).
    M : int
        HNSW links per node.
    ef_construction : int
        HNSW candidate list size while building.
    ef_search : int
        HNSW candidate list size while searching (raised to the number of results
        fetched when that is larger). The main recall / latency knob: on 1M
        embedding-like vectors 512 gives recall@100 0.99 at under 10 ms p99 on two
        cores (``benchmarks/index_scaling.py``).
    nlist : int, optional
        IVF lists; ``4 * sqrt(n)`` when omitted.
    nprobe : int
        IVF lists scanned per query.
    exact_subset_max : int
        When an allowed mask leaves at most this many items, those items are searched
        exactly instead (cheap, and a graph search would rarely reach them).
    max_widen : int
        How many times a short row's fetch size is doubled before it is answered exactly.
    random_state : int
        Seed for IVF training-sample choice and k-means.
    """

    kind = "ann"

    def __init__(
        self,
        *,
        method: Literal["hnsw", "ivf"] = "hnsw",
        M: int = 32,  # noqa: N803 - faiss's name for it
        ef_construction: int = 80,
        ef_search: int = 512,
        nlist: int | None = None,
        nprobe: int = 32,
        exact_subset_max: int = 20_000,
        max_widen: int = 3,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self.exact_subset_max = exact_subset_max
        self.max_widen = max_widen
        self.random_state = random_state

    # ----------------------------------------------------------------- build
    def build(self, vectors: np.ndarray) -> ANNIndex:
        import faiss

        if self.method not in ("hnsw", "ivf"):
            raise InputError(
                f"method={self.method!r}: expected 'hnsw' or 'ivf'",
                field="method",
                value=self.method,
            )
        for name in ("M", "ef_construction", "ef_search", "nprobe", "max_widen"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise InputError(f"{name}={val!r}: expected an integer >= 1", field=name, value=val)
        self.vectors_ = _check_vectors(vectors)
        n, d = self.vectors_.shape
        t0 = time.perf_counter()
        if self.method == "hnsw":
            index = faiss.IndexHNSWFlat(d, self.M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.ef_construction
            index.hnsw.efSearch = self.ef_search
            self._add_in_chunks(index, "building HNSW graph")
        else:
            nlist = int(self.nlist or max(1, min(n, round(4 * np.sqrt(n)))))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = self.random_state
            rng = np.random.default_rng(self.random_state)
            n_train = min(n, 64 * nlist)
            sample = self.vectors_[np.sort(rng.choice(n, n_train, replace=False))]
            index.train(sample)
            index.nprobe = self.nprobe
            self._add_in_chunks(index, "filling IVF lists")
        self.index_ = index
        self.build_seconds_ = time.perf_counter() - t0
        log.info("built %s index of %d x %d in %.1fs", self.method, n, d, self.build_seconds_)
        return self

    def _add_in_chunks(self, index: Any, desc: str) -> None:
        from tqdm.auto import tqdm

        n = len(self.vectors_)
        step = 50_000
        with tqdm(total=n, desc=desc, unit="item", disable=n <= step) as bar:
            for s in range(0, n, step):
                index.add(self.vectors_[s : s + step])
                bar.update(min(step, n - s))

    # ---------------------------------------------------------------- search
    def _params(self, fetch: int, selector: Any = None) -> Any:
        import faiss

        if self.method == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(self.ef_search, fetch), sel=selector)
        return faiss.SearchParametersIVF(nprobe=self.nprobe, sel=selector)

    def _search(
        self, q: np.ndarray, k: int, exclude: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        b = len(q)
        idx = np.full((b, k), -1, np.int64)
        sc = np.full((b, k), -np.inf, np.float32)
        if mask is None or mask.ndim == 1:
            groups = [(np.arange(b), mask)]
        else:
            groups = [(np.array([i]), mask[i]) for i in range(b)]
        for rows, m in groups:
            if m is not None and int(m.sum()) <= self.exact_subset_max:
                self._search_subset(q, k, exclude, m, rows, idx, sc)
            else:
                self._search_graph(q, k, exclude, m, rows, idx, sc)
        return idx, sc

    def _search_subset(self, q, k, exclude, mask, rows, idx, sc) -> None:  # noqa: ANN001
        """Exact search restricted to the (small) allowed subset."""
        keep = np.flatnonzero(mask)
        sub = ExactIndex().build(self.vectors_[keep]) if len(keep) else None
        for i in rows:
            if sub is None:
                continue
            ex_local = np.flatnonzero(np.isin(keep, exclude[i]))
            j, s = sub.search(q[i : i + 1], k, exclude=[ex_local])
            idx[i] = np.where(j[0] >= 0, keep[np.maximum(j[0], 0)], -1)
            sc[i] = s[0]

    def _search_graph(self, q, k, exclude, mask, rows, idx, sc) -> None:  # noqa: ANN001
        """faiss search with over-fetch for exclusions, widening, then exact fallback."""
        import faiss

        n = self.n_items
        selector = bitmap = None
        if mask is not None:
            bitmap = np.packbits(mask.astype(np.uint8), bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        n_eligible = int(mask.sum()) if mask is not None else n
        pending = list(rows)
        fetch = k + max((len(exclude[i]) for i in rows), default=0)
        for _ in range(self.max_widen + 1):
            if not pending:
                break
            fetch = min(fetch, n)
            params = self._params(fetch, selector)
            _, found = self.index_.search(q[pending], fetch, params=params)
            short = []
            for r, i in enumerate(pending):
                got = found[r][found[r] >= 0]
                if len(exclude[i]):
                    got = got[~np.isin(got, exclude[i])]
                want = min(k, _eligible(n_eligible, exclude[i], mask))
                if len(got) >= want or fetch >= n:
                    self._fill(i, got[:k], q, idx, sc)
                else:
                    short.append(i)
            pending, fetch = short, fetch * 2
        if pending:
            log.debug("answering %d short ANN rows exactly", len(pending))
            exact = ExactIndex()
            exact.vectors_ = self.vectors_
            j, s = exact.search(q[pending], k, [exclude[i] for i in pending], mask)
            idx[pending], sc[pending] = j, s
        del bitmap  # the selector reads it until here

    def _fill(self, i: int, got: np.ndarray, q: np.ndarray, idx, sc) -> None:  # noqa: ANN001
        # Exact inner products for the (few) returned items, so scores are comparable
        # with ExactIndex whatever the index stores.
        s = self.vectors_[got] @ q[i]
        order = np.argsort(-s, kind="stable")
        idx[i, : len(got)] = got[order]
        sc[i, : len(got)] = s[order]

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "method": self.method,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
            "exact_subset_max": self.exact_subset_max,
            "max_widen": self.max_widen,
            "random_state": self.random_state,
        }

    def save(self, directory: str | Path) -> Path:
        """Write ``index.json`` and the faiss index (``index.faiss``, faiss's binary format)."""
        import faiss

        directory = super().save(directory)
        faiss.write_index(self.index_, str(directory / FAISS_FILE))
        return directory
