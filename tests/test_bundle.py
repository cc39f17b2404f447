from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import bentoml
import numpy as np
import pandas as pd
import pytest

from recommender.build import build_bundle
from recommender.bundle import Bundle, load_from_store, save_to_store
from recommender.errors import BundleError, NotFoundError
from recommender.schemas import validate_tables
from recommender.serving import load_model


@pytest.fixture
def built(items, interactions, tiny_encoder):
    return build_bundle(validate_tables(items, interactions), tiny_encoder, progress=False)


def test_build_encodes_every_item_and_user(built, items):
    assert built.item_vectors.shape == (len(items), 32)
    assert sorted(built.user_ids) == [10, 20, 30, 40]
    np.testing.assert_allclose(np.linalg.norm(built.user_vectors, axis=1), 1.0, atol=1e-5)
    assert "groups" in built.components


def test_save_load_gives_identical_recommendations(built, tmp_path):
    built.save(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.json",
        "items.parquet",
        "item_vectors.safetensors",
        "interactions.parquet",
        "user_vectors.safetensors",
        "groups.json",
        "groups.safetensors",
    } <= files
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)
    loaded = Bundle.load(tmp_path)
    a, b = load_model(built), load_model(loaded)
    for user in (10, 20, 30, 40, 999):
        ra, rb = a.recommend(user_id=user, k=4), b.recommend(user_id=user, k=4)
        assert [i.item_id for i in ra.items] == [i.item_id for i in rb.items]
        assert [i.score for i in ra.items] == pytest.approx([i.score for i in rb.items])
        assert ra.group == rb.group


def test_config_is_plain_json_with_versions(built, tmp_path):
    built.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["encoder"]["name"] == "tiny"
    assert {"bentoml", "torch", "transformers"} <= set(cfg["versions"])
    assert cfg["components"] == ["graph", "groups"]


def test_store_round_trip_and_versions(built):
    tag1 = save_to_store(built, "bundle-rt")
    tag2 = save_to_store(built, "bundle-rt")
    assert tag1 != tag2
    loaded, tag = load_from_store("bundle-rt")
    assert tag == str(bentoml.models.get("bundle-rt:latest").tag)
    pd.testing.assert_frame_equal(loaded.items, built.items)


def test_failed_save_leaves_store_unchanged(built, monkeypatch):
    before = {str(m.tag) for m in bentoml.models.list()}

    def broken(self, path):
        (Path(path) / "partial.bin").write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(Bundle, "save", broken)
    with pytest.raises(OSError):
        save_to_store(built, "never-there")
    assert {str(m.tag) for m in bentoml.models.list()} == before


def test_unknown_model_is_not_found():
    with pytest.raises(NotFoundError) as info:
        load_from_store("does-not-exist")
    assert info.value.field == "model"


def test_future_format_is_refused(built, tmp_path):
    built.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BundleError, match="format_version"):
        Bundle.load(tmp_path)


TINY_TRAIN = {
    "dim": 8,
    "n_layers": 1,
    "n_heads": 1,
    "max_len": 8,
    "max_epochs": 3,
    "patience": 2,
    "batch_size": 4,
    "num_threads": 1,
    "device": "cpu",
}


@pytest.fixture
def trained(items, interactions, tiny_encoder):
    """The toy catalogue built with a (tiny) trained tower."""
    return build_bundle(
        validate_tables(items, interactions),
        tiny_encoder,
        progress=False,
        train=True,
        train_config=TINY_TRAIN,
    )


def test_trained_bundle_round_trips_and_serves(trained, interactions, tiny_encoder, tmp_path):
    bundle = trained
    assert "tower" in bundle.components
    bundle.save(tmp_path)
    assert (tmp_path / "user_tower.safetensors").is_file()
    a, b = load_model(bundle), load_model(Bundle.load(tmp_path))
    for user in (10, 20, 30):
        ra, rb = a.recommend(user_id=user, k=3), b.recommend(user_id=user, k=3)
        assert [i.item_id for i in ra.items] == [i.item_id for i in rb.items]
        assert [i.score for i in ra.items] == pytest.approx([i.score for i in rb.items])
        seen = set(interactions.loc[interactions.user_id == user, "item_id"])
        assert seen.isdisjoint(i.item_id for i in ra.items)
    # a query on top of a history still answers through the tower + text blend
    a.encode_fn = tiny_encoder.encode
    assert len(a.recommend(user_id=10, query="crime", k=2).items) == 2


