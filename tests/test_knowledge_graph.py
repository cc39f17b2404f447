"""Knowledge graph: build, expansion order, best paths, round-trips, query matching."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge_graph import (
    GraphConfig,
    KnowledgeGraph,
    WalkStart,
    blend,
    build_graph,
    detect_entity_columns,
    export_graphml,
    from_node_link,
    graph_stats,
    plot_ego,
    stats_table,
    to_node_link,
)
from knowledge_graph.explain import sentence
from recommender.errors import InputError, NotFoundError
from tests import toy

#: the shared toy catalogue, with free-form tags as well
ITEMS = toy.ITEMS.assign(
    tags=["heist|los angeles", "los angeles", "heist", "pixar", "pixar", "pixar", "", ""]
)[["item_id", "title", "genres", "director", "tags", "year"]]
HEAT, COLLATERAL, THIEF, TOY, UP, CARS, ALIEN, ALIENS = range(8)
#: Unit weights, no year entities, nothing dropped for being common: hand-computable.
PLAIN = GraphConfig(entity_columns=["genres", "director", "tags"], idf=False, max_entity_share=1.0)


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return KnowledgeGraph.build(ITEMS, config=GraphConfig(max_entity_share=1.0))


# -- build -------------------------------------------------------------------------------
def test_nodes_are_typed_and_keyed_unambiguously(kg: KnowledgeGraph) -> None:
    G = kg.G
    assert G.nodes["item:1"] == {
        "kind": "item",
        "item_id": 1,
        "index": 0,
        "title": "Heat (1995)",
        "label": "Heat (1995)",
    }
    crime = G.nodes["genre:Crime"]
    assert (crime["kind"], crime["label"], crime["support"], crime["column"]) == (
        "genre",
        "Crime",
        3,
        "genres",
    )
    assert G.nodes["director:Michael Mann"]["support"] == 3
    assert G.nodes["decade:1990s"]["support"] == 2  # Heat and Toy Story
    assert G.nodes["year:1995"]["support"] == 2
    assert set(G["item:1"]) == {
        "genre:Action",
        "genre:Crime",
        "director:Michael Mann",
        "tag:heist",
        "tag:los angeles",
        "year:1995",
        "decade:1990s",
    }


def test_rare_entities_are_dropped_and_common_ones_capped() -> None:
    G = build_graph(ITEMS, config=PLAIN)
    assert "genre:Drama" not in G  # on one item only
    assert "director:Ridley Scott" not in G
    G1 = build_graph(ITEMS, config=GraphConfig(entity_columns=["genres"], min_support=1))
    assert "genre:Drama" in G1
    # 3 of 8 items carry Action: above a 0.3 share, so it goes; Horror (2 of 8) stays
    G2 = build_graph(ITEMS, config=GraphConfig(entity_columns=["genres"], max_entity_share=0.3))
    assert "genre:Action" not in G2 and "genre:Horror" in G2


def test_idf_weights_rank_rare_entities_above_common_ones(kg: KnowledgeGraph) -> None:
    w = kg.G.edges
    heist = w["item:1", "tag:heist"]["weight"]  # support 2
    action = w["item:1", "genre:Action"]["weight"]  # support 3
    assert heist == pytest.approx(np.log1p(8 / 2))
    assert action == pytest.approx(np.log1p(8 / 3))
    assert heist > action
    plain = build_graph(ITEMS, config=PLAIN)
    assert {d["weight"] for *_, d in plain.edges(data=True)} == {1.0}


def test_column_and_type_weights_multiply() -> None:
    cfg = GraphConfig(
        entity_columns=["genres", "year"],
        max_entity_share=1.0,
        column_weights={"genres": 2.0},
        type_weights={"decade": 0.5},
    )
    G = build_graph(ITEMS, config=cfg)
    assert G.edges["item:1", "genre:Crime"]["weight"] == pytest.approx(2 * np.log1p(8 / 3))
    assert G.edges["item:1", "decade:1990s"]["weight"] == pytest.approx(0.5 * np.log1p(8 / 2))


def test_auto_detection_keeps_categorical_and_multi_valued_columns() -> None:
    items = ITEMS.assign(
        sku=[f"SKU-{i}" for i in range(8)],
        price=[9.99, 12.5, 3.25, 9.99, 4.75, 8.0, 1.1, 2.2],
        description=["a long free text description of the film number " + str(i) for i in range(8)],
        brand=["A", "A", "B", "B", "C", "C", "D", "D"],
    )
    assert detect_entity_columns(items) == ["genres", "director", "tags", "year", "brand"]


def test_placeholder_values_are_not_entities() -> None:
    items = ITEMS.assign(genres=["(no genres listed)"] * 8)
    G = build_graph(items, config=GraphConfig(entity_columns=["genres"], max_entity_share=1.0))
    assert not [n for n, d in G.nodes(data=True) if d["kind"] == "genre"]


def test_users_link_to_their_attribute_entities() -> None:
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "country": ["FR", "FR", "DE"]})
    G = build_graph(ITEMS, users, config=PLAIN)
    assert G.nodes["user:u1"]["kind"] == "user"
    assert set(G["country:FR"]) == {"user:u1", "user:u2"}
    assert "country:DE" not in G  # below min_support


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(InputError, match="entity_columns"):
        build_graph(ITEMS, config=GraphConfig(entity_columns=["colour"]))
    with pytest.raises(InputError, match="duplicated"):
        build_graph(pd.concat([ITEMS, ITEMS.head(1)]))
    with pytest.raises(InputError, match="min_support"):
        GraphConfig(min_support=0)
    with pytest.raises(InputError, match="unknown key"):
        GraphConfig.from_config({"min_suport": 2})


def test_config_round_trips() -> None:
    cfg = GraphConfig(entity_columns=["genres"], column_weights={"genres": 2.0}, min_support=3)
    assert GraphConfig.from_config(json.loads(json.dumps(cfg.get_config()))) == cfg


# -- expansion ---------------------------------------------------------------------------
def test_two_hop_expansion_order_and_scores_are_known() -> None:
    # Heat has 5 entities (Action, Crime, Mann, heist, los angeles), each gets 1/5 of the
    # profile; with unit weights a candidate scores #shared / 5.
    kg = KnowledgeGraph.build(ITEMS, config=PLAIN)
    idx, scores = kg.expand([HEAT])
    assert idx.tolist() == [COLLATERAL, THIEF, ALIENS]
    np.testing.assert_allclose(scores, [4 / 5, 3 / 5, 1 / 5])


def test_cosine_expansion_divides_by_the_candidate_norm() -> None:
    # Collateral (4 entities) and Thief (3 entities) -> (#shared / sqrt(degree)) / 5
    kg = KnowledgeGraph.build(ITEMS, config=PLAIN)
    idx, scores = kg.expand([HEAT], method="cosine")
    assert idx.tolist() == [COLLATERAL, THIEF, ALIENS]
    np.testing.assert_allclose(scores, [4 / 2 / 5, 3 / np.sqrt(3) / 5, 1 / np.sqrt(3) / 5])


def test_idf_puts_the_rare_shared_entity_first() -> None:
    # Cars shares all of Up's links with Toy Story plus the rare director Lasseter; Heat
    # shares only the year and decade 1995 / 1990s, but both are rare (support 2), so
    # with IDF it outranks Up (pixar, Animation, Comedy: support 3 each); without, not.
    kg = KnowledgeGraph.build(ITEMS, config=GraphConfig(max_entity_share=1.0))
    assert kg.expand([TOY])[0][:3].tolist() == [CARS, HEAT, UP]
    flat = KnowledgeGraph.build(ITEMS, config=GraphConfig(max_entity_share=1.0, idf=False))
    assert flat.expand([TOY])[0][:3].tolist() == [CARS, UP, HEAT]


def test_expansion_excludes_seeds_and_respects_n_and_exclude(kg: KnowledgeGraph) -> None:
    idx, _ = kg.expand([HEAT, TOY], n=3, exclude=np.array([COLLATERAL]))
    assert len(idx) == 3
    assert not {HEAT, TOY, COLLATERAL} & set(idx.tolist())


def test_seed_weights_steer_the_expansion(kg: KnowledgeGraph) -> None:
    heat_first = kg.expand([HEAT, TOY], np.array([1.0, 0.01]))[0]
    toy_first = kg.expand([HEAT, TOY], np.array([0.01, 1.0]))[0]
    assert heat_first[0] in (COLLATERAL, THIEF)
    assert toy_first[0] in (UP, CARS)


def test_query_entities_alone_expand_to_their_items(kg: KnowledgeGraph) -> None:
    idx, _ = kg.expand(query_entities=["tag:pixar", "tag:not-an-entity"])
    assert set(idx[:3].tolist()) == {TOY, UP, CARS}


@pytest.mark.parametrize("method", ["two_hop", "cosine", "ppr"])
def test_walks_made_together_each_give_what_they_give_alone(
    kg: KnowledgeGraph, method: str
) -> None:
    """A serving batch walks its requests together; each answer must be the one it
    gets alone, whatever its batch-mates' seeds, weights, query entities and exclusions."""
    starts = [
        WalkStart(np.array([HEAT, TOY]), np.array([1.0, 0.2]), exclude=np.array([COLLATERAL])),
        WalkStart(np.array([], dtype=np.int64), None, kg.entity_columns(["tag:pixar"])),
        WalkStart(np.array([HEAT]), None, kg.entity_columns(["tag:heist"]), query_weight=0.3),
    ]
    together = kg.expand_many(starts, n=4, method=method)  # type: ignore[arg-type]
    for start, (idx, scores) in zip(starts, together, strict=True):
        alone_idx, alone_scores = kg.expand_many([start], n=4, method=method)[0]  # type: ignore[arg-type]
        assert idx.tolist() == alone_idx.tolist() and len(idx)
        np.testing.assert_array_equal(scores, alone_scores)
    # the same as the one-request form, which names query entities by node
    assert COLLATERAL in together[2][0].tolist()  # excluded by the first walk only
    idx, scores = kg.expand(
        [HEAT], query_entities=["tag:heist"], query_weight=0.3, n=4, method=method
    )  # type: ignore[arg-type]
    assert idx.tolist() == together[2][0].tolist()
    np.testing.assert_array_equal(scores, together[2][1])
    with pytest.raises(InputError, match="query_weight"):
        kg.expand_many([WalkStart(np.array([HEAT]), query_weight=1.5)], method=method)  # type: ignore[arg-type]


