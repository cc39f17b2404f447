"""``recbento refresh``: stored feedback folded into a new model version.

The tests that cross processes or workers run on both feedback backends (SQLite and
PostgreSQL).
"""

from __future__ import annotations

import os
import time

import pytest
from typer.testing import CliRunner


@pytest.fixture
def toy_store_model(toy_bundle):
    from recommender.bundle import save_to_store

    return save_to_store(toy_bundle, "refresh-toy")


@pytest.fixture(params=["sqlite", "postgresql"])
def feedback_db(request, tmp_path) -> str:
    """A fresh feedback store: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "fb.db")
    return request.getfixturevalue("pg_url")


def _recommender(tag):
    from recommender.bundle import load_from_store
    from recommender.serving import load_model

    bundle, tag = load_from_store(tag)
    return load_model(bundle, tag=tag)


def test_refresh_folds_feedback_into_a_new_version(toy_store_model, tmp_path):
    from recommender.feedback import FeedbackStore
    from recommender.refresh import refresh

    db = tmp_path / "fb.db"
    with FeedbackStore(db) as store:
        store.append(
            [
                {"user_id": 10, "item_id": 3, "timestamp": 900},
                {"user_id": 77, "item_id": 7, "timestamp": 901, "rating": 5.0},
            ]
        )
    old = _recommender(toy_store_model)
    assert old.recommend(user_id=77, k=2).cold_start is True
    assert 3 in [i.item_id for i in old.recommend(user_id=10, k=6).items]

    report = refresh("refresh-toy", feedback_db=db)
    assert report.tag != toy_store_model and report.n_events == 2 and report.feedback_seq == 2
    new = _recommender(report.tag)
    assert new.bundle.config["feedback_seq"] == 2
    assert new.recommend(user_id=77, k=2).cold_start is False
    assert 7 not in [i.item_id for i in new.recommend(user_id=77, k=3).items]
    assert 3 not in [i.item_id for i in new.recommend(user_id=10, k=6).items]
    assert len(new.bundle.interactions) == len(old.bundle.interactions) + 2


def test_a_second_refresh_folds_only_new_events(toy_store_model, feedback_db):
    from recommender.feedback import open_store
    from recommender.refresh import open_feedback, refresh

    db = feedback_db
    with open_store(db) as store:
        store.append([{"user_id": 10, "item_id": 3, "timestamp": 900}])
    first = refresh("refresh-toy", feedback_db=db)
    with open_store(db) as store:
        store.append([{"user_id": 20, "item_id": 6, "timestamp": 901}])
    rec = _recommender(first.tag)
    # a server on the refreshed model replays only the event after its feedback_seq
    replayed = open_feedback(rec, db)
    assert 6 not in [i.item_id for i in rec.recommend(user_id=20, k=6).items]
    replayed.close()
    second = refresh(first.tag, feedback_db=db)
    assert second.n_events == 1
    n = len(_recommender(second.tag).bundle.interactions)
    assert n == len(_recommender(toy_store_model).bundle.interactions) + 2


def test_replay_skips_events_for_items_no_longer_in_the_catalogue(toy_store_model, tmp_path):
    from recommender.feedback import FeedbackStore
    from recommender.refresh import open_feedback, refresh

    db = tmp_path / "fb.db"
    with FeedbackStore(db) as store:
        store.append([{"user_id": 10, "item_id": 4242, "timestamp": 5}])  # no catalogue check
        store.append([{"user_id": 10, "item_id": 3, "timestamp": 6}])
    rec = _recommender(toy_store_model)
    open_feedback(rec, db).close()
    assert 3 not in [i.item_id for i in rec.recommend(user_id=10, k=6).items]
    report = refresh("refresh-toy", feedback_db=db)
    assert report.n_events == 1 and report.n_skipped == 1


def test_cli_refresh_prints_the_new_tag(toy_store_model, feedback_db):
    from recommender.cli import app
    from recommender.feedback import open_store

    db = feedback_db
    with open_store(db) as store:
        store.append([{"user_id": 40, "item_id": 8, "timestamp": 70}])
    result = CliRunner().invoke(
        app, ["refresh", "--model", "refresh-toy", "--feedback-db", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert "refresh-toy:" in result.output.strip().splitlines()[-1]
    bad = CliRunner().invoke(app, ["refresh", "--model", "no-such-model"])
    assert bad.exit_code == 1


def test_feedback_taken_by_one_worker_counts_in_every_worker(toy_store_model, feedback_db):
    """Two server workers share one store: each sees the other's events before answering."""
    from recommender.refresh import open_feedback, record_feedback, sync_feedback
    from recommender.serving import Request
    from recommender.serving.stages.users import resolve_history

    db = feedback_db
    a, b = _recommender(toy_store_model), _recommender(toy_store_model)
    store_a, store_b = open_feedback(a, db), open_feedback(b, db)
    assert 3 in [i.item_id for i in b.recommend(user_id=10, k=6).items]

    record_feedback(a, store_a, [{"user_id": 10, "item_id": 3, "timestamp": 900}])
    record_feedback(b, store_b, [{"user_id": 20, "item_id": 6, "timestamp": 901}])
    # b's own call already pulled a's event; a catches up on b's before answering
    assert 3 not in [i.item_id for i in b.recommend(user_id=10, k=6).items]
    assert sync_feedback(a, store_a) == 1
    assert 6 not in [i.item_id for i in a.recommend(user_id=20, k=6).items]
    assert sync_feedback(a, store_a) == 0 and sync_feedback(b, store_b) == 0
    # nothing is applied twice: user 10's live history holds the event once
    history = resolve_history(a, Request(user_id=10))
    assert history.items.tolist().count(a.catalogue.row(3)) == 1
    store_a.close()
    store_b.close()


