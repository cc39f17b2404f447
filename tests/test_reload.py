"""A model served by name follows its latest version, swapped in with no failed request."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from recommender.bundle import save_to_store
from recommender.services.handlers import Handlers
from recommender.services.reload import ModelWatcher, follows_latest, start_demo_training
from recommender.services.schemas import FeedbackBody, RecommendBody


@pytest.fixture
def served(toy_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    first = save_to_store(toy_bundle, "reload-toy")
    return Handlers.open("reload-toy"), first


def test_a_newer_version_is_swapped_in_while_requests_keep_coming(served, toy_bundle):
    handlers, first = served
    ev = {"user_id": 10, "item_id": 3, "timestamp": 10**9}
    handlers.feedback(FeedbackBody(events=[ev]), None)
    watcher = ModelWatcher(handlers, "reload-toy", interval=0)
    assert watcher.check() is False  # nothing newer yet

    answers, errors = [], []
    done = threading.Event()

    def traffic():
        while not done.is_set():
            try:
                answers.append(handlers.recommend(RecommendBody(user_id=10, k=3)))
            except Exception as exc:  # noqa: BLE001 - any failure is what we look for
                errors.append(exc)

    t = threading.Thread(target=traffic)
    t.start()
    try:
        changed = dataclasses.replace(
            toy_bundle, config={**toy_bundle.config, "serving": {"n_candidates": 5}}
        )
        second = save_to_store(changed, "reload-toy")
        assert watcher.check() is True
        after = handlers.recommend(RecommendBody(user_id=10, k=3))
    finally:
        done.set()
        t.join()
    assert not errors
    assert {a["model"] for a in answers} <= {first, second}
    assert after["model"] == second and handlers.model.serving.n_candidates == 5
    # the acknowledged event counts in the new version too: item 3 stays excluded
    assert 3 not in [i["item_id"] for i in after["items"]]
    assert watcher.check() is False


def test_only_names_follow_the_latest_version():
    assert follows_latest("movies") and follows_latest("movies:latest")
    assert not follows_latest("movies:2w3xq7")  # a pinned version (what a Bento packs)


def test_the_demo_is_not_trained_twice_or_when_turned_off(toy_bundle, monkeypatch):
    tag = save_to_store(toy_bundle, "demo-like")
    monkeypatch.setenv("RECBENTO_TRAIN_DEMO", "0")
    assert start_demo_training(tag) is None
    monkeypatch.setenv("RECBENTO_TRAIN_DEMO", "1")
    import bentoml

    # a version whose metadata lists a tower (what a trained build records) is done
    with bentoml.models.create("demo-like", metadata={"components": ["tower"]}) as m:
        pass
    assert start_demo_training(str(m.tag)) is None


@pytest.mark.slow
def test_the_demo_is_trained_in_the_background_and_then_swapped_in(served, toy_bundle):
    handlers, first = served
    proc = start_demo_training(first)
    assert proc is not None
    assert start_demo_training(first) is None  # one training at a time
    assert proc.wait(timeout=300) == 0
    watcher = ModelWatcher(handlers, "reload-toy", interval=0)
    assert watcher.check() is True
    assert handlers.model.tower is not None and handlers.model.tag != first
    assert len(handlers.recommend(RecommendBody(user_id=10, k=3))["items"]) == 3