def test_personalized_pagerank_agrees_on_the_nearest_item() -> None:
    kg = KnowledgeGraph.build(ITEMS, config=PLAIN)
    idx, scores = kg.expand([HEAT], method="ppr")
    assert idx[0] == COLLATERAL
    assert HEAT not in idx.tolist() and np.all(np.diff(scores) <= 0)
    with pytest.raises(InputError, match="method"):
        kg.expand([HEAT], method="bfs")  # type: ignore[arg-type]


def test_blend_adds_normalised_kg_scores() -> None:
    out = blend(np.array([0.5, 0.4, 0.1]), np.array([2]), np.array([7.0]), 0.3)
    np.testing.assert_allclose(out, [0.5, 0.4, 0.4])
    np.testing.assert_array_equal(blend(np.ones(3), np.array([0]), np.array([1.0]), 0.0), 1.0)


# -- query matching ----------------------------------------------------------------------
def test_query_matches_entities_and_titles(kg: KnowledgeGraph) -> None:
    m = kg.match_query("something like Heat but funnier with pixar")
    assert m.entities == ["tag:pixar"]
    assert m.items == [HEAT]
    assert kg.match_query("any COMEDY?").entities == ["genre:Comedy"]
    # longest match first: "los angeles" is one entity, not two words
    assert kg.match_query("a heist in Los Angeles").entities == ["tag:los angeles", "tag:heist"]
    assert kg.match_query("Michael Mann films").entities == ["director:Michael Mann"]
    assert kg.match_query("90s movies").entities == ["decade:1990s"]


