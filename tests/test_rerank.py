"""Tests for recommender.rerank and recommender.item_signals on hand-made data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.errors import InputError
from recommender.item_signals import (
    entity_distribution,
    head_share_before,
    item_activity,
    item_age_days,
    item_entity_matrix,
    longtail_mask,
    user_entity_profile,
)
from recommender.rerank import RERANK_KNOBS, RerankConfig, Reranker, minmax

OFF = RerankConfig.relevance_only()


def _unit(v):
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# ---------------------------------------------------------------- config
def test_config_round_trip_and_overrides():
    cfg = RerankConfig()
    assert RerankConfig.from_config(cfg.get_config()) == cfg
    assert set(cfg.get_config()) == set(RERANK_KNOBS)
    new = cfg.replace(diversity=0.5, calibration=None)
    assert new.diversity == 0.5 and new.calibration == cfg.calibration
    assert cfg.diversity != 0.5  # frozen original untouched


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"diversty": 0.3}, "diversty"),
        ({"diversity": 1.5}, "diversity"),
        ({"hotness_half_life_days": 0}, "hotness_half_life_days"),
        ({"longtail_min_share": -0.1}, "longtail_min_share"),
        ({"relevance": "high"}, "relevance"),
    ],
)
def test_config_rejects_unknown_and_out_of_range(overrides, field):
    with pytest.raises(InputError) as err:
        RerankConfig.from_config(overrides)
    assert err.value.field == field
    assert field in err.value.message


# ---------------------------------------------------------------- MMR
def test_off_is_sort_by_relevance():
    rr = Reranker(np.eye(4))
    idx, scores = rr.rerank([3, 1, 0, 2], [0.1, 0.9, 0.5, 0.7], k=3, config=OFF)
    assert idx.tolist() == [1, 2, 0]
    assert np.all(np.diff(scores) <= 0)


def test_mmr_known_order_on_hand_made_vectors():
    # items 0, 1, 2 point the same way (near duplicates); 3 is orthogonal; 4 in between.
    vecs = _unit([[1, 0], [1, 0.01], [1, 0.02], [0, 1], [1, 1]])
    rel = np.array([1.0, 0.95, 0.9, 0.6, 0.7])
    rr = Reranker(vecs)
    plain, _ = rr.rerank(np.arange(5), rel, k=3, config=OFF)
    assert plain.tolist() == [0, 1, 2]
    # minmax(rel) = [1, .875, .75, 0, .25]; with diversity 0.5:
    # step 2 values: 1: .4375-.5*1=-.06; 3: 0-.5*0=0; 4: .125-.5*.707=-.23 -> 3
    # step 3 values: 1: -.06; 2: .375-.5=-.125; 4: .125-.5*.707=-.23 -> 1
    div, vals = rr.rerank(np.arange(5), rel, k=3, config=OFF.replace(diversity=0.5))
    assert div.tolist() == [0, 3, 1]
    assert vals[0] == pytest.approx(0.5)
    # full diversity: after 0 take the least similar each time
    alld, _ = rr.rerank(np.arange(5), rel, k=2, config=OFF.replace(diversity=1.0))
    assert alld.tolist() == [0, 3]


def test_rerank_input_errors():
    rr = Reranker(np.eye(3))
    with pytest.raises(InputError):
        rr.rerank([0, 1], [1.0], k=1)
    with pytest.raises(InputError):
        rr.rerank([0, 5], [1.0, 2.0], k=1)
    with pytest.raises(InputError):
        rr.rerank([0, 1], [1.0, 2.0], k=0)


def test_an_out_of_range_knob_is_named_with_its_value_and_range():
    with pytest.raises(InputError, match=r"^diversity=1.5: expected a number in \[0, 1\]$"):
        RerankConfig(diversity=1.5)
    with pytest.raises(InputError, match=r"^calibration_alpha=0: expected a number in \(0, 1\)$"):
        RerankConfig().replace(calibration_alpha=0)
    with pytest.raises(InputError, match=r"^hotness='high': expected a finite number >= 0$"):
        RerankConfig(hotness="high")


# ---------------------------------------------------------------- calibration
def _genre_items():
    items = pd.DataFrame(
        {
            "item_id": range(8),
            "title": [f"t{i}" for i in range(8)],
            "genres": ["Action"] * 5 + ["Drama"] * 3,
        }
    )
    return items


def _kl(p, q, alpha=0.01):
    q = (1 - alpha) * q + alpha * p
    m = p > 0
    return float((p[m] * np.log(p[m] / q[m])).sum())


def test_calibration_moves_genre_mix_toward_target():
    items = _genre_items()
    ent, names = item_entity_matrix(items)
    assert names == ["genres:Action", "genres:Drama"]
    dist = entity_distribution(ent)
    rr = Reranker(np.eye(8), item_entities=ent)
    rel = np.array([1.0, 0.99, 0.98, 0.97, 0.96, 0.5, 0.4, 0.3])  # actions score higher
    target = np.array([0.5, 0.5])  # the user watches both equally

    def mix(idx):
        return np.asarray(dist[idx].sum(axis=0)).ravel() / len(idx)

    off, _ = rr.rerank(np.arange(8), rel, k=4, user_profile=target, config=OFF)
    cal, _ = rr.rerank(
        np.arange(8), rel, k=4, user_profile=target, config=OFF.replace(calibration=1.0)
    )
    strong, _ = rr.rerank(
        np.arange(8), rel, k=4, user_profile=target, config=OFF.replace(calibration=10.0)
    )
    assert mix(off).tolist() == [1.0, 0.0]
    # weight 1: one drama is worth its relevance loss (KL 1.96 -> 0), a second is not yet
    assert mix(cal).tolist() == [0.75, 0.25]
    assert mix(strong).tolist() == [0.5, 0.5]
    assert _kl(target, mix(strong)) < _kl(target, mix(cal)) < _kl(target, mix(off))
    with pytest.raises(InputError):
        rr.rerank(np.arange(8), rel, k=4, user_profile=np.ones(3))
    # without a profile calibration is a no-op
    same, _ = rr.rerank(np.arange(8), rel, k=4, config=OFF.replace(calibration=1.0))
    assert same.tolist() == off.tolist()


def test_user_entity_profile():
    ent, _ = item_entity_matrix(_genre_items())
    prof = user_entity_profile(entity_distribution(ent), [0, 1, 5])
    np.testing.assert_allclose(prof, [2 / 3, 1 / 3])
    assert user_entity_profile(entity_distribution(ent), []).tolist() == [0.0, 0.0]


def test_dense_and_sparse_entity_distributions_rerank_alike(monkeypatch):
    """Small catalogues keep the entity distribution dense too; large ones only sparse."""
    import recommender.rerank as rerank_mod

    ent, _ = item_entity_matrix(_genre_items())
    n = ent.shape[0]
    vecs = np.random.default_rng(0).normal(size=(n, 4))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    dense = Reranker(vecs, item_entities=ent)
    monkeypatch.setattr(rerank_mod, "DENSE_DIST_MAX", 0)
    sparse = Reranker(vecs, item_entities=ent)
    assert dense._dist_dense is not None and sparse._dist_dense is None
    for history in ([0, 1, 5], [2, 2, 3], []):
        np.testing.assert_allclose(dense.user_profile(history), sparse.user_profile(history))
    rel = np.linspace(1.0, 0.2, n)
    cfg = RerankConfig().replace(calibration=1.0, diversity=0.3)
    prof = dense.user_profile([0, 1, 5])
    a = dense.rerank(np.arange(n), rel, k=4, user_profile=prof, config=cfg)
    b = sparse.rerank(np.arange(n), rel, k=4, user_profile=prof, config=cfg)
    assert a[0].tolist() == b[0].tolist()
    np.testing.assert_allclose(a[1], b[1])


# ---------------------------------------------------------------- popularity signals
def test_longtail_floor_and_definition():
    pop = np.array([50, 30, 10, 5, 5, 0])
    assert longtail_mask(pop, 0.8).tolist() == [False, False, True, True, True, True]
    np.testing.assert_allclose(head_share_before(pop)[:3], [0.0, 0.5, 0.8])
    ts = np.zeros(pop.sum(), dtype=np.int64)
    act = item_activity(np.repeat(np.arange(6), pop), ts, 6)
    rr = Reranker(np.eye(6), activity=act)
    rel = np.array([1.0, 0.9, 0.3, 0.2, 0.1, 0.0])
    idx, _ = rr.rerank(np.arange(6), rel, k=4, config=OFF.replace(longtail_min_share=0.5))
    assert idx.tolist() == [0, 1, 2, 3]
    idx, _ = rr.rerank(np.arange(6), rel, k=4, config=OFF.replace(longtail_min_share=0.75))
    assert idx.tolist() == [0, 2, 3, 4]
    assert rr.longtail(np.arange(6)).sum() == 4


def test_hotness_decays_with_half_life():
    day = 86_400
    # item 0: 4 interactions 700 days ago; item 1: 2 interactions today
    ts = np.array([0, 0, 0, 0, 700 * day, 700 * day])
    act = item_activity(np.array([0, 0, 0, 0, 1, 1]), ts, 2, bucket_days=1)
    assert act.popularity.tolist() == [4.0, 2.0]
    hot = act.hotness(30.0)
    assert hot[1] > hot[0]
    np.testing.assert_allclose(act.hotness(1e9), [4.0, 2.0], rtol=1e-6)
    rr = Reranker(np.eye(2), activity=act)
    idx, _ = rr.rerank([0, 1], [1.0, 0.0], k=1, config=OFF.replace(hotness=2.0))
    assert idx.tolist() == [1]


def test_freshness_and_group_popularity():
    age = item_age_days(3, now=0, years=np.array([1970.5, 1960.0, np.nan]))
    assert age[0] == pytest.approx(0.0, abs=1.0) and age[1] > 3000 and np.isnan(age[2])
    rr = Reranker(np.eye(3), item_age_days=age, group_popularity=np.array([[0, 0, 1.0]]))
    idx, _ = rr.rerank([1, 0], [1.0, 0.9], k=1, config=OFF.replace(freshness=2.0))
    assert idx.tolist() == [0]
    idx, _ = rr.rerank([0, 2], [1.0, 0.9], k=1, group=0, config=OFF.replace(group_popularity=2.0))
    assert idx.tolist() == [2]
    with pytest.raises(InputError):
        rr.rerank([0, 2], [1.0, 0.9], k=1, group=3, config=OFF.replace(group_popularity=1.0))


def test_a_requests_freshness_half_life_counts_as_if_it_were_the_default():
    """The default half-life's freshness is computed once for every item; a request
    with another half-life gets what a reranker built with that default gives."""
    age = np.array([0.0, 50.0, 200.0, 400.0, np.nan])
    rel = [0.5, 0.0, 1.0, 0.9, 0.7]
    cfg = OFF.replace(freshness=1.0)
    default = Reranker(np.eye(5), item_age_days=age, config=cfg)
    got = {}
    for half_life in (30.0, 365.0, 5000.0):
        knobs = cfg.replace(freshness_half_life_days=half_life)
        own = Reranker(np.eye(5), item_age_days=age, config=knobs)
        idx, sc = default.rerank(np.arange(5), rel, k=5, config=knobs)
        want_idx, want_sc = own.rerank(np.arange(5), rel, k=5)
        assert idx.tolist() == want_idx.tolist()
        assert sc.tolist() == want_sc.tolist()
        got[half_life] = dict(zip(idx.tolist(), sc.tolist(), strict=True))
    assert got[30.0][1] < got[5000.0][1]  # a 50-day-old item is fresher on a longer scale
    assert got[30.0][4] == got[5000.0][4] == pytest.approx(0.7)  # no age: relevance alone


def test_from_tables_builds_every_signal():
    items = _genre_items().assign(year=[1990.0] * 7 + [np.nan])
    inter = pd.DataFrame(
        {"user_id": [1, 1, 2, 9], "item_id": [0, 1, 0, 99], "timestamp": [10, 20, 30, 40]}
    )
    rr = Reranker.from_tables(items, inter, np.eye(8))
    assert rr.activity.popularity.tolist() == [2, 1, 0, 0, 0, 0, 0, 0]
    assert np.isnan(rr.item_age_days[7]) and rr.item_dist.shape == (8, 2)


def test_minmax_and_entity_matrix_columns():
    assert minmax(np.array([1.0, 1.0])).tolist() == [0.0, 0.0]
    items = pd.DataFrame(
        {"item_id": [1, 2], "title": ["a", "b"], "tags": ["x|y", None], "year": [2000.0, None]}
    )
    m, names = item_entity_matrix(items)
    assert names == ["tags:x", "tags:y", "year:2000"]
    assert sp.issparse(m) and m.toarray().tolist() == [[1, 1, 1], [0, 0, 0]]
    with pytest.raises(InputError):
        item_entity_matrix(items, ["genres"])


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 25),
    k=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    diversity=st.floats(0, 1),
    calibration=st.floats(0, 2),
    share=st.floats(0, 1),
)
def test_rerank_returns_distinct_candidates(n, k, seed, diversity, calibration, share):
    rng = np.random.default_rng(seed)
    vecs = _unit(rng.normal(size=(30, 4)))
    ent = sp.csr_matrix(rng.random((30, 3)) > 0.5, dtype=float)
    act = item_activity(rng.integers(0, 30, 200), rng.integers(0, 10**7, 200), 30)
    rr = Reranker(vecs, activity=act, item_entities=ent, group_popularity=rng.random((2, 30)))
    cand = rng.permutation(30)[:n]
    cfg = RerankConfig().replace(
        diversity=diversity,
        calibration=calibration,
        longtail_min_share=share,
        group_popularity=0.1,
        hotness=0.1,
    )
    idx, scores = rr.rerank(
        cand, rng.normal(size=n), k, group=1, user_profile=rng.random(3), config=cfg
    )
    assert len(idx) == min(k, n) == len(set(idx.tolist())) == len(scores)
    assert set(idx.tolist()) <= set(cand.tolist())
    n_tail_available = int(rr.longtail(cand).sum())
    need = min(int(np.ceil(share * len(idx) - 1e-9)), n_tail_available)
    assert rr.longtail(idx).sum() >= need


def _objective_picks(rr, cand, rel, k, cfg, profile):
    """The module docstring's greedy objective, evaluated term by term for every step."""
    base = minmax(np.asarray(rel, dtype=float))  # relevance only: the other signals are off
    vecs = rr.item_vectors[cand].astype(float)
    dist = rr.item_dist[cand].toarray()
    p = profile / profile.sum()
    a = cfg.calibration_alpha
    picked: list[int] = []
    for _ in range(k):
        best, best_i = -np.inf, -1
        for i in range(len(cand)):
            if i in picked:
                continue
            sim = max([0.0] + [vecs[i] @ vecs[j] for j in picked])  # unlike items: no bonus
            q = (1 - a) * dist[picked + [i]].mean(axis=0) + a * p
            kl = sum(pe * np.log(pe / qe) for pe, qe in zip(p, q, strict=True) if pe > 0)
            value = (1 - cfg.diversity) * base[i] - cfg.diversity * sim - cfg.calibration * kl
            if value > best:
                best, best_i = value, i
        picked.append(best_i)
    return cand[picked].tolist()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    k=st.integers(1, 8),
    seed=st.integers(0, 10**6),
    diversity=st.floats(0.05, 0.9),
    calibration=st.floats(0.05, 3),
    weighted=st.booleans(),
)
def test_greedy_picks_follow_the_documented_objective(n, k, seed, diversity, calibration, weighted):
    # weighted: every item holds a different share of each entity, more distinct shares
    # than the greedy pick looks through (SEARCHED); otherwise shares repeat (1 / n)
    rng = np.random.default_rng(seed)
    vecs = _unit(rng.normal(size=(40, 6)))
    has = rng.random((40, 5)) > 0.6
    ent = sp.csr_matrix(has * (rng.random((40, 5)) + 0.1 if weighted else 1.0))
    rr = Reranker(vecs, item_entities=ent)
    cand = rng.permutation(40)[:n]
    rel = rng.normal(size=n)
    profile = rng.random(5) * (rng.random(5) > 0.3)
    if profile.sum() == 0:
        profile[0] = 1.0
    cfg = RerankConfig().replace(
        diversity=diversity,
        calibration=calibration,
        longtail_min_share=0.0,
        group_popularity=0.0,
        hotness=0.0,
        freshness=0.0,
    )
    idx, _ = rr.rerank(cand, rel, min(k, n), user_profile=profile, config=cfg)
    assert idx.tolist() == _objective_picks(rr, cand, rel, min(k, n), cfg, profile)
