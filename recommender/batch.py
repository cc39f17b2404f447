"""Batch inference: recommendations for every user of a table, in-process or over HTTP.

Results are written chunk by chunk into ``<output>.parts/`` (each part written to a
temporary name, then renamed), so a run that is stopped and started again skips the
users already done and loses nothing. When every user is done the parts are joined into
``output`` (again through a temporary file) and the parts folder is removed.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from recommender.data import read_table
from recommender.errors import InputError, RecbentoError
from recommender.ray_engine import ENGINES
from recommender.schemas import normalize_ids

__all__ = [
    "OUTPUT_COLUMNS",
    "run_batch",
    "score_partition",
    "http_scorer",
    "local_scorer",
]

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["user_id", "rank", "item_id", "score", "title"]
Scorer = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def local_scorer(model: str) -> Scorer:
    """Score requests in-process, through the same request path the service runs."""
    from recommender.service_core import load
    from recommender.serving import Request, recommend_batch

    loaded = load(model)

    def score(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r.to_dict() for r in recommend_batch(loaded, [Request(**q) for q in requests])]

    return score


class _Retryable(Exception):
    """A call failed in a way that may pass on a later try (overload, network)."""


def http_scorer(url: str, *, token: str | None = None, timeout: float = 120.0) -> Scorer:
    """Score requests through a running service with BentoML's Python client.

    One client per thread. 4xx answers are the caller's fault and are raised as
    :class:`InputError`; 5xx and connection failures are retried by the caller.
    """
    import threading

    import bentoml
    from bentoml.exceptions import BentoMLException

    local = threading.local()

    def client() -> Any:
        if not hasattr(local, "client"):
            kwargs: dict[str, Any] = {"timeout": timeout}
            if token:
                kwargs["token"] = token
            local.client = bentoml.SyncHTTPClient(url, **kwargs)
        return local.client

    def score(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            result = client().recommend_batch(requests=requests)
        except BentoMLException as exc:
            code = int(getattr(exc, "error_code", 500))
            if 400 <= code < 500 and code != 429:
                raise InputError(f"the service at {url} rejected a batch: {exc}") from exc
            raise _Retryable(str(exc)) from exc
        except OSError as exc:  # connection refused, reset...
            raise _Retryable(str(exc)) from exc
        except Exception as exc:  # httpx transport errors and the like
            if type(exc).__module__.startswith(("httpx", "httpcore", "aiohttp")):
                raise _Retryable(str(exc)) from exc
            raise
        if isinstance(result, dict) and "error" in result:
            raise InputError(f"the service at {url} rejected a batch: {result}")
        return result

    return score


def _with_retries(fn: Scorer, requests: list[dict[str, Any]], retries: int) -> list[dict]:
    for attempt in range(retries + 1):
        try:
            return fn(requests)
        except _Retryable as exc:
            if attempt == retries:
                raise RecbentoError(f"gave up after {retries + 1} tries: {exc}") from exc
            delay = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
            log.warning("call failed (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _read_users(path: Path) -> pd.DataFrame:
    df = read_table(path, name="input")
    if "user_id" not in df.columns:
        raise InputError(
            f"input={str(path)!r}: column 'user_id' is required; found {list(df.columns)}",
            field="user_id",
        )
    if df["user_id"].isna().any():
        rows = df.index[df["user_id"].isna()].tolist()[:10]
        raise InputError(f"input: user_id is empty in rows {rows}", field="user_id")
    df = df.copy()
    df["user_id"] = normalize_ids(df["user_id"])
    keep = ["user_id"] + (["query"] if "query" in df.columns else [])
    return df[keep].drop_duplicates("user_id").reset_index(drop=True)


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _done_users(parts: Path) -> tuple[set[Any], int]:
    done: set[Any] = set()
    last = -1
    for p in sorted(parts.glob("part-*.parquet")):
        done.update(pd.read_parquet(p, columns=["user_id"])["user_id"].tolist())
        last = max(last, int(p.stem.split("-")[1]))
    return done, last + 1


def _write_atomic(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix.lower() == ".csv":
        df.to_csv(tmp, index=False)
    else:
        df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _rows(user_id: Any, result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for rank, item in enumerate(result["items"], start=1):
        yield {
            "user_id": user_id,
            "rank": rank,
            "item_id": item["item_id"],
            "score": float(item["score"]),
            "title": item["title"],
        }


def _chunks(users: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    return [users.iloc[s : s + size] for s in range(0, len(users), size)]


def _requests(chunk: pd.DataFrame, k: int) -> list[dict[str, Any]]:
    out = []
    for rec in chunk.to_dict(orient="records"):
        req: dict[str, Any] = {"user_id": _native(rec["user_id"]), "k": k}
        q = rec.get("query")
        if isinstance(q, str) and q.strip():
            req["query"] = q
        out.append(req)
    return out


def _native(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def score_partition(scorer: Scorer, users: pd.DataFrame, k: int, retries: int = 0) -> pd.DataFrame:
    """Recommendations for one partition of users: the scoring step of every engine.

    ``users`` has ``user_id`` and optionally ``query``; the result has one row per
    recommended item, columns :data:`OUTPUT_COLUMNS`, users in input order. The local and
    HTTP paths call it per chunk, the Ray engine once per actor batch.
    """
    results = _with_retries(scorer, _requests(users, k), retries)
    rows = [
        row
        for uid, res in zip(users["user_id"].tolist(), results, strict=True)
        for row in _rows(_native(uid), res)
    ]
    return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def run_batch(
    input: str | Path,
    output: str | Path,
    *,
    model: str = "recbento-demo",
    k: int = 10,
    url: str | None = None,
    batch_size: int = 64,
    concurrency: int = 4,
    retries: int = 5,
    token: str | None = None,
    scorer: Scorer | None = None,
    progress: bool = True,
    engine: str = "local",
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    model_uri: str | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Recommend ``k`` items for every user in ``input`` and write ``output``.

    Returns counts and timings. ``scorer`` overrides how requests are answered (tests).
    ``engine="ray"`` scores on a Ray cluster (``RAY_ADDRESS``, else a local one) with
    ``actors`` model replicas; ``model_uri`` is shared storage the model is exported to
    for workers whose own model store lacks it (see :mod:`recommender.ray_engine`).
    """
    input, output = Path(input), Path(output)
    if output.suffix.lower() not in {".csv", ".parquet", ".pq"}:
        raise InputError(
            f"output={str(output)!r}: expected a .csv or .parquet file", field="output"
        )
    if batch_size < 1 or concurrency < 1 or retries < 0:
        raise InputError("batch_size and concurrency must be >= 1, retries >= 0")
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r}: expected one of {list(ENGINES)}", field="engine")
    if engine == "ray" and (url or scorer):
        raise InputError(
            "engine='ray' scores in Ray actors; it cannot be combined with --url", field="engine"
        )
    t0 = time.perf_counter()
    users = _read_users(input)
    parts = _parts_dir(output)
    parts.mkdir(parents=True, exist_ok=True)
    done, next_part = _done_users(parts)
    todo = users[~users["user_id"].isin(done)]
    log.info("%d users, %d already done, %d to go", len(users), len(done), len(todo))
    bar = tqdm(
        total=len(users), initial=len(done), desc="recommending", unit="user", disable=not progress
    )
    with bar:
        if engine == "ray":
            from recommender.ray_engine import score_to_parts

            score_to_parts(
                _chunks(todo, batch_size),
                parts,
                next_part,
                model=model,
                k=k,
                actors=actors,
                gpus_per_actor=gpus_per_actor,
                model_uri=model_uri,
                runtime_env=runtime_env,
                bar=bar,
            )
        else:
            if scorer is None:
                scorer = http_scorer(url, token=token) if url else local_scorer(model)
            workers = concurrency if url else 1
            chunks = _chunks(todo, batch_size)
            _run_chunks(chunks, scorer, k, retries, parts, next_part, workers, bar)
    frames = [pd.read_parquet(p) for p in sorted(parts.glob("part-*.parquet"))]
    result = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTPUT_COLUMNS)
    )
    order = {u: i for i, u in enumerate(users["user_id"].tolist())}
    result = result.sort_values(
        ["user_id", "rank"], key=lambda s: s.map(order) if s.name == "user_id" else s
    ).reset_index(drop=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(result[OUTPUT_COLUMNS], output)
    shutil.rmtree(parts)
    return {
        "users": len(users),
        "resumed (already done)": len(done),
        "rows": len(result),
        "seconds": time.perf_counter() - t0,
    }


def _run_chunks(
    chunks: Sequence[pd.DataFrame],
    scorer: Scorer,
    k: int,
    retries: int,
    parts: Path,
    next_part: int,
    workers: int,
    bar: tqdm,
) -> None:
    def one(n: int, chunk: pd.DataFrame) -> int:
        _write_atomic(score_partition(scorer, chunk, k, retries), parts / f"part-{n:06d}.parquet")
        return len(chunk)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[int]] = set()
        it = iter(enumerate(chunks, start=next_part))
        for n, chunk in it:
            pending.add(pool.submit(one, n, chunk))
            if len(pending) >= workers * 2:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    bar.update(f.result())
        for f in pending:
            bar.update(f.result())