def test_one_word_titles_need_their_capitals(kg: KnowledgeGraph) -> None:
    assert kg.match_query("too much heat today").items == []
    assert kg.match_query("cars").items == []
    assert kg.match_query("like Cars").items == [CARS]
    assert kg.match_query("like toy story").items == [TOY]  # multi-word: any case
    assert kg.match_query("").entities == []


# -- explanations ------------------------------------------------------------------------
def test_best_path_is_known(kg: KnowledgeGraph) -> None:
    (r,) = kg.explain(THIEF, [HEAT, TOY])
    assert (r.from_item, r.from_title, r.source) == (1, "Heat (1995)", "history")
    assert r.via[0] == {"type": "tag", "value": "heist"}  # rarest shared entity first
    assert {(v["type"], v["value"]) for v in r.via} == {
        ("tag", "heist"),
        ("genre", "Crime"),
        ("director", "Michael Mann"),
    }
    assert r.text.startswith("Because you liked Heat (1995), which shares the tag 'heist'")
    d = r.to_dict()
    assert set(d) == {"from_item", "from_title", "via", "score", "text", "source"}
    json.dumps(d)


def test_reasons_are_ordered_by_path_strength(kg: KnowledgeGraph) -> None:
    reasons = kg.explain(COLLATERAL, [THIEF, HEAT, UP])
    # Heat shares 4 entities, Thief 2 (Crime, Mann), Up only the decade 2000s
    assert [r.from_item for r in reasons] == [1, 3, 5]
    assert reasons[0].score > reasons[1].score > reasons[2].score
    assert reasons[2].via == [{"type": "decade", "value": "2000s"}]