def test_trained_lists_keep_a_slot_for_items_new_to_the_tower(trained, items, interactions):
    """Items with no interactions are text-only to the tower; one of them ends each list."""
    new = set(items["item_id"]) - set(interactions["item_id"])
    assert new == {3, 6, 8}
    rec = load_model(trained)
    assert {rec.catalogue.ids[i] for i in np.flatnonzero(rec.new_items)} == new
    for user in (10, 20, 30):
        got = rec.recommend(user_id=user, k=4, rerank=False).items
        assert new & {i.item_id for i in got}, user
        scores = [i.score for i in got]
        assert scores == sorted(scores, reverse=True)

    # the slot takes the best new item even when the tower ranks it last of all
    plain = rec.with_serving(new_item_slots=0)
    full = [i.item_id for i in plain.recommend(user_id=10, k=6, rerank=False).items]
    only_new = np.zeros(rec.n_items, dtype=bool)
    only_new[rec.catalogue.row(full[-1])] = True
    rec = dataclasses.replace(rec, new_items=only_new)
    got = [i.item_id for i in rec.recommend(user_id=10, k=3, rerank=False).items]
    assert got == full[:2] + [full[-1]]
    assert [i.item_id for i in plain.recommend(user_id=10, k=3, rerank=False).items] == full[:3]


def test_the_new_item_slot_obeys_filters_and_exclusions(trained):
    """The slot's item passes the request's filters and is never one the request
    excluded: the best new item that may be shown, else none."""
    rec = load_model(trained)
    plain = rec.with_serving(new_item_slots=0)
    full = [i.item_id for i in plain.recommend(user_id=10, k=6, rerank=False).items]
    assert full == [8, 3, 7, 5, 6, 4]  # user 10 saw 1 and 2
    new = np.zeros(rec.n_items, dtype=bool)
    new[[rec.catalogue.row(7), rec.catalogue.row(6)]] = True  # Alien (Horror), Cars (Animation)
    rec = dataclasses.replace(rec, new_items=new)

    def top2(**req) -> list[int]:
        return [i.item_id for i in rec.recommend(user_id=10, k=2, rerank=False, **req).items]

    assert top2() == [8, 7]
    assert top2(exclude_items=[7]) == [8, 6]
    assert top2(include={"genres": ["Action", "Crime", "Animation"]}) == [8, 6]
    assert top2(exclude={"genres": ["Horror"]}) == [3, 6]
    assert top2(include={"genres": ["Action", "Crime", "Horror"]}, exclude_items=[7]) == [8, 3]


def test_trained_build_chooses_its_serving_defaults_on_validation(trained, tmp_path):
    """The graph weight, hotness and freshness a trained build serves with are the ones
    its validation cases scored best, recorded in config.json; requests may still set them."""
    tuned = trained.config["tuned"]
    assert tuned["n_users"] == 1  # user 30 is the only one with 3+ interactions
    chosen = tuned["chosen"]
    assert set(chosen) == {"kg_weight_trained", "hotness", "freshness"}
    assert len(tuned["grid"]) == 15
    assert tuned["val_ndcg@10"] == max([tuned["baseline_val_ndcg@10"], *tuned["grid"].values()])
    trained.save(tmp_path)
    rec = load_model(Bundle.load(tmp_path))
    assert rec.serving.kg_weight_trained == chosen["kg_weight_trained"]
    assert rec.reranker.config.hotness == chosen["hotness"]
    assert rec.reranker.config.freshness == chosen["freshness"]
    assert rec.config.tuned == tuned
    got = rec.recommend(user_id=10, k=2, knobs={"hotness": 0.3, "kg_weight": 0.0}).items
    assert len(got) == 2


def test_the_graph_does_not_pick_the_new_item_slot(trained):
    """The slot goes to the new item the model scores best before the graph's boost, even
    where the graph ranks another new item above it."""
    rec = load_model(trained)
    every = rec.with_serving(new_item_slots=0)

    def ranked(kg: float) -> list[int]:
        got = every.recommend(user_id=10, k=8, rerank=False, knobs={"kg_weight": kg}).items
        return [i.item_id for i in got]

    plain, boosted = ranked(0.0), ranked(5.0)
    # two items below the graph's first whose order the graph swaps
    a, b = next(
        (a, b)
        for a in boosted[1:]
        for b in boosted[1:]
        if plain.index(a) < plain.index(b) and boosted.index(b) < boosted.index(a)
    )
    only = np.zeros(rec.n_items, dtype=bool)
    only[[rec.catalogue.row(a), rec.catalogue.row(b)]] = True
    pretend = dataclasses.replace(rec, new_items=only)  # a and b are the new items
    got = pretend.recommend(user_id=10, k=2, rerank=False, knobs={"kg_weight": 5.0}).items
    assert [i.item_id for i in got] == [boosted[0], a]
