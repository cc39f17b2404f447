"""Typed feedback: event types, their weights, dislikes, and stores written before types.

Storage tests run on both feedback backends (SQLite and PostgreSQL).
"""

from __future__ import annotations

import sqlite3
import typing

import numpy as np
import pandas as pd
import pytest

from recommender.config import EVENT_TYPES, EventWeights, ModelConfig
from recommender.errors import InputError


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "fb.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def model(toy_bundle):
    from recommender.serving import load_model

    return load_model(toy_bundle, tag="toy:v1")


def _ids(model, **req) -> list:
    return [i.item_id for i in model.recommend(**req).items]


# --------------------------------------------------------------------- config
def test_event_weights_round_trip_and_reject_unknown_types() -> None:
    config = ModelConfig.from_config({"event_weights": {"purchase": 5, "click": 0.25}})
    assert config.event_weights.weight("purchase") == 5.0
    assert config.event_weights.weight("click") == 0.25
    assert config.event_weights.weight(None) == 1.0  # an old event: a view, as before
    assert ModelConfig.from_config(config.get_config()) == config
    with pytest.raises(InputError, match=r"unknown key\(s\) \['purchased'\]"):
        EventWeights.from_config({"purchased": 2})
    with pytest.raises(InputError, match=r"event_weights.like=-1: expected a finite number >= 0"):
        EventWeights(like=-1)
    with pytest.raises(InputError, match="type='bought'"):
        EventWeights().weight("bought")


def test_api_accepts_exactly_the_event_types() -> None:
    from recommender.services.schemas import EventType

    assert typing.get_args(EventType) == EVENT_TYPES


# -------------------------------------------------------------------- storage
def test_types_and_request_ids_are_stored(target) -> None:
    from recommender.feedback import open_store

    with open_store(target) as store:
        store.append(
            [
                {"user_id": 1, "item_id": 10, "timestamp": 5},
                {"user_id": 1, "item_id": 11, "timestamp": 6, "type": "click", "request_id": "r1"},
                {"user_id": 2, "item_id": 10, "timestamp": 7, "type": "dislike"},
            ]
        )
        df = store.all_events()
        assert df["type"].tolist() == [None, "click", "dislike"]
        assert df["request_id"].tolist() == [None, "r1", None]
        assert store.dislikes()["user_id"].tolist() == [2]
        assert store.dislikes(until=2).empty
        with pytest.raises(InputError, match=r"events\[1\].type='bought': expected one of"):
            store.append(
                [
                    {"user_id": 1, "item_id": 10, "timestamp": 5},
                    {"user_id": 1, "item_id": 10, "timestamp": 5, "type": "bought"},
                ]
            )
        with pytest.raises(InputError, match=r"events\[0\].request_id=7"):
            store.append([{"user_id": 1, "item_id": 10, "timestamp": 5, "request_id": 7}])
        assert store.count() == 3


