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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

ITEMS = pd.DataFrame(
    {
        "item_id": [1, 2, 3, 4, 5, 6, 7, 8],
        "title": [
            "Heat (1995)",
            "Collateral (2004)",
            "Thief (1981)",
            "Toy Story (1995)",
            "Up (2009)",
            "Cars (2006)",
            "Alien (1979)",
            "Aliens (1986)",
        ],
        "genres": [
            "Action|Crime",
            "Action|Crime",
            "Crime|Drama",
            "Animation|Comedy",
            "Animation|Comedy",
            "Animation|Comedy",
            "Horror|Sci-Fi",
            "Action|Horror|Sci-Fi",
        ],
        "director": [
            "Michael Mann",
            "Michael Mann",
            "Michael Mann",
            "John Lasseter",
            "Pete Docter",
            "John Lasseter",
            "Ridley Scott",
            "James Cameron",
        ],
        "year": ["1995", "2004", "1981", "1995", "2009", "2006", "1979", "1986"],
    }
)

# user 10 likes crime, user 20 likes animation, user 30 watched many things;
# item 4 (Toy Story) is the most popular item overall.
INTERACTIONS = pd.DataFrame(
    {
        "user_id": [10, 10, 20, 20, 30, 30, 30, 30, 40],
        "item_id": [1, 2, 4, 5, 4, 7, 1, 5, 4],
        "timestamp": [100, 200, 100, 200, 100, 200, 300, 400, 50],
        "rating": [5.0, 4.0, 5.0, 4.0, 3.0, 4.0, 5.0, 2.0, 4.0],
    }
)

# One axis per cluster: crime (0), animation (1), sci-fi (2); a little spread inside.
VECTORS = np.array(
    [
        [1.0, 0.0, 0.0, 0.00],
        [0.9, 0.0, 0.0, 0.20],
        [0.8, 0.0, 0.1, 0.30],
        [0.0, 1.0, 0.0, 0.00],
        [0.0, 0.9, 0.0, 0.20],
        [0.0, 0.8, 0.1, 0.30],
        [0.0, 0.0, 1.0, 0.00],
        [0.1, 0.0, 0.9, 0.20],
    ],
    dtype=np.float32,
)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)


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
