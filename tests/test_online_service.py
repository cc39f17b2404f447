"""The service's online side: request ids, impressions, exclude_shown, experiment arms.

Calls :class:`recommender.services.handlers.Handlers` directly on the toy model, on both
feedback backends.
"""

from __future__ import annotations

import re

import pytest

from recommender.services.schemas import (
    FeedbackBody,
    OnlineMetricsBody,
    RecommendBatchBody,
    RecommendBody,
    RecommendGroupBody,
)
from recommender.services.settings import ServiceSettings


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "fb.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def versions(toy_bundle) -> tuple[str, str]:
    """Two versions of the toy model in the model store (the second weighs clicks more)."""
    import dataclasses

    from recommender.bundle import save_to_store

    first = save_to_store(toy_bundle, "ab-toy")
    config = {**toy_bundle.config, "event_weights": {"click": 2.0}}
    second = save_to_store(dataclasses.replace(toy_bundle, config=config), "ab-toy")
    assert first != second
    return first, second


@pytest.fixture
def handlers(versions, target):
    from recommender.refresh import open_feedback
    from recommender.service_core import load
    from recommender.services.handlers import Handlers

    model = load(versions[0])
    h = Handlers(model, open_feedback(model, target), ServiceSettings())
    h.online.experiment_ttl = 0  # see experiments started by the test at once
    yield h
    h.close()
    h.store.close()


