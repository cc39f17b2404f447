"""`--engine ray`: same answers as the in-process path, on a local two-CPU Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recommender.batch import OUTPUT_COLUMNS, local_scorer, run_batch
from recommender.bundle import load_from_store
from recommender.cli import app
from recommender.errors import InputError, RecbentoError
from recommender.model_share import publish_model, publish_models
from recommender.ray_engine import _N, complete_users
from tests.toy import INTERACTIONS, ITEMS

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_ray():
    import ray

    # Workers inherit this process's environment: the test BENTOML_HOME, offline HF.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def users_csv(tmp_path) -> Path:
    # known users, one with a free-text query, and one the model has never seen
    path = tmp_path / "users.csv"
    pd.DataFrame(
        {"user_id": [10, 20, 30, 40, 99], "query": [None, None, "alien space horror", None, None]}
    ).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_ray_batch_writes_what_the_in_process_batch_writes(
    local_ray, toy_model, users_csv, tmp_path
):
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    run_batch(users_csv, local, model=toy_model, k=3, batch_size=2, progress=False)
    res = runner.invoke(
        app,
        ["batch", "--input", str(users_csv), "--output", str(on_ray), "--model", toy_model]
        + ["-k", "3", "--batch-size", "2", "--engine", "ray", "--actors", "2"],
    )
    assert res.exit_code == 0, res.output
    expected, got = pd.read_parquet(local), pd.read_parquet(on_ray)
    assert list(got.columns) == OUTPUT_COLUMNS
    assert got["user_id"].unique().tolist() == [10, 20, 30, 40, 99]
    # the same items in the same order; scores to float32 precision (a worker's BLAS
    # may sum in another order than this process's)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=2e-6)
    assert not (tmp_path / "ray.parquet.parts").exists()


@pytest.mark.slow
def test_ray_batch_resumes_a_stopped_run_on_workers_with_their_own_store(
    local_ray, toy_model, users_csv, tmp_path
):
    expected = tmp_path / "local.csv"
    run_batch(users_csv, expected, model=toy_model, k=3, batch_size=2, progress=False)

    out = tmp_path / "recs.csv"
    score = local_scorer(toy_model)

    def stopped_at_user_30(requests):
        if 30 in [r["user_id"] for r in requests]:
            raise KeyboardInterrupt
        return score(requests)

    with pytest.raises(KeyboardInterrupt):
        run_batch(users_csv, out, k=3, batch_size=2, scorer=stopped_at_user_30, progress=False)
    parts = sorted((tmp_path / "recs.csv.parts").glob("part-*.parquet"))
    done = set(pd.concat(pd.read_parquet(p) for p in parts)["user_id"])
    assert {10, 20} <= done and 30 not in done

    # Workers with an empty store of their own, as on other machines of a cluster.
    worker_home, shared = tmp_path / "worker-home", tmp_path / "shared"
    stats = run_batch(
        users_csv,
        out,
        model=toy_model,
        k=3,
        batch_size=2,
        engine="ray",
        actors=2,
        model_uri=str(shared),
        runtime_env={"env_vars": {"BENTOML_HOME": str(worker_home)}},
        progress=False,
    )
    assert stats["resumed (already done)"] == len(done)
    pd.testing.assert_frame_equal(
        pd.read_csv(out), pd.read_csv(expected), check_exact=False, rtol=0, atol=2e-6
    )
    name, version = toy_model.split(":")
    assert (shared / f"{name}-{version}.bentomodel").is_file()
    assert (worker_home / "models" / name / version / "model.yaml").is_file()


@pytest.mark.slow
def test_ray_encoded_vectors_equal_in_process_vectors(local_ray, tiny_encoder_path):
    from recommender.data import item_texts
    from recommender.encoder import TextEncoder
    from recommender.ray_engine import encode_items
    from recommender.schemas import validate_tables

    items = validate_tables(ITEMS.copy(), INTERACTIONS.copy()).items
    expected = TextEncoder.from_pretrained(tiny_encoder_path).encode(item_texts(items))
    # three partitions of at most 3 items over two actors: the order must come back right
    got = encode_items(
        items, str(tiny_encoder_path), actors=2, partition_size=3, batch_size=2, progress=False
    )
    assert got.shape == expected.shape == (len(ITEMS), 32)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.slow
def test_ray_build_saves_the_model_the_local_build_saves(
    local_ray, toy_model, tiny_encoder_path, tmp_path
):
    ITEMS.to_csv(tmp_path / "items.csv", index=False)
    INTERACTIONS.to_csv(tmp_path / "interactions.csv", index=False)
    res = runner.invoke(
        app,
        ["build", "--items", str(tmp_path / "items.csv")]
        + ["--interactions", str(tmp_path / "interactions.csv"), "--name", "ray-toy"]
        + ["--encoder", str(tiny_encoder_path), "--engine", "ray", "--actors", "2"],
    )
    assert res.exit_code == 0, res.output
    on_ray, _ = load_from_store(res.output.strip().splitlines()[-1])
    local, _ = load_from_store(toy_model)  # the same tables and encoder, built in-process
    np.testing.assert_allclose(on_ray.item_vectors, local.item_vectors, atol=1e-5)
    np.testing.assert_allclose(on_ray.user_vectors, local.user_vectors, atol=1e-5)
    assert on_ray.user_ids == local.user_ids


def test_a_user_cut_across_blocks_is_written_only_once_whole():
    rows = pd.DataFrame(
        {"user_id": [1, 1, 1, 2, 2], "rank": [1, 2, 3, 1, 2], _N: [3, 3, 3, 2, 2]}
    ).assign(item_id=7, score=0.5, title="t")
    done, pending = complete_users(rows.iloc[:4])
    assert done["user_id"].tolist() == [1, 1, 1] and _N not in done.columns
    assert pending["user_id"].tolist() == [2]
    done, pending = complete_users(pd.concat([pending, rows.iloc[4:]]))
    assert done["rank"].tolist() == [1, 2] and pending.empty


def test_unknown_engine_and_url_with_ray_are_refused(tmp_path, users_csv):
    with pytest.raises(InputError, match="engine='spark'"):
        run_batch(users_csv, tmp_path / "r.csv", engine="spark", progress=False)
    with pytest.raises(InputError, match="--url"):
        run_batch(users_csv, tmp_path / "r.csv", engine="ray", url="http://x", progress=False)


def test_missing_ray_names_the_extra_to_install(tmp_path, users_csv, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(RecbentoError, match=r"recbento\[ray\]"):
        run_batch(users_csv, tmp_path / "r.csv", engine="ray", progress=False)
    res = runner.invoke(
        app,
        ["build", "--items", "i.csv", "--interactions", "t.csv", "--name", "x", "--engine", "ray"],
    )
    assert res.exit_code == 1 and "recbento[ray]" in res.output


_WORKER = """
import json, sys
from recommender.batch import local_scorer
from recommender.errors import NotFoundError
from recommender.model_share import ensure_local_model, ensure_local_models
tag, sources, requests = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
try:
    ensure_local_model(tag, None)
except NotFoundError as exc:
    print("without archive:", exc.message)
ensure_local_models(sources)  # the bundle and its encoder checkpoint
print(json.dumps(local_scorer(tag)(requests)))
"""


@pytest.mark.slow
def test_exported_model_imports_into_a_fresh_store_and_recommends_the_same(toy_model, tmp_path):
    uri = publish_model(toy_model, str(tmp_path / "shared"))
    first_write = os.stat(uri).st_mtime_ns
    assert publish_model(toy_model, str(tmp_path / "shared")) == uri  # exists: reused
    assert os.stat(uri).st_mtime_ns == first_write
    requests = [{"user_id": 10, "k": 4}, {"user_id": 99, "k": 4}, {"query": "crime", "k": 4}]
    sources = publish_models(toy_model, str(tmp_path / "shared"))
    assert sources[toy_model] == uri and len(sources) == 2  # + the encoder checkpoint
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, toy_model, json.dumps(sources), json.dumps(requests)],
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "fresh-home")},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "--model-uri" in lines[0]
    expected = json.loads(json.dumps(local_scorer(toy_model)(requests)))
    assert json.loads(lines[-1]) == expected
    assert (tmp_path / "fresh-home" / "models" / toy_model.replace(":", "/")).is_dir()