def test_the_feedback_setting_takes_a_url_or_a_path(monkeypatch, tmp_path):
    from pathlib import Path

    from recommender.refresh import feedback_db_path

    url = "postgresql://rec:pw@db.internal:5432/feedback?sslmode=require"
    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", url)
    assert feedback_db_path("movies:v1") == url  # kept whole, not mangled into a path
    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    assert feedback_db_path("movies:v1") == tmp_path / "fb.db"
    monkeypatch.delenv("RECBENTO_FEEDBACK_DB")
    assert feedback_db_path("movies:v1") == Path(os.environ["BENTOML_HOME"]) / (
        "recbento/feedback/movies.db"
    )


def test_a_database_outage_keeps_answers_up_and_refuses_feedback(toy_store_model):
    """PostgreSQL down: answers go out (stale), feedback is a 503; back up: both recover."""
    from recommender.errors import StorageError
    from recommender.refresh import open_feedback, record_feedback, sync_feedback
    from tests.pg import PostgresServer, with_schema

    server = PostgresServer()  # a server of its own, to stop and start again
    try:
        server.start()
        db = with_schema(server.url)
        a, b = _recommender(toy_store_model), _recommender(toy_store_model)
        store_a, store_b = open_feedback(a, db), open_feedback(b, db)
        record_feedback(a, store_a, [{"user_id": 10, "item_id": 3, "timestamp": 900}])

        server.stop()
        assert sync_feedback(b, store_b) == 0  # no exception: b answers with what it has
        assert 3 in [i.item_id for i in b.recommend(user_id=10, k=6).items]
        with pytest.raises(StorageError) as err:
            record_feedback(a, store_a, [{"user_id": 20, "item_id": 6, "timestamp": 901}])
        assert err.value.status_code == 503 and err.value.field == "RECBENTO_FEEDBACK_DB"

        server.start()  # the pools' old connections are broken: reads retry on new ones
        # the pool reconnects with a backoff grown during the outage: within seconds, the
        # next syncs find the server again (meanwhile each answers with what it has)
        deadline = time.monotonic() + 30
        synced = sync_feedback(b, store_b)
        while synced == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            synced = sync_feedback(b, store_b)
        assert synced == 1
        assert 3 not in [i.item_id for i in b.recommend(user_id=10, k=6).items]
        out = record_feedback(a, store_a, [{"user_id": 20, "item_id": 6, "timestamp": 901}])
        assert out == {"stored": 1, "total": 2}
        store_a.close()
        store_b.close()
    finally:
        server.remove()


def test_moving_a_refreshed_model_to_postgresql_needs_its_old_events(
    toy_store_model, tmp_path, pg_url
):
    from recommender.cli import app
    from recommender.errors import InputError
    from recommender.feedback import open_store
    from recommender.refresh import open_feedback, record_feedback, refresh

    old = str(tmp_path / "fb.db")
    with open_store(old) as store:
        store.append([{"user_id": 10, "item_id": 3, "timestamp": 900}] * 2)
    report = refresh("refresh-toy", feedback_db=old)  # folded in: seq 1 and 2
    rec = _recommender(report.tag)
    with pytest.raises(InputError, match="copy-feedback") as err:
        open_feedback(rec, pg_url)  # empty: its first two events would be skipped
    assert err.value.field == "RECBENTO_FEEDBACK_DB"

    result = CliRunner().invoke(app, ["copy-feedback", "--source", old, "--target", pg_url])
    assert result.exit_code == 0, result.output
    assert "copied 2 feedback events" in result.output
    store = open_feedback(rec, pg_url)
    record_feedback(rec, store, [{"user_id": 20, "item_id": 6, "timestamp": 901}])
    assert store.all_events().index.tolist() == [1, 2, 3]
    assert 6 not in [i.item_id for i in rec.recommend(user_id=20, k=6).items]  # seq 3 applied
    store.close()
