"""Vector search for the scoring stage: exact while it is fast enough, HNSW above that.

Every index answers the same question, the ``k`` items with the largest inner product
with each query (item vectors are L2-normalised, so this is cosine similarity), with
per-row exclusions (the user's history) and an optional boolean mask of allowed items
(the request's attribute filters). Excluded or disallowed items are never returned;
rows with fewer than ``k`` eligible items are padded with index ``-1`` and score
``-inf``.

* :class:`ExactIndex` is one matrix product plus ``argpartition``; it is the reference
  and the right choice up to a few hundred thousand items.
* :class:`ANNIndex` wraps a faiss HNSW graph (or an IVF index) on inner product. It
  over-fetches ``k + len(exclude)`` candidates, drops the excluded ones and widens the
  search for the rows that came up short; the allowed mask is applied inside faiss with
  an ``IDSelectorBitmap``, or by exact search over the allowed subset when that subset
  is small. Any row that still comes up short is answered exactly, so an ANN search
  never returns fewer eligible items than exist.

:func:`make_index` picks one by catalogue size. Indexes are persisted as JSON (the
configuration and a fingerprint of the vectors) plus, for ANN, faiss's own binary
file written by ``faiss.write_index`` (a plain data format read by C++, not pickle):
rebuilding a million-item HNSW graph takes minutes, reading it takes seconds.

Examples
--------
>>> V = np.eye(3, dtype=np.float32)
>>> idx, scores = ExactIndex().build(V).search(V[:1] + V[1:2] * 0.5, 2, exclude=[np.array([0])])
>>> idx.tolist(), scores.round(2).tolist()
([[1, 2]], [[0.5, 0.0]])
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from recommender.errors import BundleError, InputError
from recommender.topk import top_k

__all__ = [
    "ANNIndex",
    "ExactIndex",
    "VectorIndex",
    "load_index",
    "make_index",
    "recall_at_k",
]

log = logging.getLogger(__name__)

#: File names inside an index directory.
CONFIG_FILE = "index.json"
FAISS_FILE = "index.faiss"

_SCORE_BUDGET_BYTES = 256 * 2**20  # largest (queries x items) float32 block scored at once


class VectorIndex(ABC):
    """Contract shared by every index: ``build`` once, ``search`` many times.

    Subclasses store keyword hyperparameters in ``__init__``; ``build`` validates the
    vectors, learns ``vectors_`` (and any structure) and returns ``self``.
    """

    kind: ClassVar[str]

    vectors_: np.ndarray

    # ----------------------------------------------------------------- build
    @abstractmethod
    def build(self, vectors: np.ndarray) -> VectorIndex:
        """Index ``vectors``, an ``(n, d)`` float32 matrix of unit rows; return ``self``."""

    @property
    def n_items(self) -> int:
        """Number of indexed items."""
        self._check_built()
        return int(self.vectors_.shape[0])

    @property
    def dim(self) -> int:
        """Vector dimension."""
        self._check_built()
        return int(self.vectors_.shape[1])

    # ---------------------------------------------------------------- search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product for each query.

        Parameters
        ----------
        queries : numpy.ndarray
            ``(b, d)`` query vectors (a single ``(d,)`` vector is read as ``b = 1``).
        k : int
            Results per query, at least 1.
        exclude : sequence of numpy.ndarray, optional
            ``exclude[i]`` holds item indices never returned for query ``i``.
        allowed_mask : numpy.ndarray of bool, optional
            ``(n,)`` mask shared by every query or ``(b, n)`` per query; ``False``
            items are never returned.

        Returns
        -------
        idx : numpy.ndarray
            ``(b, k)`` int64 item indices, best first, ``-1`` padding.
        scores : numpy.ndarray
            ``(b, k)`` float32 inner products, ``-inf`` padding.
        """
        self._check_built()
        q = self._check_queries(queries)
        k = _check_k(k)
        ex = _check_exclude(exclude, len(q), self.n_items)
        mask = _check_mask(allowed_mask, len(q), self.n_items)
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._search(q, k, ex, mask)

    @abstractmethod
    def _search(
        self, q: np.ndarray, k: int, exclude: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` after validation: ``exclude`` has one int64 array per row."""

    # ---------------------------------------------------------------- config
    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-able dict; ``from_config`` rebuilds the estimator."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VectorIndex:
        """An unbuilt index with the hyperparameters of ``get_config``."""
        params = {key: val for key, val in config.items() if key != "kind"}
        return cls(**params)

    def save(self, directory: str | Path) -> Path:
        """Write ``index.json`` (config and a vector fingerprint) into ``directory``.

        The vectors themselves are not written: they live in the bundle's
        ``item_vectors.safetensors`` and are passed back to :func:`load_index`.
        """
        self._check_built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "config": self.get_config(),
            "n_items": self.n_items,
            "dim": self.dim,
            "fingerprint": fingerprint(self.vectors_),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    # --------------------------------------------------------------- helpers
    def _check_built(self) -> None:
        if not hasattr(self, "vectors_"):
            raise InputError(f"{type(self).__name__} is not built; call build(vectors) first")

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(
                f"queries has shape {np.shape(queries)}; expected (b, {self.dim})",
                field="queries",
                value=str(np.shape(queries)),
            )
        if not np.isfinite(q).all():
            raise InputError("queries contain NaN or inf; expected finite values", field="queries")
        return np.ascontiguousarray(q)


class ExactIndex(VectorIndex):
    """Brute force: one matrix product per block of queries, then ``argpartition``.

    Parameters
    ----------
    score_budget_mb : int
        Largest ``(queries x items)`` float32 score block held at once, in MiB;
        bigger batches are scored in chunks.

    Examples
    --------
    >>> V = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    >>> ExactIndex().build(V).search(np.array([1, 0]), 2)[0].tolist()
    [[0, 1]]
    """

    kind = "exact"

    def __init__(self, *, score_budget_mb: int = 256) -> None:
        self.score_budget_mb = score_budget_mb

    def build(self, vectors: np.ndarray) -> ExactIndex:
        self.vectors_ = _check_vectors(vectors)
        return self

    def _search(
        self, q: np.ndarray, k: int, exclude: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        b, n = len(q), self.n_items
        rows = max(1, int(self.score_budget_mb * 2**20 // (4 * n)))
        idx = np.empty((b, k), np.int64)
        sc = np.empty((b, k), np.float32)
        for s in range(0, b, rows):
            e = min(b, s + rows)
            scores = q[s:e] @ self.vectors_.T
            if mask is not None:
                m = mask if mask.ndim == 1 else mask[s:e]
                scores[~np.broadcast_to(m, scores.shape)] = -np.inf
            for i in range(s, e):
                if len(exclude[i]):
                    scores[i - s, exclude[i]] = -np.inf
            idx[s:e], sc[s:e] = top_k(scores, k)
        return idx, sc

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "score_budget_mb": self.score_budget_mb}


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


_KINDS: dict[str, type[VectorIndex]] = {"exact": ExactIndex, "ann": ANNIndex}


def make_index(
    vectors: np.ndarray,
    kind: Literal["auto", "exact", "ann"] = "auto",
    ann_threshold: int = 200_000,
    **params: Any,
) -> VectorIndex:
    """Build the index that suits the catalogue.

    Parameters
    ----------
    vectors : numpy.ndarray
        ``(n, d)`` float32 unit rows.
    kind : {"auto", "exact", "ann"}
        ``auto`` is exact below ``ann_threshold`` items and ANN from there on.
    ann_threshold : int
        Catalogue size from which ``auto`` builds an ANN index.
    **params
        Hyperparameters of the chosen class (ignored by ``auto`` when it picks exact).

    Examples
    --------
    >>> make_index(np.eye(4, dtype=np.float32)).kind
    'exact'
    """
    if kind == "auto":
        kind = "ann" if len(vectors) >= ann_threshold else "exact"
        if kind == "exact":
            params = {k: v for k, v in params.items() if k in ("score_budget_mb",)}
    if kind not in _KINDS:
        raise InputError(
            f"kind={kind!r}: expected one of ['auto', 'exact', 'ann']", field="kind", value=kind
        )
    log.info("building %s index over %d items", kind, len(vectors))
    return _KINDS[kind](**params).build(vectors)


def load_index(directory: str | Path, vectors: np.ndarray) -> VectorIndex:
    """Read an index written by ``save``, attached to the bundle's ``vectors``.

    A saved faiss file is used when it matches ``vectors`` (same shape and
    fingerprint); otherwise the index is rebuilt from ``vectors`` with the saved
    configuration, and a warning is logged.
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        cls = _KINDS[meta["kind"]]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{directory / CONFIG_FILE}: unreadable index config ({exc})") from exc
    index = cls.from_config(meta["config"])
    vectors = _check_vectors(vectors)
    matches = meta.get("fingerprint") == fingerprint(vectors)
    faiss_file = directory / FAISS_FILE
    if isinstance(index, ANNIndex) and faiss_file.exists() and matches:
        import faiss

        index.vectors_ = vectors
        index.index_ = faiss.read_index(str(faiss_file))
        if index.index_.ntotal != len(vectors) or index.index_.d != vectors.shape[1]:
            raise BundleError(
                f"{faiss_file}: holds {index.index_.ntotal} x {index.index_.d} vectors; "
                f"expected {vectors.shape[0]} x {vectors.shape[1]}"
            )
        return index
    if isinstance(index, ANNIndex):
        log.warning("%s: saved ANN index missing or stale; rebuilding", directory)
    return index.build(vectors)


# ---------------------------------------------------------------------- helpers
def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (ignoring ``-1``) that ``found`` contains.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]))
    0.6666666666666666
    """
    total = 0.0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        total += len(np.intersect1d(f[f >= 0], t)) / len(t) if len(t) else 1.0
    return total / max(len(truth), 1)


def fingerprint(vectors: np.ndarray) -> str:
    """Cheap identity of a vector matrix: its shape and a hash of up to 1024 rows."""
    n = len(vectors)
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 1024)).astype(np.int64))
    h = hashlib.sha256(f"{vectors.shape}".encode())
    h.update(np.ascontiguousarray(vectors[rows] if n else vectors).tobytes())
    return h.hexdigest()[:16]


def _eligible(n_eligible: int, exclude: np.ndarray, mask: np.ndarray | None) -> int:
    if not len(exclude):
        return n_eligible
    hit = int(mask[exclude].sum()) if mask is not None else len(exclude)
    return n_eligible - hit


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise InputError(
            f"vectors has shape {np.shape(vectors)}; expected a non-empty (n, d) matrix",
            field="vectors",
            value=str(np.shape(vectors)),
        )
    if not np.isfinite(v).all():
        raise InputError("vectors contain NaN or inf; expected finite values", field="vectors")
    return v


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k={k!r}: expected an integer >= 1", field="k", value=k)
    return int(k)


def _check_exclude(exclude: Sequence[np.ndarray] | None, b: int, n: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, np.int64)] * b
    if len(exclude) != b:
        raise InputError(
            f"exclude has {len(exclude)} rows; expected one per query ({b})",
            field="exclude",
            value=len(exclude),
        )
    out = []
    for i, ex in enumerate(exclude):
        ex = np.unique(np.asarray(ex, dtype=np.int64).ravel())
        if len(ex) and (ex[0] < 0 or ex[-1] >= n):
            raise InputError(
                f"exclude[{i}] holds item index {int(ex[0] if ex[0] < 0 else ex[-1])}; "
                f"expected 0..{n - 1}",
                field=f"exclude[{i}]",
            )
        out.append(ex)
    return out


def _check_mask(mask: np.ndarray | None, b: int, n: int) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool or m.shape not in ((n,), (b, n)):
        raise InputError(
            f"allowed_mask has dtype {m.dtype} and shape {m.shape}; "
            f"expected bool of shape ({n},) or ({b}, {n})",
            field="allowed_mask",
        )
    return m
