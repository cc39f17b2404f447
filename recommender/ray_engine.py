"""Batch scoring and catalogue encoding on Ray Data (``--engine ray``).

Ray Data streams partitions of users (or of item texts) through a pool of actors. Each
actor loads the model once, in its constructor, and runs the very function the
in-process path runs: :func:`recommender.batch.score_partition` over
:func:`recommender.batch.local_scorer` for users, :meth:`TextEncoder.encode` over
:func:`recommender.data.item_texts` for items. Results stream back to the driver, which
writes the same resumable ``<output>.parts/`` files as the local engine, so a stopped run
continues with either engine.

The driver joins the cluster named by ``RAY_ADDRESS`` (for example
``ray://head:10001`` on KubeRay) or starts a local Ray. Workers find the model in their
own store, or import the archive the driver exported to ``model_uri``
(:mod:`recommender.model_share`).

Ray is an optional dependency (``pip install 'recbento[ray]'``) imported only here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recommender.errors import InputError, RecbentoError

__all__ = ["ENGINES", "RAY_EXTRA", "import_ray", "ray_session", "UserScorer", "ItemEncoder"]
__all__ += ["score_to_parts", "encode_texts", "encode_items"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")  # what --engine accepts; "local" is this process
RAY_EXTRA = "pip install 'recbento[ray]'"
_N = "_rows_of_user"  # rows the actor produced for the user: lets the driver spot splits


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or an error that names the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise RecbentoError(
            f"engine='ray' needs Ray Data, which is not installed ({exc}); "
            f"install the optional extra: {RAY_EXTRA}"
        ) from exc
    return ray


@contextmanager
def ray_session() -> Iterator[Any]:
    """Ray, initialised: the caller's session, the cluster at ``RAY_ADDRESS``, or a local one.

    A session this function started is shut down on exit; one the caller started is left.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init()
    ctx = ray.data.DataContext.get_current()
    bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False  # ours is enough
    try:
        yield ray
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()


def _check_pool(actors: int, gpus_per_actor: float) -> None:
    if actors < 1:
        raise InputError(f"actors={actors}: expected at least 1", field="actors")
    if gpus_per_actor < 0:
        raise InputError(
            f"gpus_per_actor={gpus_per_actor}: expected 0 (CPU) or more", field="gpus_per_actor"
        )


def _pool_args(
    ray: Any, actors: int, gpus_per_actor: float, runtime_env: dict[str, Any] | None
) -> dict[str, Any]:
    args: dict[str, Any] = {
        "compute": ray.data.ActorPoolStrategy(size=actors),
        "num_cpus": 1,
    }
    if gpus_per_actor > 0:
        args["num_gpus"] = gpus_per_actor
    if runtime_env:
        args["runtime_env"] = runtime_env
    return args


class UserScorer:
    """Ray actor: loads ``model`` once, then scores partitions of users.

    Called with a pandas DataFrame ``user_id[, query]``; returns the rows of
    :func:`~recommender.batch.score_partition` plus a count of each user's rows.
    """

    def __init__(self, model: str, k: int, sources: dict[str, str | None] | None = None) -> None:
        from recommender.batch import local_scorer
        from recommender.model_share import ensure_local_models

        ensure_local_models(sources or {model: None})
        self.scorer = local_scorer(model)
        self.k = k

    def __call__(self, users: pd.DataFrame) -> pd.DataFrame:
        from recommender.batch import score_partition

        rows = score_partition(self.scorer, users, self.k)
        rows[_N] = rows.groupby("user_id", sort=False)["rank"].transform("size").astype("int64")
        return rows