def test_a_sqlite_store_written_before_types_is_migrated(tmp_path) -> None:
    from recommender.feedback import FeedbackStore

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
            item_id TEXT NOT NULL, timestamp INTEGER NOT NULL, rating REAL,
            weight REAL NOT NULL, received_at REAL NOT NULL DEFAULT 0);
        INSERT INTO events (user_id, item_id, timestamp, rating, weight)
            VALUES ('7', '"a"', 100, 4.0, 4.0);
        PRAGMA user_version=1;
        """
    )
    conn.close()
    with FeedbackStore(path) as store:
        store.append([{"user_id": 7, "item_id": "b", "timestamp": 101, "type": "like"}])
        df = store.all_events()
        assert df["item_id"].tolist() == ["a", "b"]
        assert df["type"].tolist() == [None, "like"]
        assert df["weight"].tolist() == [4.0, 1.0]
    with FeedbackStore(path) as store:  # opening it again changes nothing
        assert store.count() == 2
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_postgres_store_written_before_types_is_migrated(pg_url) -> None:
    import psycopg

    from recommender.feedback import open_store

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE feedback_events (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " user_id TEXT NOT NULL, item_id TEXT NOT NULL, timestamp BIGINT NOT NULL,"
            " rating DOUBLE PRECISION, weight DOUBLE PRECISION NOT NULL,"
            " received_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        conn.execute("COMMENT ON TABLE feedback_events IS 'recbento feedback events, schema 1'")
        conn.execute(
            "INSERT INTO feedback_events (user_id, item_id, timestamp, weight) "
            "VALUES ('7', '\"a\"', 100, 1.0)"
        )
    with open_store(pg_url) as store:
        store.append([{"user_id": 7, "item_id": "b", "timestamp": 101, "type": "purchase"}])
        assert store.all_events()["type"].tolist() == [None, "purchase"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        comment = conn.execute("SELECT obj_description('feedback_events'::regclass)").fetchone()
    assert comment[0].endswith("schema 2")


# --------------------------------------------------------------------- weights
def test_weigh_events_applies_type_weights_and_leaves_out_non_interactions() -> None:
    from recommender.feedback_rows import weigh_events

    events = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1, 1],
            "item_id": [1, 2, 3, 4, 5],
            "timestamp": [1, 2, 3, 4, 5],
            "weight": [1.0, 1.0, 1.0, 4.0, 1.0],
            "type": [None, "impression", "dislike", "rating", "purchase"],
        }
    )
    history, dislikes = weigh_events(events, EventWeights(purchase=3.0, rating=0.5))
    assert history["item_id"].tolist() == [1, 4, 5]
    assert history["weight"].tolist() == [1.0, 2.0, 3.0]
    assert "type" not in history.columns
    assert dislikes["item_id"].tolist() == [3]
    untyped = events.drop(columns="type")
    assert weigh_events(untyped)[0] is untyped  # a log without types is used as it is


def test_live_feedback_weighs_types_and_ignores_impressions(model, tmp_path) -> None:
    from recommender.refresh import open_feedback, record_feedback
    from recommender.serving import Request
    from recommender.serving.stages.users import resolve_history

    store = open_feedback(model, tmp_path / "fb.db")
    record_feedback(
        model,
        store,
        [
            {"user_id": 50, "item_id": 7, "timestamp": 10, "type": "impression"},
            {"user_id": 50, "item_id": 8, "timestamp": 11, "type": "impression"},
        ],
    )
    assert len(resolve_history(model, Request(user_id=50))) == 0
    assert model.recommend(user_id=50, k=3).cold_start is True  # shown is not consumed
    record_feedback(
        model, store, [{"user_id": 50, "item_id": 7, "timestamp": 12, "type": "purchase"}]
    )
    h = resolve_history(model, Request(user_id=50))
    assert h.items.tolist() == [model.catalogue.row(7)] and h.weights.tolist() == [3.0]
    store.close()


def test_sequences_for_training_leave_out_impressions_and_dislikes() -> None:
    from recommender.train import sequences_from_interactions

    df = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 1],
            "item_id": [10, 20, 30, 20],
            "timestamp": [1, 2, 3, 4],
            "type": ["view", "impression", "dislike", "click"],
        }
    )
    users, seqs = sequences_from_interactions(df, [10, 20, 30])
    assert users.tolist() == [1] and seqs[0].tolist() == [0, 1]


# -------------------------------------------------------------------- dislikes
def test_lower_disliked_neighbours_follows_similarity() -> None:
    from recommender.serving.stages.relevance import lower_disliked_neighbours
    from tests.toy import VECTORS

    row = np.ones(len(VECTORS), dtype=np.float32)
    row[0] = 3.0  # some spread
    out = lower_disliked_neighbours(row, VECTORS, np.array([6]), 1.0)  # Alien disliked
    drop = row - out
    assert drop[6] > drop[7] > 0  # Alien itself, then Aliens, its close neighbour
    assert np.allclose(drop[3:5], 0)  # Toy Story and Up are unrelated: untouched
    assert lower_disliked_neighbours(row, VECTORS, np.array([6]), 0.0) is row


def test_a_dislike_removes_the_item_and_lowers_its_neighbours(model, target) -> None:
    from recommender.refresh import open_feedback, record_feedback
    from recommender.serving import Request
    from recommender.serving.stages.relevance import relevance
    from recommender.serving.stages.users import user_states

    def scores() -> np.ndarray:
        reqs = [Request(user_id=30)]
        return relevance(model, user_states(model, reqs), reqs)[0][0]

    # user 30 watched crime, animation and Alien (7); Aliens (8) is its close neighbour
    assert 7 in _ids(model, user_id=30, k=8, exclude_seen=False)
    before = scores()
    store = open_feedback(model, target)
    record_feedback(
        model, store, [{"user_id": 30, "item_id": 7, "timestamp": 500, "type": "dislike"}]
    )
    assert 7 not in _ids(model, user_id=30, k=8, exclude_seen=False)  # never again
    drop = before - scores()
    rows = model.catalogue.rows([7, 8, 4, 5], "items")
    assert drop[rows[0]] > drop[rows[1]] > 0  # Alien, then Aliens
    assert np.allclose(drop[rows[2:]], 0)  # animation is unrelated
    assert 7 not in _ids(model, user_id=30, k=8)
    store.close()

    # a server started later still knows it, also after a refresh folded the events
    from recommender.serving import load_model

    again = load_model(model.bundle, tag="toy:v1")
    again.config = ModelConfig.from_config({**model.bundle.config, "feedback_seq": 1})
    again.live.seq = 1
    reopened = open_feedback(again, target)
    assert 7 not in _ids(again, user_id=30, k=8, exclude_seen=False)
    reopened.close()


def test_refresh_weighs_typed_events(toy_bundle, target) -> None:
    from recommender.bundle import load_from_store, save_to_store
    from recommender.feedback import open_store
    from recommender.refresh import refresh

    save_to_store(toy_bundle, "typed-toy")
    with open_store(target) as store:
        store.append(
            [
                {"user_id": 10, "item_id": 3, "timestamp": 900, "type": "purchase"},
                {"user_id": 10, "item_id": 4, "timestamp": 901, "type": "impression"},
                {"user_id": 10, "item_id": 5, "timestamp": 902, "type": "dislike"},
            ]
        )
    report = refresh("typed-toy", feedback_db=target)
    assert report.n_events == 1 and report.feedback_seq == 3
    bundle, _ = load_from_store(report.tag)
    new = bundle.interactions[bundle.interactions["timestamp"] >= 900]
    assert new["item_id"].tolist() == [3] and new["weight"].tolist() == [3.0]
    assert "type" not in bundle.interactions.columns