def _served(arm: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("recbento_impressions_total", {"arm": arm}) or 0.0


def _ids(answer) -> list:
    return [i["item_id"] for i in answer["items"]]


def test_every_list_gets_a_request_id_and_is_logged(handlers, versions) -> None:
    from recommender.impressions import impressions_frame

    out = handlers.recommend(RecommendBody(user_id=30, k=3))
    assert re.fullmatch(r"[0-9a-f]{32}", out["request_id"]) and "arm" not in out
    again = handlers.recommend(RecommendBody(user_id=30, k=3))
    assert again["request_id"] != out["request_id"]
    batch = handlers.recommend_batch(
        RecommendBatchBody(requests=[RecommendBody(user_id=10, k=2), RecommendBody(k=1)])
    )
    group = handlers.recommend_group(RecommendGroupBody(user_ids=[10, 20], k=2))
    handlers.online.impressions.flush()
    df = impressions_frame(handlers.store).set_index("request_id")
    assert len(df) == 5 and group["request_id"] in df.index
    row = df.loc[out["request_id"]]
    assert row["items"] == _ids(out) and row["user_id"] == 30
    assert row["scores"] == [i["score"] for i in out["items"]]
    assert row["model"] == versions[0] and row["user_group"] == out["group"]
    assert df.loc[batch[1]["request_id"], "user_id"] is None  # an anonymous request


def test_a_click_citing_the_request_id_counts_in_online_metrics(handlers) -> None:
    out = handlers.recommend(RecommendBody(user_id=30, k=3))
    handlers.recommend(RecommendBody(user_id=10, k=3))  # shown, never clicked
    click = {
        "user_id": 30,
        "item_id": _ids(out)[1],
        "timestamp": 2_000_000_000,
        "type": "click",
        "request_id": out["request_id"],
    }
    from prometheus_client import REGISTRY

    labels = {"type": "click", "arm": "none"}
    clicks = REGISTRY.get_sample_value("recbento_feedback_events_total", labels) or 0.0
    handlers.feedback(FeedbackBody(events=[click]), None)
    assert REGISTRY.get_sample_value("recbento_feedback_events_total", labels) == clicks + 1
    handlers.online.impressions.flush()
    got = handlers.online_metrics(OnlineMetricsBody(by=[]), None)
    (row,) = got["rows"]
    assert row["impressions"] == 2 and row["clicks"] == 1 and row["ctr"] == 0.5
    assert row["hit_rate"] == 0.5 and row["coverage"] is not None


def test_exclude_shown_leaves_out_the_last_lists(handlers) -> None:
    first = handlers.recommend(RecommendBody(user_id=30, k=2, exclude_seen=False))
    handlers.online.impressions.flush()
    same = handlers.recommend(RecommendBody(user_id=30, k=2, exclude_seen=False))
    assert _ids(same) == _ids(first)  # without the option, the same list again
    handlers.online.impressions.flush()
    fresh = handlers.recommend(RecommendBody(user_id=30, k=2, exclude_seen=False, exclude_shown=1))
    assert set(_ids(fresh)).isdisjoint(_ids(first))
    with pytest.raises(ValueError, match="exclude_shown"):
        RecommendBody(user_id=30, exclude_shown=0)


def test_experiment_arms_serve_their_model_version(handlers, versions) -> None:
    from recommender.experiments import Arm, Experiment, start_experiment, stop_experiment
    from recommender.impressions import impressions_frame

    exp = Experiment("v2-test", (Arm("control", versions[0], 0.5), Arm("new", versions[1], 0.5)))
    start_experiment(handlers.store, exp)
    users = [10, 20, 30, 40, 50, 60, 70, 80]
    before = {a: _served(a) for a in ("control", "new")}
    answers = [handlers.recommend(RecommendBody(user_id=u, k=2)) for u in users]
    arms = [exp.assign(u) for u in users]
    n_new = sum(a.name == "new" for a in arms)
    assert _served("new") - before["new"] == n_new  # Prometheus counters on /metrics
    assert _served("control") - before["control"] == len(users) - n_new
    assert [a["arm"] for a in answers] == [a.name for a in arms]
    assert [a["model"] for a in answers] == [a.model for a in arms]
    assert {a.name for a in arms} == {"control", "new"}  # both arms see traffic
    batch = handlers.recommend_batch(
        RecommendBatchBody(requests=[RecommendBody(user_id=u, k=1) for u in users])
    )
    assert [b["arm"] for b in batch] == [a.name for a in arms]
    handlers.online.impressions.flush()
    logged = impressions_frame(handlers.store).set_index("request_id")
    assert logged.loc[[a["request_id"] for a in answers], "arm"].tolist() == [a.name for a in arms]
    by_arm = handlers.online_metrics(OnlineMetricsBody(by=["arm"]), None)["rows"]
    assert [r["arm"] for r in by_arm] == ["control", "new"] and "p_value" in by_arm[0]

    stop_experiment(handlers.store, "v2-test")
    after = handlers.recommend(RecommendBody(user_id=20, k=2))
    assert "arm" not in after and after["model"] == versions[0]


def test_an_arm_model_sees_feedback_taken_before_and_after_it_loaded(handlers, versions) -> None:
    from recommender.experiments import Arm, Experiment, start_experiment

    event = {"user_id": "newbie", "item_id": 7, "timestamp": 10, "type": "dislike"}
    handlers.feedback(FeedbackBody(events=[event]), None)
    exp = Experiment("all-new", (Arm("a", versions[1], 0.999999), Arm("b", versions[0], 1e-6)))
    start_experiment(handlers.store, exp)
    assert exp.assign("newbie").name == "a"  # the hash is fixed: always this arm
    out = handlers.recommend(RecommendBody(user_id="newbie", k=8, exclude_seen=False))
    assert out["model"] == versions[1] and 7 not in _ids(out)
    handlers.feedback(
        FeedbackBody(
            events=[{"user_id": "newbie", "item_id": 8, "timestamp": 11, "type": "dislike"}]
        ),
        None,
    )
    out = handlers.recommend(RecommendBody(user_id="newbie", k=8, exclude_seen=False))
    assert {7, 8}.isdisjoint(_ids(out))


def test_a_model_swapped_in_answers_and_is_logged(handlers, versions) -> None:
    from recommender.refresh import attach_feedback
    from recommender.service_core import load

    newer = load(versions[1])
    attach_feedback(newer, handlers.store)
    handlers.model = newer  # what the reload watcher does
    out = handlers.recommend(RecommendBody(user_id=10, k=2))
    assert out["model"] == versions[1]


def test_a_batch_that_fails_in_one_arm_logs_each_answer_once(handlers, versions) -> None:
    import asyncio

    from recommender.errors import InputError
    from recommender.experiments import Arm, Experiment, start_experiment
    from recommender.impressions import impressions_frame

    exp = Experiment("dup-test", (Arm("control", versions[0], 0.5), Arm("new", versions[1], 0.5)))
    start_experiment(handlers.store, exp)
    users = [10, 20, 30, 40, 50, 60, 70, 80]
    first = exp.assign(users[0]).name
    good = [u for u in users if exp.assign(u).name == first]
    other = next(u for u in users if exp.assign(u).name != first)
    # the first arm's lists are scored before the other arm's bad request fails the batch,
    # which is then answered request by request
    bodies = [RecommendBody(user_id=u, k=2) for u in good] + [RecommendBody(user_id=other, k=999)]
    before = _served(first)

    async def together():
        return await asyncio.gather(
            *(handlers.recommend_async(b) for b in bodies), return_exceptions=True
        )

    answers = asyncio.run(together())
    assert isinstance(answers[-1], InputError) and answers[-1].field == "k"
    assert _served(first) - before == len(good)
    handlers.online.impressions.flush()
    logged = impressions_frame(handlers.store)
    assert len(logged) == len(good)
    assert sorted(logged["request_id"]) == sorted(a["request_id"] for a in answers[:-1])
