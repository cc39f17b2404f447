"""Shared fixtures: a private BentoML home, a tiny random BERT, a toy catalogue."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="recbento-test-home-")
os.environ["BENTOML_HOME"] = _HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import copy  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from tests.toy import INTERACTIONS, ITEMS, VECTORS  # noqa: E402


@pytest.fixture
def items() -> pd.DataFrame:
    return ITEMS.copy()


@pytest.fixture
def interactions() -> pd.DataFrame:
    return INTERACTIONS.copy()


@pytest.fixture(scope="session")
def _tiny_encoder_session():
    from transformers import AutoTokenizer, BertConfig, BertModel

    from recommender.encoder import TextEncoder, default_encoder_path

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(default_encoder_path()))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    return TextEncoder(BertModel(cfg).eval(), tok, name="tiny", max_length=64)


@pytest.fixture
def tiny_encoder(_tiny_encoder_session):
    """A tiny random BERT (32-d), deep-copied per test."""
    return copy.deepcopy(_tiny_encoder_session)


@pytest.fixture(scope="session")
def tiny_encoder_path(_tiny_encoder_session, tmp_path_factory) -> Path:
    """The tiny BERT saved as a checkpoint folder, for the CLI and the service."""
    path = tmp_path_factory.mktemp("tiny-bert")
    _tiny_encoder_session.model.save_pretrained(path)
    _tiny_encoder_session.tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def toy_bundle(items, interactions):
    """A bundle over the toy catalogue with hand-made item vectors."""
    from recommender.bundle import Bundle
    from recommender.schemas import validate_tables

    tables = validate_tables(items, interactions)
    return Bundle(
        config={"encoder": {"name": "hand-made", "dim": 4}, "serving": {}},
        items=tables.items,
        item_vectors=VECTORS.copy(),
        interactions=tables.interactions,
    )


@pytest.fixture
def toy_csvs(tmp_path, items, interactions) -> tuple[Path, Path]:
    i, t = tmp_path / "items.csv", tmp_path / "interactions.csv"
    items.to_csv(i, index=False)
    interactions.to_csv(t, index=False)
    return i, t


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory, tiny_encoder_path) -> str:
    """The toy catalogue built into the (private) model store as ``svc-toy``; its tag."""
    from recommender.build import build_and_save

    d = tmp_path_factory.mktemp("svc")
    ITEMS.to_csv(d / "items.csv", index=False)
    INTERACTIONS.to_csv(d / "interactions.csv", index=False)
    report = build_and_save(
        d / "items.csv",
        d / "interactions.csv",
        name="svc-toy",
        encoder=str(tiny_encoder_path),
        progress=False,
    )
    return report.tag


@pytest.fixture(scope="session")
def bento(toy_model):
    """``bentoml build`` of this checkout packing ``toy_model``: the Bento (built once)."""
    import subprocess
    import sys

    import bentoml

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "RECBENTO_MODEL": toy_model}
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(root), "--output", "tag"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return bentoml.get(tag)


@pytest.fixture(scope="session")
def pg_server():
    """A private PostgreSQL server for the session; the URL of its ``recbento`` database.

    Fails (never skips) when PostgreSQL is not installed: the shared feedback store is
    part of the product, and its tests must run.
    """
    from tests.pg import PostgresMissing, postgres_server

    try:
        server = postgres_server()
        url = server.__enter__()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A ``postgresql://`` URL whose tables live in a schema of their own (one per test)."""
    from tests.pg import with_schema

    return with_schema(pg_server)


@pytest.fixture(scope="session")
def bento_api(toy_model):
    """The API service bentofile.yaml names (a bentoml Service), read by importing it."""
    import importlib
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    target = yaml.safe_load((root / "bentofile.yaml").read_text())["service"]
    module_name, attr = target.split(":")
    before = os.environ.get("RECBENTO_MODEL")
    os.environ["RECBENTO_MODEL"] = toy_model  # importing service.py resolves the model
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        api = getattr(importlib.import_module(module_name), attr)
    finally:
        if before is None:
            os.environ.pop("RECBENTO_MODEL", None)
        else:
            os.environ["RECBENTO_MODEL"] = before
    return api
