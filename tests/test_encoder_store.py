"""A model built from ``--encoder PATH`` carries its checkpoint: PATH may go away."""

from __future__ import annotations

import shutil

import bentoml
import numpy as np

from recommender.build import build_and_save
from recommender.service_core import load
from tests.toy import INTERACTIONS, ITEMS


def _toy_with_encoder(folder, checkpoint, name: str) -> str:
    """The toy catalogue built as ``name`` with the encoder at ``checkpoint``; its tag."""
    ITEMS.to_csv(folder / "items.csv", index=False)
    INTERACTIONS.to_csv(folder / "interactions.csv", index=False)
    return build_and_save(
        folder / "items.csv",
        folder / "interactions.csv",
        name=name,
        encoder=str(checkpoint),
        progress=False,
    ).tag


def test_custom_encoder_is_stored_with_the_model_and_reused(tmp_path, tiny_encoder_path):
    ckpt = tmp_path / "my-bert"
    shutil.copytree(tiny_encoder_path, ckpt)

    def build():
        return _toy_with_encoder(tmp_path, ckpt, "enc-store-toy")

    first = build()
    before = load(first).encode(["a crime film"])
    second = build()  # same weights: the stored checkpoint is reused, not copied again
    shutil.rmtree(ckpt)

    model = load(second)
    tag = model.config.encoder.model_tag
    assert tag == load(first).config.encoder.model_tag
    assert [str(m.tag) for m in bentoml.models.list("enc-store-toy-encoder")] == [tag]
    np.testing.assert_allclose(model.encode(["a crime film"]), before, atol=1e-6)
    out = model.recommend(query="a crime film", k=2)
    assert len(out.items) == 2 and not out.cold_start


def test_the_packaged_default_encoder_is_not_copied(tiny_encoder):
    from bentoml.exceptions import NotFound

    from recommender.encoder_store import save_encoder

    tiny_encoder.name = "all-MiniLM-L6-v2"  # it ships with its package, in every Bento
    assert save_encoder(tiny_encoder, "default-enc-toy") is None
    try:
        bentoml.models.get("default-enc-toy-encoder")
    except NotFound:
        return
    raise AssertionError("the default encoder was copied into the store")


def test_the_encoder_service_serves_the_stored_checkpoint(tmp_path, tiny_encoder_path):
    """``encoder_service`` declares the model's stored checkpoint and encodes with it,
    the model's own vectors, once the folder it was built from is gone."""
    from recommender.services import ServiceSettings, encoder_service

    ckpt = tmp_path / "their-bert"
    shutil.copytree(tiny_encoder_path, ckpt)
    tag = _toy_with_encoder(tmp_path, ckpt, "enc-service-toy")
    shutil.rmtree(ckpt)
    model = load(tag)
    Encoder = encoder_service(
        model.config.encoder, settings=ServiceSettings(encode_precision="float32")
    )
    assert [m.tag for m in Encoder.models] == [
        bentoml.models.get(model.config.encoder.model_tag).tag
    ]
    texts = ["a crime film", "something funny"]
    np.testing.assert_allclose(Encoder.inner().encode(texts), model.encode(texts), atol=1e-6)
