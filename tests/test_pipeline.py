from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recommender.errors import InputError, NotFoundError
from recommender.refresh import apply_events
from recommender.serving import Request, load_model, recommend_batch
from recommender.topk import top_k


def ids(rec):
    return [i.item_id for i in rec.items]


@pytest.fixture
def rec(toy_bundle):
    """Pure relevance: the reranker is switched off for the known-answer tests."""
    import dataclasses

    off = dataclasses.replace(
        toy_bundle, config={**toy_bundle.config, "rerank": {"enabled": False}}
    )
    return load_model(off)


@pytest.fixture
def reranked(toy_bundle):
    return load_model(toy_bundle)


def test_crime_fan_gets_the_remaining_crime_film_first(rec):
    out = rec.recommend(user_id=10, k=3)
    assert ids(out)[0] == 3
    assert not out.cold_start
    assert {1, 2}.isdisjoint(ids(out))


def test_seen_items_can_be_kept(rec):
    # user 10 watched Heat (1) then Collateral (2): the newer one weighs more
    assert ids(rec.recommend(user_id=10, k=2, exclude_seen=False)) == [2, 1]
    assert ids(
        rec.with_serving(position_decay=1.0).recommend(user_id=10, k=2, exclude_seen=False)
    ) == [1, 2]


def test_history_without_user(rec):
    out = rec.recommend(history=[4], k=2)
    assert ids(out) == [5, 6]


def test_string_ids_are_accepted_for_int_catalogues(rec):
    assert ids(rec.recommend(user_id="10", k=1)) == ids(rec.recommend(user_id=10, k=1))
    assert ids(rec.recommend(history=["4"], k=1)) == [5]


def test_unknown_user_is_a_cold_start_with_popular_items(rec):
    out = rec.recommend(user_id=999, k=2)
    assert out.cold_start
    assert ids(out)[0] == 4  # watched by three users


def test_query_is_encoded_and_used(toy_bundle):
    # a fake encoder that maps any text to the sci-fi axis
    rec = load_model(toy_bundle, encode=lambda texts: np.tile([0, 0, 1, 0], (len(texts), 1)))
    out = rec.recommend(query="space monsters", k=2)
    assert ids(out) == [7, 8] and not out.cold_start


def test_query_blends_with_history(toy_bundle):
    rec = load_model(toy_bundle, encode=lambda texts: np.tile([0, 0, 1, 0], (len(texts), 1)))
    out = rec.recommend(user_id=10, query="space monsters", k=3)
    assert ids(out)[0] in (7, 8) and 3 in ids(out)


def test_include_and_exclude_filters(rec):
    out = rec.recommend(user_id=10, k=5, include={"genres": ["comedy"]})
    assert set(ids(out)) == {4, 5, 6}
    out = rec.recommend(user_id=30, k=5, exclude={"genres": ["Animation", "Horror"]})
    assert set(ids(out)) == {2, 3}


def test_unknown_filter_attribute_names_the_field(rec):
    with pytest.raises(InputError) as info:
        rec.recommend(user_id=10, include={"colour": ["red"]})
    assert info.value.field == "include.colour"


@pytest.mark.parametrize("k", [0, -1, 101, 2.5, True])
def test_k_out_of_range(rec, k):
    with pytest.raises(InputError) as info:
        rec.recommend(user_id=10, k=k)
    assert info.value.field == "k"


def test_unknown_history_item_names_its_position(rec):
    with pytest.raises(NotFoundError) as info:
        rec.recommend(history=[1, 12345])
    assert info.value.field == "history[1]"


def test_fewer_items_than_k(rec):
    out = rec.recommend(user_id=30, k=10)
    assert len(out.items) == 4  # 8 items, 4 seen


def test_batch_equals_single(rec):
    reqs = [Request(user_id=u, k=3) for u in (10, 20, 30, 999)] + [Request(history=[7], k=2)]
    batch = rec.recommend_batch(reqs)
    for req, got in zip(reqs, batch, strict=True):
        one = rec.recommend(req)
        assert ids(got) == ids(one)
        assert [i.score for i in got.items] == pytest.approx([i.score for i in one.items])


