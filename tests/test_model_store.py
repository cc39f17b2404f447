"""The model store a deployment shares with its scheduled refresh, and retraining in it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import bentoml
import numpy as np
import pytest
from typer.testing import CliRunner

from recommender.bundle import load_from_store, save_to_store
from recommender.model_store import SharedModelStore, newest_version, use_shared_store
from recommender.refresh import refresh

#: A tower small enough to train in a second; lr 0 keeps its weights where they start.
FROZEN = {"dim": 8, "n_heads": 2, "max_len": 4, "max_epochs": 2, "lr": 0.0, "cooc": False}


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """RECBENTO_MODEL_STORE set; the process's model store is put back afterwards."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    before = BentoMLContainer.model_store.get()
    monkeypatch.setenv("RECBENTO_MODEL_STORE", str(tmp_path / "models"))
    yield tmp_path / "models"
    BentoMLContainer.model_store.set(before)


@pytest.fixture
def events_db(tmp_path):
    from recommender.feedback import FeedbackStore

    db = tmp_path / "fb.db"
    with FeedbackStore(db) as store:
        store.append([{"user_id": 10, "item_id": 3, "timestamp": 900}])
    return db


def test_the_packed_version_is_copied_in_once(shared, toy_bundle):
    packed = save_to_store(toy_bundle, "seeded")  # in the store used until now
    assert use_shared_store([packed, "absent:abc123"]) == shared
    assert (shared / "seeded" / packed.split(":")[1] / "model.yaml").is_file()
    assert load_from_store(packed)[1] == packed  # now read from the shared store
    assert not (shared / "absent").exists()
    assert use_shared_store([packed]) == shared  # a second start copies nothing


def test_a_version_appears_whole_or_not_at_all(shared):
    store = SharedModelStore(shared)
    with pytest.raises(RuntimeError), store.register("line:v1") as path:
        (Path(path) / "weights").write_bytes(b"half")
        assert not (shared / "line" / "v1").exists()  # invisible while it is written
        raise RuntimeError("the refresh died half-way")
    assert not (shared / "line" / "v1").exists()
    assert not list(store.incoming.iterdir())  # and nothing is left behind
    with store.register("line:v2") as path:
        (Path(path) / "weights").write_bytes(b"whole")
    assert (shared / "line" / "v2" / "weights").read_bytes() == b"whole"
    assert (shared / "line" / "latest").read_text() == "v2"


def test_a_packed_version_follows_its_own_refreshes_only(
    shared, toy_bundle, events_db, monkeypatch
):
    packed = save_to_store(toy_bundle, "line")
    use_shared_store([packed])
    assert newest_version(packed) == packed
    first = refresh(packed, feedback_db=events_db).tag
    assert newest_version(packed) == first
    # a new image packs another version of the same name, saved after the refresh:
    # it is the latest by name, but the old version's line does not jump to it
    other = save_to_store(toy_bundle, "line")
    assert newest_version("line") == other and newest_version(other) == other
    assert newest_version(packed) == first
    second = refresh(first, feedback_db=events_db).tag
    assert newest_version(packed) == second
    bentoml.models.delete(first)  # pruning an old version keeps the line whole
    assert newest_version(packed) == second
    # what the CronJob runs: no --model, the deployment's model followed to its newest
    monkeypatch.setenv("RECBENTO_MODEL", packed)
    assert refresh(feedback_db=events_db).previous == second
    monkeypatch.delenv("RECBENTO_MODEL_STORE")
    assert newest_version(packed) == packed  # without a shared store a pin stays a pin


def test_pods_follow_the_line_and_roll_back_when_its_newest_version_is_deleted(
    shared, toy_bundle, events_db, monkeypatch
):
    from recommender.services.handlers import Handlers
    from recommender.services.reload import ModelWatcher
    from recommender.services.schemas import RecommendBody

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(events_db))
    packed = save_to_store(toy_bundle, "roll")
    use_shared_store([packed])
    first = refresh(packed).tag
    handlers = Handlers.open(newest_version(packed))  # a pod (re)started after a refresh
    watcher = ModelWatcher(handlers, packed, interval=0)
    assert handlers.model.tag == first and watcher.check() is False
    monkeypatch.setenv("RECBENTO_MODEL", packed)  # what the CronJob refreshes: the pods' line
    second = refresh().tag
    assert watcher.check() is True and handlers.model.tag == second
    bentoml.models.delete(second)  # a bad refresh, taken out
    assert watcher.check() is True and handlers.model.tag == first
    # the event stays applied after both swaps: user 10's item 3 is not offered again
    answer = handlers.recommend(RecommendBody(user_id=10, k=6))
    assert answer["model"] == first and 3 not in [i["item_id"] for i in answer["items"]]
    handlers.close()


def _tower(bundle):
    from recommender.build import train_tower
    from recommender.schemas import Tables

    tables = Tables(bundle.items, bundle.interactions, bundle.users)
    return train_tower(tables, bundle.item_vectors, config=FROZEN, progress=False)


def _weights(tower) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in tower.net_.named_parameters()}


def test_training_can_start_from_a_previous_tower(toy_bundle):
    from recommender.build import train_tower
    from recommender.errors import InputError
    from recommender.schemas import Tables

    previous = _tower(toy_bundle)
    tables = Tables(toy_bundle.items, toy_bundle.interactions, toy_bundle.users)
    cfg = {**FROZEN, "random_state": 7}  # another random start
    warm = train_tower(tables, toy_bundle.item_vectors, config=cfg, warm_start=previous)
    cold = train_tower(tables, toy_bundle.item_vectors, config=cfg)
    for name, value in _weights(previous).items():
        np.testing.assert_array_equal(_weights(warm)[name], value, err_msg=name)
    assert any(not np.array_equal(_weights(cold)[k], v) for k, v in _weights(previous).items())
    with pytest.raises(InputError, match="warm_start") as err:
        train_tower(
            tables, toy_bundle.item_vectors, config={**FROZEN, "dim": 16}, warm_start=previous
        )
    assert err.value.field == "warm_start"


def test_refresh_retrain_keeps_the_previous_towers_settings_and_weights(
    toy_bundle, events_db, tmp_path
):
    from recommender.cli import app

    trained = dataclasses.replace(toy_bundle, components={"tower": _tower(toy_bundle)})
    tag = save_to_store(trained, "retrain-toy")
    result = CliRunner().invoke(
        app, ["refresh", "--model", tag, "--feedback-db", str(events_db), "--retrain"]
    )
    assert result.exit_code == 0, result.output
    assert "training epochs" in result.output
    new_tag = result.output.strip().splitlines()[-1]
    new, _ = load_from_store(new_tag)
    tower = new.components["tower"]
    assert tower.get_config() == trained.components["tower"].get_config()
    assert tower.summary_["epochs"]  # it did train, on the log with the new event
    for name, value in _weights(trained.components["tower"]).items():
        np.testing.assert_array_equal(_weights(tower)[name], value, err_msg=name)
    assert (
        new.config["feedback_seq"] == 1
        and len(new.interactions) == len(toy_bundle.interactions) + 1
    )