def test_query_reason_comes_first(kg: KnowledgeGraph) -> None:
    reasons = kg.explain(UP, [CARS], query_entities=["tag:pixar"], max_reasons=2)
    assert reasons[0].from_item is None and reasons[0].source == "query"
    assert reasons[0].text == "Matches your search for the tag 'pixar'"
    assert reasons[1].from_item == 6
    asked = kg.explain(UP, [], query_items=[CARS])
    assert asked[0].text.startswith("Because you asked for something like Cars (2006)")


def test_no_shared_entity_means_no_reason(kg: KnowledgeGraph) -> None:
    assert kg.explain(ALIEN, [TOY]) == []
    assert kg.explain(ALIEN, []) == []


def test_batch_equals_single(kg: KnowledgeGraph) -> None:
    hist = [HEAT, TOY, ALIEN]
    batch = kg.explain_batch([COLLATERAL, UP, ALIENS], hist)
    single = [kg.explain(i, hist) for i in (COLLATERAL, UP, ALIENS)]
    assert [[r.to_dict() for r in rs] for rs in batch] == [
        [r.to_dict() for r in rs] for rs in single
    ]


@settings(max_examples=40, deadline=None)
@given(
    history=st.lists(st.integers(0, 7), max_size=6),
    items=st.lists(st.integers(0, 7), min_size=1, max_size=8),
)
def test_explanations_only_cite_history_items(history: list[int], items: list[int]) -> None:
    kg = _KG
    allowed = {ITEMS.item_id[i] for i in history}
    for i, reasons in zip(items, kg.explain_batch(items, history), strict=True):
        assert len(reasons) <= 3
        for r in reasons:
            assert r.from_item in allowed
            assert r.from_item != ITEMS.item_id[i]  # an item never explains itself
            assert r.via and r.score > 0


_KG = KnowledgeGraph.build(ITEMS, config=GraphConfig(max_entity_share=1.0))