def test_similar_items(rec):
    out = rec.similar_items(7, k=1)
    assert [i.item_id for i in out] == [8]
    with pytest.raises(NotFoundError):
        rec.similar_items(404)


def test_top_k_pads_and_respects_masks():
    scores = np.array([[0.5, 0.1, 0.9], [0.2, 0.8, 0.4]])
    idx, sc = top_k(
        scores, 4, exclude=[np.array([2]), np.array([])], allowed=np.array([True, True, True])
    )
    assert idx.tolist() == [[0, 1, -1, -1], [1, 2, 0, -1]]
    assert np.isneginf(sc[0, 2])


def test_response_is_json_ready(rec):
    import json

    d = rec.recommend(user_id=10, k=2).to_dict()
    assert json.loads(json.dumps(d))["items"][0]["item_id"] == 3


def test_reranker_with_neutral_knobs_keeps_relevance_order(rec, reranked):
    neutral = {"diversity": 0.0, "calibration": 0.0, "longtail_min_share": 0.0}
    for user in (10, 20, 30):
        assert ids(reranked.recommend(user_id=user, k=3, knobs=neutral)) == ids(
            rec.recommend(user_id=user, k=3)
        )


def test_diversity_knob_mixes_clusters(reranked):
    # user 10 likes crime; with heavy diversity the top 2 must span two clusters
    plain = ids(
        reranked.recommend(history=[1], k=2, knobs={"diversity": 0.0, "longtail_min_share": 0.0})
    )
    diverse = ids(
        reranked.recommend(history=[1], k=2, knobs={"diversity": 0.9, "longtail_min_share": 0.0})
    )
    assert plain == [2, 3]
    assert diverse[0] == 2 and diverse[1] not in (2, 3)


def test_unknown_knob_is_a_422_naming_it(reranked):
    with pytest.raises(InputError) as info:
        reranked.recommend(user_id=10, knobs={"sparkle": 1.0})
    assert info.value.field == "knobs.sparkle" and "diversity" in info.value.message
    with pytest.raises(InputError) as info:
        reranked.recommend(user_id=10, knobs={"diversity": 7.0})
    assert info.value.field == "knobs.diversity"


def test_knobs_without_the_reranker_are_refused(rec):
    with pytest.raises(InputError) as info:
        rec.recommend(user_id=10, knobs={"diversity": 0.5})
    assert info.value.field == "knobs"


def test_exclude_items_are_never_returned(rec):
    full = ids(rec.recommend(user_id=10, k=3))
    out = rec.recommend(user_id=10, k=3, exclude_items=[full[0], "5"])
    assert full[0] not in ids(out) and 5 not in ids(out) and len(out.items) == 3
    with pytest.raises(NotFoundError) as info:
        rec.recommend(user_id=10, exclude_items=[3, 404])
    assert info.value.field == "exclude_items[1]"


def test_rerank_can_be_switched_off_per_request(rec, reranked):
    assert ids(reranked.recommend(user_id=30, k=3, rerank=False)) == ids(
        rec.recommend(user_id=30, k=3)
    )


def test_feedback_events_reflect_at_once(rec):
    before = ids(rec.recommend(user_id=10, k=3))
    assert 3 in before
    apply_events(rec, pd.DataFrame({"user_id": [10], "item_id": [3], "timestamp": [10**9]}))
    after = ids(rec.recommend(user_id=10, k=3))
    assert 3 not in after
    # a brand-new user is no longer a cold start after one event
    apply_events(rec, pd.DataFrame({"user_id": [777], "item_id": [7], "timestamp": [5]}))
    out = rec.recommend(user_id=777, k=1)
    assert not out.cold_start and ids(out) == [8]


def test_feedback_with_unknown_item_names_the_row(rec):
    with pytest.raises(NotFoundError) as info:
        events = pd.DataFrame({"user_id": [1, 1], "item_id": [1, 999], "timestamp": [1, 2]})
        apply_events(rec, events)
    assert info.value.field == "events[1].item_id"


@pytest.fixture
def with_graph(toy_bundle):
    from knowledge_graph import KnowledgeGraph

    toy_bundle.components["graph"] = KnowledgeGraph.build(toy_bundle.items)
    return load_model(toy_bundle)


