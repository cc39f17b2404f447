from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.batch import run_batch
from recommender.errors import InputError
from recommender.serving import Request, load_model


@pytest.fixture
def scorer(toy_bundle):
    rec = load_model(toy_bundle, encode=lambda texts: np.tile([0, 0, 1, 0], (len(texts), 1)))
    calls: list[list] = []

    def score(requests):
        calls.append([r["user_id"] for r in requests])
        return [r.to_dict() for r in rec.recommend_batch([Request(**q) for q in requests])]

    score.calls = calls
    return score


def test_resume_skips_finished_users_and_loses_nothing(tmp_path, scorer):
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [10, 20, 30, 40, 50]}).to_csv(users, index=False)
    out = tmp_path / "recs.csv"

    def flaky(requests):
        if 30 in [r["user_id"] for r in requests]:
            raise KeyboardInterrupt  # the run is stopped halfway
        return scorer(requests)

    with pytest.raises(KeyboardInterrupt):
        run_batch(users, out, k=2, batch_size=2, scorer=flaky, progress=False)
    assert not out.exists()
    first_run = [u for call in scorer.calls for u in call]
    assert {10, 20} <= set(first_run) and 30 not in first_run
    stats = run_batch(users, out, k=2, batch_size=2, scorer=scorer, progress=False)
    assert stats["resumed (already done)"] == len(first_run)
    every_scored = [u for call in scorer.calls for u in call]
    assert sorted(every_scored) == [10, 20, 30, 40, 50]  # each user scored exactly once
    recs = pd.read_csv(out)
    assert recs["user_id"].tolist() == [10, 10, 20, 20, 30, 30, 40, 40, 50, 50]
    assert not (tmp_path / "recs.csv.parts").exists()


def test_queries_are_passed_through(tmp_path, scorer):
    users = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": [1, 2], "query": ["space", None]}).to_parquet(users)
    seen = []

    def spy(requests):
        seen.extend(requests)
        return scorer(requests)

    run_batch(users, tmp_path / "r.parquet", k=1, scorer=spy, progress=False)
    assert seen[0]["query"] == "space" and "query" not in seen[1]


def test_input_without_user_id_is_refused(tmp_path, scorer):
    pd.DataFrame({"uid": [1]}).to_csv(tmp_path / "u.csv", index=False)
    with pytest.raises(InputError, match="user_id"):
        run_batch(tmp_path / "u.csv", tmp_path / "r.csv", scorer=scorer, progress=False)


def test_transient_failures_are_retried(tmp_path, scorer, monkeypatch):
    from recommender import batch

    monkeypatch.setattr(batch.time, "sleep", lambda s: None)
    pd.DataFrame({"user_id": [10]}).to_csv(tmp_path / "u.csv", index=False)
    failures = iter([True, True, False])

    def overloaded(requests):
        if next(failures):
            raise batch._Retryable("503 process is overloaded")
        return scorer(requests)

    stats = run_batch(
        tmp_path / "u.csv", tmp_path / "r.csv", k=1, scorer=overloaded, retries=3, progress=False
    )
    assert stats["rows"] == 1