def test_sentence_groups_entities_by_type() -> None:
    from knowledge_graph.explain import Reason

    r = Reason(
        1,
        "Heat (1995)",
        [
            {"type": "genre", "value": "Action"},
            {"type": "genre", "value": "Crime"},
            {"type": "category", "value": "Film"},
            {"type": "category", "value": "Noir"},
        ],
        1.0,
        "",
    )
    assert sentence(r) == (
        "Because you liked Heat (1995), which shares the genres Action and Crime "
        "and the categories Film and Noir"
    )


# -- serialisation -----------------------------------------------------------------------
def _same_graph(a: nx.Graph, b: nx.Graph) -> None:
    assert dict(a.nodes(data=True)) == dict(b.nodes(data=True))
    assert {frozenset((u, v)): d for u, v, d in a.edges(data=True)} == {
        frozenset((u, v)): d for u, v, d in b.edges(data=True)
    }
    assert a.graph == b.graph


def test_node_link_round_trip_preserves_everything(kg: KnowledgeGraph) -> None:
    data = json.loads(json.dumps(to_node_link(kg.G)))
    _same_graph(kg.G, from_node_link(data))


def test_save_load_round_trip_gives_the_same_answers(kg: KnowledgeGraph, tmp_path) -> None:
    path = kg.save(tmp_path)
    assert path.name == "graph.json"
    kg2 = KnowledgeGraph.load(tmp_path)
    _same_graph(kg.G, kg2.G)
    assert (kg.A != kg2.A).nnz == 0 and kg.entity_nodes == kg2.entity_nodes
    for a, b in zip(kg.expand([HEAT, UP]), kg2.expand([HEAT, UP]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.to_dict() for r in kg.explain(THIEF, [HEAT])] == [
        r.to_dict() for r in kg2.explain(THIEF, [HEAT])
    ]
    kg2.check_items(ITEMS.item_id.tolist())


def test_string_ids_round_trip(tmp_path) -> None:
    items = ITEMS.assign(item_id=[f"m{i}" for i in range(8)])
    kg = KnowledgeGraph.build(items, config=PLAIN)
    kg2 = KnowledgeGraph.load(kg.save(tmp_path / "kg.json"))
    assert kg2.item_ids == [f"m{i}" for i in range(8)]
    assert kg2.item_index("m2") == 2
    with pytest.raises(NotFoundError):
        kg2.item_index("nope")


def test_graphml_export_reads_back(kg: KnowledgeGraph, tmp_path) -> None:
    export_graphml(kg.G, tmp_path / "kg.graphml")
    H = nx.read_graphml(tmp_path / "kg.graphml")
    assert H.number_of_nodes() == kg.G.number_of_nodes()
    assert H.number_of_edges() == kg.G.number_of_edges()
    assert H.nodes["genre:Crime"]["support"] == 3


# -- stats and pictures ------------------------------------------------------------------
def test_stats_count_nodes_and_edges_by_type(kg: KnowledgeGraph) -> None:
    s = graph_stats(kg.G)
    assert s["nodes_by_kind"]["item"] == 8
    assert s["edges_by_type"]["item-director"] == 5  # 3 Mann + 2 Lasseter
    assert sum(s["edges_by_type"].values()) == s["n_edges"]
    assert s["degree"]["item"]["max"] == 7  # Heat
    assert s["top_entities"]["genre"][0] == ("Action", 3)
    assert stats_table(s).row_count == len(s["nodes_by_kind"])


def test_plot_ego_writes_a_png(kg: KnowledgeGraph, tmp_path) -> None:
    out = plot_ego(kg.G, "item:1", tmp_path / "heat.png", radius=2, max_nodes=12)
    assert out.read_bytes()[:4] == b"\x89PNG"
    user = plot_ego(kg.G, "user:42", tmp_path / "u.png", history=["item:1", "item:4"])
    assert user.is_file()
    with pytest.raises(NotFoundError):
        plot_ego(kg.G, "item:999", tmp_path / "x.png")