def test_explanations_cite_only_the_users_history(with_graph):
    out = with_graph.recommend(
        user_id=10, k=3, explain=True, knobs={"diversity": 0.0, "longtail_min_share": 0.0}
    )
    assert ids(out)[0] == 3
    thief = out.items[0]
    assert thief.reasons, "the top item must be explained"
    cited = {r["from_item"] for item in out.items for r in item.reasons if r["from_item"]}
    assert cited <= {1, 2}
    text = " ".join(r["text"] for r in thief.reasons)
    assert "Michael Mann" in text


def test_explain_off_means_no_reasons(with_graph):
    out = with_graph.recommend(user_id=10, k=3)
    assert all(not i.reasons for i in out.items)


def test_graph_expansion_weight_is_a_knob(with_graph):
    base = with_graph.recommend(user_id=20, k=3, knobs={"kg_weight": 0.0})
    assert len(base.items) == 3
    with pytest.raises(InputError) as info:
        with_graph.recommend(user_id=20, knobs={"kg_weight": -1})
    assert info.value.field == "knobs.kg_weight"


def test_query_naming_an_entity_reaches_its_items(with_graph):
    # the fake-free pipeline needs an encoder for queries; use one that knows nothing
    rec = with_graph
    rec.encode_fn = lambda texts: np.zeros((len(texts), 4), dtype=np.float32)
    out = rec.recommend(query="anything by Michael Mann", k=3, explain=True)
    assert set(ids(out)) == {1, 2, 3}
    assert all(r["source"] == "query" for i in out.items for r in i.reasons)


def test_approximate_index_gives_the_exact_answers_on_a_small_catalogue(toy_bundle):
    import dataclasses

    off = dataclasses.replace(
        toy_bundle, config={**toy_bundle.config, "rerank": {"enabled": False}}
    )
    exact, ann = load_model(off, index="exact"), load_model(off, index="ann")
    assert exact.index is None and ann.index is not None
    for req in (
        Request(user_id=10, k=3),
        Request(user_id=30, k=4),
        Request(history=[7], k=2, include={"genres": ["Action"]}),
    ):
        assert ids(ann.recommend(req)) == ids(exact.recommend(req))
    # items 3 and 6 tie as second neighbours of 7, so compare the first
    assert [i.item_id for i in ann.similar_items(7, k=1)] == [8]


def test_queries_encode_in_one_call_unless_given(toy_bundle):
    calls: list[list[str]] = []

    def encode(texts):
        calls.append(list(texts))
        return np.tile([0, 0, 1, 0], (len(texts), 1)).astype(np.float32)

    rec = load_model(toy_bundle, encode=encode)
    reqs = [Request(query="space", k=2), Request(user_id=10, k=2), Request(query="more", k=2)]
    first = recommend_batch(rec, reqs)
    assert calls == [["space", "more"]]  # the batch's queries, one call
    given = [np.array([0, 0, 1, 0], np.float32), None, np.array([0, 0, 1, 0], np.float32)]
    again = recommend_batch(rec, reqs, query_vectors=given)
    assert len(calls) == 1  # nothing left to encode: no call at all
    assert [ids(a) for a in again] == [ids(f) for f in first]


def test_a_request_scores_the_same_alone_and_in_a_batch(reranked):
    reqs = [Request(user_id=10, k=4), Request(history=[4, 5], k=3), Request(user_id=30)]
    together = recommend_batch(reranked, reqs)
    for req, batched in zip(reqs, together, strict=True):
        alone = recommend_batch(reranked, [req])[0]
        assert [i.item_id for i in alone.items] == [i.item_id for i in batched.items]
        assert [i.score for i in alone.items] == [i.score for i in batched.items]  # exactly


def test_a_query_vector_of_another_size_is_refused(rec):
    with pytest.raises(InputError, match="query_vectors have 3 dimensions") as err:
        recommend_batch(rec, [Request(query="crime", k=2)], query_vectors=[np.ones(3, np.float32)])
    assert err.value.field == "query_vectors"
