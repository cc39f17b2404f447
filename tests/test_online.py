"""Impression log, online metrics and A/B experiments, on both feedback backends."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from recommender.errors import InputError, NotFoundError
from recommender.experiments import (
    Arm,
    Experiment,
    active_experiment,
    bucket,
    list_experiments,
    parse_arm,
    start_experiment,
    stop_experiment,
)
from recommender.impressions import (
    Impression,
    ImpressionLog,
    impressions_frame,
    shown_items,
    write_impressions,
)
from recommender.online_metrics import compare_arms, online_metrics, wilson, z_test

DAY = 1_700_000_000  # 2023-11-14 22:13:20 UTC


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):  # noqa: ANN201
    from recommender.feedback import open_store

    target = str(tmp_path / "fb.db") if request.param == "sqlite" else None
    target = target or request.getfixturevalue("pg_url")
    with open_store(target) as s:
        yield s


def _imp(rid, user, at, items, arm=None, model="m:v1", group=None) -> Impression:
    return Impression(
        rid, user, at, model, arm, group, [(i, 1.0 / (n + 1)) for n, i in enumerate(items)]
    )


# ---------------------------------------------------------------- impressions
def test_impression_log_writes_in_the_background_and_flushes_on_close(store) -> None:
    log = ImpressionLog(store, batch=3)
    for n in range(7):
        assert log.put(_imp(f"r{n}", 7, DAY + n, [n, n + 1], group=1))
    log.close()
    assert log.written == 7 and log.dropped == 0
    df = impressions_frame(store)
    assert df["request_id"].tolist() == [f"r{n}" for n in range(7)]
    assert df.loc[0, "items"] == [0, 1] and df.loc[0, "scores"] == [1.0, 0.5]
    assert df["user_id"].tolist() == [7] * 7 and df["user_group"].tolist() == [1] * 7
    # the newest 2 lists, newest first, each item once
    assert shown_items(store, 7, last=2) == [6, 7, 5]
    assert shown_items(store, "7", last=2) == []  # ids keep their type
    write_impressions(store, [_imp("r0", 8, DAY, [99])])  # a request_id is stored once
    assert len(impressions_frame(store)) == 7


def test_a_long_list_of_impressions_is_stored_whole_in_one_transaction(store) -> None:
    # 250 rows: two full multi-row statements and a shorter one, each row as given
    imps = [_imp(f"r{n}", n % 9, DAY + n, [n, n + 1], group=n % 3) for n in range(250)]
    assert write_impressions(store, imps) == 250
    df = impressions_frame(store).sort_values("served_at", ignore_index=True)
    assert df["request_id"].tolist() == [f"r{n}" for n in range(250)]
    assert df.loc[249, "items"] == [249, 250] and df.loc[249, "user_group"] == 0
    assert df["user_id"].tolist() == [n % 9 for n in range(250)]
    # stored ids are kept (also a repeat inside one list), the new ones are added
    again = [_imp("r7", 1, DAY, [1]), _imp("x1", 1, DAY, [1]), _imp("x1", 2, DAY, [2])]
    write_impressions(store, again)
    df = impressions_frame(store)
    assert len(df) == 251 and df.loc[df["request_id"] == "r7", "items"].item() == [7, 8]


def test_a_failed_statement_stores_none_of_the_list(store) -> None:
    imps = [_imp(f"r{n}", 1, DAY + n, [n]) for n in range(150)]
    imps[120] = _imp("bad", 1, DAY, [1], group=2**70)  # too large for either database
    with pytest.raises(Exception):  # noqa: B017, PT011 - each database its own error
        write_impressions(store, imps)
    assert len(impressions_frame(store)) == 0


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path) -> None:
    from recommender.feedback import FeedbackStore

    release = threading.Event()

    class SlowStore(FeedbackStore):
        def _write_many(self, statements):  # noqa: ANN001, ANN202
            release.wait(10)
            super()._write_many(statements)

    with SlowStore(tmp_path / "fb.db") as slow:
        log = ImpressionLog(slow, max_queue=2, batch=1)
        results = [log.put(_imp(f"r{n}", 1, DAY, [1])) for n in range(6)]
        # one is being written, two wait in the queue: the rest are dropped at once
        assert results.count(False) >= 3 and log.dropped == results.count(False)
        release.set()
        log.close()
        assert log.written == results.count(True)
        assert len(impressions_frame(slow)) == log.written


def test_a_failing_store_is_counted_and_serving_goes_on(tmp_path) -> None:
    from recommender.feedback import FeedbackStore

    store = FeedbackStore(tmp_path / "fb.db")
    store.close()
    log = ImpressionLog(store)
    assert log.put(_imp("r1", 1, DAY, [1]))
    log.close()
    assert log.failed == 1 and log.written == 0


# -------------------------------------------------------------------- metrics
def test_online_metrics_attribute_clicks_conversions_and_hits(store) -> None:
    write_impressions(
        store,
        [
            _imp("a1", 1, DAY, [10, 11], arm="A"),
            _imp("a2", 2, DAY + 1, [10, 12], arm="A"),
            _imp("b1", 3, DAY + 2, [13, 14], arm="B"),
            _imp("b2", 4, DAY + 86400, [13, 15], arm="B", model="m:v2"),
        ],
    )
    store.append(
        [
            {
                "user_id": 1,
                "item_id": 11,
                "timestamp": DAY + 5,
                "type": "click",
                "request_id": "a1",
            },
            {
                "user_id": 1,
                "item_id": 10,
                "timestamp": DAY + 6,
                "type": "click",
                "request_id": "a1",
            },
            {
                "user_id": 3,
                "item_id": 13,
                "timestamp": DAY + 7,
                "type": "purchase",
                "request_id": "b1",
            },
            # not attributed, but a later positive event on a shown item: a hit
            {"user_id": 2, "item_id": 12, "timestamp": DAY + 9, "type": "view"},
            # before the list was served, or a dislike: no hit
            {"user_id": 4, "item_id": 13, "timestamp": DAY, "type": "view"},
            {"user_id": 4, "item_id": 15, "timestamp": DAY + 90000, "type": "dislike"},
        ]
    )
    m = online_metrics(store, by=["arm"], n_items=20).set_index("arm")
    assert m.loc["A", "impressions"] == 2 and m.loc["A", "items_shown"] == 4
    assert m.loc["A", "clicks"] == 2 and m.loc["A", "ctr"] == 0.5  # one list of two clicked
    assert m.loc["A", "conversion"] == 0 and m.loc["B", "conversion"] == 0.5
    assert m.loc["A", "hit_rate"] == 1.0 and m.loc["B", "hit_rate"] == 0.5
    assert m.loc["A", "distinct_items"] == 3 and m.loc["A", "coverage"] == 3 / 20
    assert m.loc["A", "ctr_low"] < 0.5 < m.loc["A", "ctr_high"]
    # novelty: item 13 has two positive events, 10 and 11 one each, 14 and 15 none
    assert m.loc["B", "novelty"] > 0
    by_day = online_metrics(store, by=["model", "day"])
    assert by_day[["model", "day", "impressions"]].values.tolist() == [
        ["m:v1", "2023-11-14", 3],
        ["m:v2", "2023-11-15", 1],
    ]
    only = online_metrics(store, by=[], filters={"model": "m:v2"})
    assert only["impressions"].tolist() == [1]
    with pytest.raises(InputError, match="cannot slice or filter by 'colour'"):
        online_metrics(store, by=["colour"])
    assert online_metrics(store, since=DAY + 10**6).empty


def test_wilson_and_z_test_match_known_values() -> None:
    low, high = wilson(0, 10)
    assert low == 0 and 0.27 < high < 0.28  # the rule of three's cousin
    z, p = z_test(100, 1000, 100, 1000)
    assert z == 0 and p == 1
    z, p = z_test(50, 1000, 80, 1000)
    assert z > 0 and p < 0.01


def test_compare_arms_tests_each_arm_against_the_control(store) -> None:
    imps = [_imp(f"a{n}", n, DAY, [1], arm="A") for n in range(200)]
    imps += [_imp(f"b{n}", 1000 + n, DAY, [1], arm="B") for n in range(200)]
    write_impressions(store, imps)
    clicks = [("a", n) for n in range(10)] + [("b", n) for n in range(40)]
    store.append(
        [
            {
                "user_id": (0 if a == "a" else 1000) + n,
                "item_id": 1,
                "timestamp": DAY + 1,
                "type": "click",
                "request_id": f"{a}{n}",
            }
            for a, n in clicks
        ]
    )
    out = compare_arms(online_metrics(store, by=["arm"]), control="A").set_index("arm")
    assert out.loc["A", "ctr"] == 0.05 and out.loc["B", "ctr"] == 0.2
    assert out.loc["B", "ctr_lift"] == pytest.approx(0.15)
    assert out.loc["B", "p_value"] < 0.001 and out.loc["A", "p_value"] == 1


# ---------------------------------------------------------------- experiments
def test_assignment_is_deterministic_and_follows_the_shares() -> None:
    exp = Experiment("ranker", (Arm("control", "m:v1", 0.8), Arm("new", "m:v2", 0.2)))
    arms = [exp.assign(u).name for u in range(5000)]
    assert arms == [exp.assign(u).name for u in range(5000)]
    assert 0.77 < arms.count("control") / 5000 < 0.83
    assert exp.assign(None).name == "control"
    # another experiment splits the same users independently
    other = Experiment("other", exp.arms)
    agree = np.mean([other.assign(u).name == a for u, a in enumerate(arms)])
    assert agree < 0.75
    assert bucket("ranker", 7) != bucket("ranker", "7")


@pytest.mark.parametrize(
    ("arms", "message"),
    [
        ((Arm("a", "m:1", 1.0),), "expected at least 2"),
        ((Arm("a", "m:1", 0.5), Arm("a", "m:2", 0.5)), "repeat"),
        ((Arm("a", "m:1", 0.5), Arm("b", "m:2", 0.6)), "add up to 1.1"),
        ((Arm("a", "m:1", 0.0), Arm("b", "m:2", 1.0)), "share=0.0"),
    ],
)
def test_bad_experiments_are_rejected(arms, message) -> None:
    with pytest.raises(InputError, match=message):
        Experiment("x", arms)


def test_parse_arm() -> None:
    assert parse_arm("control=movies:abc@0.5") == Arm("control", "movies:abc", 0.5)
    with pytest.raises(InputError, match="expected NAME=MODEL@SHARE"):
        parse_arm("control=movies:abc")


def test_experiments_live_in_the_store(store) -> None:
    assert active_experiment(store) is None
    exp = Experiment("ranker", (Arm("A", "m:v1", 0.5), Arm("B", "m:v2", 0.5)))
    started = start_experiment(store, exp)
    assert started.started_at is not None and active_experiment(store) == started
    with pytest.raises(InputError, match="'ranker' is still running"):
        start_experiment(store, Experiment("next", exp.arms))
    stopped = stop_experiment(store, "ranker")
    assert not stopped.active and active_experiment(store) is None
    with pytest.raises(InputError, match="was used before"):
        start_experiment(store, exp)
    with pytest.raises(NotFoundError, match="'nope' not found"):
        stop_experiment(store, "nope")
    assert [e.name for e in list_experiments(store)] == ["ranker"]