def complete_users(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split streamed rows into users whose rows have all arrived, and the rest.

    Ray may cut an actor's output into several blocks; a user cut in two is held back
    until the rest of their rows come, so that every written part holds whole users
    (a resumed run treats a user found in a part as done).
    """
    have = rows.groupby("user_id", sort=False)["rank"].transform("size")
    whole = have.to_numpy() == rows[_N].to_numpy()
    return rows[whole].drop(columns=[_N]), rows[~whole]


def score_to_parts(
    chunks: Sequence[pd.DataFrame],
    parts: Path,
    next_part: int,
    *,
    model: str,
    k: int,
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    model_uri: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    bar: tqdm | None = None,
) -> int:
    """Score ``chunks`` of users on Ray; write ``parts/part-NNNNNN.parquet`` from ``next_part``.

    One Ray block per chunk, one actor call per block. Returns the number of users written.
    """
    from recommender.batch import OUTPUT_COLUMNS, _write_atomic
    from recommender.model_share import publish_models
    from recommender.service_core import ensure_model

    import_ray()  # fail before any work when the extra is missing
    _check_pool(actors, gpus_per_actor)
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return 0
    tag = ensure_model(model)  # the exact version, so that every actor loads the same one
    sources = publish_models(tag, model_uri)  # the bundle and its encoder checkpoint
    written, n, pending = 0, next_part, None
    with ray_session() as ray:
        ds = ray.data.from_pandas([c.reset_index(drop=True) for c in chunks])
        ds = ds.map_batches(
            UserScorer,
            fn_constructor_kwargs={"model": tag, "k": k, "sources": sources},
            batch_size=None,
            batch_format="pandas",
            **_pool_args(ray, min(actors, len(chunks)), gpus_per_actor, runtime_env),
        )
        # Arrow blocks, converted here with pyarrow's defaults: Ray's own pandas batches
        # carry Arrow-backed dtypes, which would leak into the parts and the output.
        for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            block = table.to_pandas()
            rows = block if pending is None else pd.concat([pending, block], ignore_index=True)
            done, pending = complete_users(rows)
            if len(done):
                _write_atomic(done[OUTPUT_COLUMNS], parts / f"part-{n:06d}.parquet")
                n += 1
                users = done["user_id"].nunique()
                written += users
                if bar is not None:
                    bar.update(users)
    if pending is not None and len(pending):
        raise RecbentoError(
            f"{pending['user_id'].nunique()} users came back with missing rows; "
            "run the same command again to score them"
        )
    return written


class ItemEncoder:
    """Ray actor: loads the text encoder once, then encodes partitions of item texts.

    Called with ``{"row": int array, "text": str array}``; returns ``row`` and ``vector``.
    """

    def __init__(self, encoder: str | None, batch_size: int = 64) -> None:
        from recommender.encoder import TextEncoder

        self.encoder = TextEncoder.from_pretrained(encoder, batch_size=batch_size)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.encoder.encode([str(t) for t in batch["text"]])
        return {"row": np.asarray(batch["row"], dtype=np.int64), "vector": vectors}


def encode_texts(
    texts: Sequence[str],
    encoder: str | None = None,
    *,
    actors: int = 2,
    gpus_per_actor: float = 0.0,
    partition_size: int = 1024,
    batch_size: int = 64,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = True,
) -> np.ndarray:
    """``TextEncoder.from_pretrained(encoder).encode(texts)``, spread over Ray actors.

    ``encoder`` (a checkpoint folder, or None for the bundled default) must load on every
    worker: the default ships with the package; a folder must be on a shared volume or in
    the workers' image. Returns an ``(n, dim)`` float32 array in ``texts`` order.
    """
    import_ray()
    _check_pool(actors, gpus_per_actor)
    if partition_size < 1:
        raise InputError(
            f"partition_size={partition_size}: expected at least 1", field="partition_size"
        )
    n = len(texts)
    if n == 0:
        raise InputError("texts: nothing to encode (expected at least one text)", field="texts")
    frame = pd.DataFrame({"row": np.arange(n, dtype=np.int64), "text": [str(t) for t in texts]})
    rows: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    with (
        ray_session() as ray,
        tqdm(total=n, desc="encoding items (ray)", unit="text", disable=not progress) as bar,
    ):
        parts = [frame.iloc[s : s + partition_size] for s in range(0, n, partition_size)]
        ds = ray.data.from_pandas([p.reset_index(drop=True) for p in parts])
        ds = ds.map_batches(
            ItemEncoder,
            fn_constructor_kwargs={"encoder": encoder, "batch_size": batch_size},
            batch_size=None,
            batch_format="numpy",
            **_pool_args(ray, min(actors, len(parts)), gpus_per_actor, runtime_env),
        )
        for out in ds.iter_batches(batch_format="numpy", batch_size=None):
            rows.append(np.asarray(out["row"], dtype=np.int64))
            vectors.append(np.asarray(out["vector"], dtype=np.float32))
            bar.update(len(rows[-1]))
    order = np.concatenate(rows)
    if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
        raise RecbentoError(f"Ray returned {len(order)} vectors for {n} texts")
    result = np.empty((n, vectors[0].shape[1]), dtype=np.float32)
    result[order] = np.concatenate(vectors)
    return result


def encode_items(items: pd.DataFrame, encoder: str | None = None, **kwargs: Any) -> np.ndarray:
    """Vectors of a validated items table, as :func:`~recommender.build.build_bundle` makes.

    The texts come from :func:`~recommender.data.item_texts` on the whole table; the
    encoding is :func:`encode_texts` (keyword arguments go there).
    """
    from recommender.data import item_texts

    return encode_texts(item_texts(items), encoder, **kwargs)
