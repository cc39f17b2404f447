"""Tests for recommender.groups and recommender.group_recs on planted, hand-built data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recommender.errors import BundleError, InputError
from recommender.group_recs import (
    STRATEGIES,
    aggregate_group_scores,
    group_context,
    top_k_for_group,
)
from recommender.groups import (
    GroupPortrait,
    UserGroups,
    group_item_popularity,
    plot_groups,
    portraits_table,
)
from recommender.item_signals import item_entity_matrix


def _planted(n_per=15, seed=0):
    """Two planted groups: users 0..n-1 watch Action items 0-3, users n..2n-1 Drama items 4-7.

    Returns user vectors, user_items, items, attributes and the planted labels.
    """
    rng = np.random.default_rng(seed)
    centres = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    truth = np.repeat([0, 1], n_per)
    vecs = centres[truth] + rng.normal(0, 0.15, (2 * n_per, 4))
    rows, cols = [], []
    for u, g in enumerate(truth):
        liked = rng.choice(np.arange(4) + 4 * g, 3, replace=False)
        rows += [u] * 3
        cols += liked.tolist()
    cols[0] = 5  # one cross-over interaction so lifts are finite and not trivial
    ui = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * n_per, 8))
    items = pd.DataFrame(
        {
            "item_id": np.arange(100, 108),
            "title": [f"t{i}" for i in range(8)],
            "genres": ["Action|Comedy"] * 4 + ["Drama|Comedy"] * 4,
        }
    )
    attrs = pd.DataFrame({"country": np.where(truth == 0, "fr", "de"), "age": 20 + truth * 30})
    return vecs, ui, items, attrs, truth


def _same_partition(a, b):
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == len(set(a.tolist()))


def test_silhouette_finds_planted_groups_and_new_users_join_nearest():
    vecs, ui, _, _, truth = _planted()
    g = UserGroups(n_groups_range=(2, 5), random_state=0).fit(vecs, user_items=ui)
    assert g.n_groups_ == 2
    assert _same_partition(g.labels_, truth)
    assert set(g.silhouette_scores_) == {2, 3, 4, 5}
    assert g.silhouette_ == max(g.silhouette_scores_.values())
    new = g.predict(np.array([[0.9, 0.1, 0, 0], [0, 1.2, 0, 0]]))
    assert new[0] == g.labels_[0] and new[1] == g.labels_[-1]
    assert g.group_popularity_.shape == (2, 8)
    np.testing.assert_allclose(g.group_popularity_.sum(axis=1), 1.0)


def test_grouping_is_deterministic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 6))
    a = UserGroups(random_state=3, n_groups_range=(2, 6)).fit(x)
    b = UserGroups(random_state=3, n_groups_range=(2, 6)).fit(x)
    assert a.n_groups_ == b.n_groups_
    assert a.labels_.tolist() == b.labels_.tolist()
    np.testing.assert_array_equal(a.centers_, b.centers_)


def test_attributes_are_one_hot_and_weighted():
    vecs, _, _, attrs, truth = _planted()
    # vectors say nothing: attributes alone must separate the groups
    noise = np.random.default_rng(0).normal(size=vecs.shape)
    g = UserGroups(n_groups=2, attribute_weight=3.0, random_state=0).fit(noise, attrs)
    assert _same_partition(g.labels_, truth)
    assert g.attribute_categories_["country"] == ["de", "fr"]
    assert g.centers_.shape[1] == 4 + 2 + 2  # vector + country one-hot + age one-hot
    pred = g.predict(noise[:3], attrs.iloc[:3])
    assert pred.tolist() == g.labels_[:3].tolist()
    assert g.predict(noise[:3]).shape == (3,)  # vector part only when attributes are absent
    with pytest.raises(InputError):
        g.predict(noise[:2], attrs[["age"]].iloc[:2])


def test_portraits_recover_planted_groups():
    vecs, ui, items, attrs, truth = _planted()
    ent, names = item_entity_matrix(items)
    g = UserGroups(n_groups=2, random_state=0).fit(vecs, user_items=ui)
    ports = g.portraits(ui, ent, names, item_ids=items["item_id"].tolist(), user_attributes=attrs)
    assert [p.size for p in ports] == [15, 15]
    action_group = int(g.labels_[truth == 0][0])
    drama_group = 1 - action_group
    assert ports[action_group].top_entities[0]["entity"] == "genres:Action"
    assert ports[drama_group].top_entities[0]["entity"] == "genres:Drama"
    # Comedy is everywhere: lift 1 in both groups
    comedy = {e["entity"]: e["lift"] for e in ports[action_group].top_entities}["genres:Comedy"]
    assert comedy == pytest.approx(1.0)
    assert all(100 <= i["item"] <= 103 for i in ports[action_group].top_items[:3])
    assert ports[action_group].attribute_mix["country"] == {"fr": 1.0}
    json.dumps([p.to_dict() for p in ports])  # JSON-able
    assert "genres:Action" in portraits_table(ports)


def test_save_load_round_trip(tmp_path):
    vecs, ui, _, attrs, _ = _planted()
    g = UserGroups(n_groups_range=(2, 3), random_state=0).fit(vecs, attrs, user_items=ui)
    ports = g.portraits(ui, user_attributes=attrs)
    g.save(tmp_path, portraits=ports)
    assert {p.name for p in tmp_path.iterdir()} == {"groups.json", "groups.safetensors"}
    h = UserGroups.load(tmp_path)
    assert h.portraits_ == ports
    assert h.get_config() == g.get_config()
    assert h.to_dict() == g.to_dict()
    np.testing.assert_allclose(h.group_popularity_, g.group_popularity_, rtol=1e-6)
    assert h.predict(vecs, attrs).tolist() == g.predict(vecs, attrs).tolist()
    (tmp_path / "groups.json").write_text("{}")
    with pytest.raises(BundleError):
        UserGroups.load(tmp_path)


def test_fit_validates():
    with pytest.raises(InputError):
        UserGroups().fit(np.zeros((1, 3)))
    with pytest.raises(InputError):
        UserGroups(n_groups_range=(1, 3)).fit(np.random.default_rng(0).normal(size=(10, 2)))
    with pytest.raises(InputError):
        UserGroups().predict(np.zeros((1, 3)))


def test_group_item_popularity_rows():
    pop = group_item_popularity(np.array([0, 0, 1]), sp.csr_matrix(np.eye(3)), 3)
    np.testing.assert_allclose(pop, [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0]])


def test_plot_groups_writes_png(tmp_path):
    vecs, ui, items, _, _ = _planted()
    ent, names = item_entity_matrix(items)
    g = UserGroups(n_groups=2, random_state=0).fit(vecs)
    out = plot_groups(vecs, g.labels_, g.portraits(ui, ent, names), tmp_path / "g.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert isinstance(GroupPortrait(0, 1, 1.0).to_dict(), dict)


# ---------------------------------------------------------------- group recommendations
TOY = np.array(
    [
        # items:  0    1    2    3
        [1.0, 0.8, 0.0, 0.5],  # member A loves 0, hates 2
        [0.0, 0.7, 1.0, 0.5],  # member B hates 0, loves 2
        [0.9, 0.6, 0.9, 0.4],  # member C likes 0 and 2
    ]
)


def test_least_misery_on_toy_matrix():
    scores = aggregate_group_scores(TOY, "least_misery", normalise="none")
    np.testing.assert_allclose(scores, [0.0, 0.6, 0.0, 0.4])
    idx, s = top_k_for_group(TOY, 2, "least_misery", normalise="none")
    assert idx.tolist() == [1, 3] and s.tolist() == [0.6, 0.4]


def test_other_strategies_on_toy_matrix():
    avg = aggregate_group_scores(TOY, "average", normalise="none")
    np.testing.assert_allclose(avg, [1.9 / 3, 0.7, 1.9 / 3, 1.4 / 3])
    mp = aggregate_group_scores(TOY, "most_pleasure", normalise="none")
    np.testing.assert_allclose(mp, [1.0, 0.8, 1.0, 0.5])
    # Borda: A ranks 0,1,3,2 ; B ranks 2,1,3,0 ; C ranks 0,2,1,3 (tie 0/2 -> lower index)
    np.testing.assert_allclose(
        aggregate_group_scores(TOY, "borda"), [3 + 0 + 3, 2 + 2 + 1, 0 + 3 + 2, 1 + 1 + 0]
    )
    awm = aggregate_group_scores(TOY, "average_without_misery", normalise="none", threshold=0.3)
    assert int(np.argmax(awm)) == 1 and awm[0] < awm[3] and awm[2] < awm[3]
    assert set(STRATEGIES) >= {"average", "least_misery", "most_pleasure", "borda"}


def test_group_recs_exclude_normalise_and_errors():
    idx, _ = top_k_for_group(TOY, 2, "average", exclude=np.array([1]))
    assert 1 not in idx.tolist()
    # minmax per member: a member's scale does not matter
    scaled = TOY * np.array([[10.0], [1.0], [1.0]])
    np.testing.assert_allclose(
        aggregate_group_scores(scaled, "average"), aggregate_group_scores(TOY, "average")
    )
    with_inf = TOY.copy()
    with_inf[0, 2] = -np.inf
    assert np.isfinite(aggregate_group_scores(with_inf, "least_misery")).all()
    with pytest.raises(InputError):
        aggregate_group_scores(TOY, "dictator")
    with pytest.raises(InputError):
        top_k_for_group(TOY, 0)


def test_group_context_picks_the_shared_group_and_mean_profile():
    vecs, ui, _, _, truth = _planted()
    g = UserGroups(n_groups=2, random_state=0).fit(vecs)
    group, prof = group_context(vecs[:3], np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]), g)
    assert group == int(g.labels_[0])
    np.testing.assert_allclose(prof, [0.5, 0.5])
    assert group_context(vecs[:2]) == (None, None)


def test_taste_groups_find_planted_tastes_and_say_so() -> None:
    """Three planted tastes (each over-watches its own two genres) are found exactly,
    every portrait's top lift is high, and another seed gives the same groups."""
    from sklearn.metrics import adjusted_rand_score

    from recommender.group_taste import top_lifts

    rng = np.random.default_rng(0)
    planted = np.repeat([0, 1, 2], 20)
    counts = rng.poisson(1.0, size=(60, 6)).astype(float)
    for u, g in enumerate(planted):
        counts[u, 2 * g : 2 * g + 2] += rng.poisson(8.0, size=2)
    vecs = rng.normal(size=(60, 4))  # vectors carry no taste here
    a = UserGroups(n_groups_range=(2, 5), random_state=0).fit(vecs, entity_counts=counts)
    b = UserGroups(n_groups_range=(2, 5), random_state=7).fit(vecs, entity_counts=counts)
    assert a.n_groups_ == 3
    assert adjusted_rand_score(planted, a.labels_) == 1.0
    assert adjusted_rand_score(a.labels_, b.labels_) == 1.0
    assert top_lifts(a.labels_, counts, 3).min() >= 1.5
    # new users are placed by their vector against the groups' mean vectors
    assert a.centers_.shape == (3, 4)
    assert set(a.predict(rng.normal(size=(10, 4))).tolist()) <= {0, 1, 2}
