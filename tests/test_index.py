"""Vector indexes: known answers, exclusions, masks, batch == single, ANN recall, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.errors import InputError
from recommender.index import (
    ANNIndex,
    ExactIndex,
    VectorIndex,
    load_index,
    make_index,
    recall_at_k,
)

# Four unit vectors on a circle at 0, 30, 60 and 90 degrees.
ANGLES = np.deg2rad([0.0, 30.0, 60.0, 90.0])
CIRCLE = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)
EAST = np.array([1.0, 0.0], dtype=np.float32)


def _unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def random_set() -> tuple[np.ndarray, np.ndarray]:
    return _unit(2000, 32, 0), _unit(30, 32, 1)


@pytest.fixture(scope="module")
def ann(random_set) -> ANNIndex:  # noqa: ANN001
    return ANNIndex(M=16, ef_construction=64, ef_search=64).build(random_set[0])


def _indexes(vectors: np.ndarray) -> list[VectorIndex]:
    return [
        ExactIndex().build(vectors),
        ANNIndex(M=8, ef_search=16).build(vectors),
        ANNIndex(method="ivf", nlist=2, nprobe=2).build(vectors),
    ]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["exact", "hnsw", "ivf"])
def test_known_answer(which: int) -> None:
    index = _indexes(CIRCLE)[which]
    idx, scores = index.search(EAST[None, :], 3)
    assert idx.tolist() == [[0, 1, 2]]
    np.testing.assert_allclose(scores[0], np.cos(ANGLES[:3]), atol=1e-6)
    assert idx.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("which", [0, 1, 2], ids=["exact", "hnsw", "ivf"])
def test_exclusions_and_padding(which: int) -> None:
    index = _indexes(CIRCLE)[which]
    idx, scores = index.search(EAST, 4, exclude=[np.array([0, 2])])
    assert idx.tolist() == [[1, 3, -1, -1]]
    assert np.isneginf(scores[0, 2:]).all()
    np.testing.assert_allclose(scores[0, :2], [np.cos(ANGLES[1]), 0.0], atol=1e-6)


@pytest.mark.parametrize("which", [0, 1, 2], ids=["exact", "hnsw", "ivf"])
def test_allowed_mask_shared_and_per_row(which: int) -> None:
    index = _indexes(CIRCLE)[which]
    mask = np.array([False, True, False, True])
    idx, _ = index.search(np.stack([EAST, EAST]), 3, allowed_mask=mask)
    assert idx.tolist() == [[1, 3, -1], [1, 3, -1]]
    per_row = np.array([[True, False, True, False], [False, False, False, True]])
    idx, _ = index.search(np.stack([EAST, EAST]), 2, allowed_mask=per_row)
    assert idx.tolist() == [[0, 2], [3, -1]]


def test_mask_and_exclusions_combine_on_the_graph_path(random_set) -> None:  # noqa: ANN001
    vectors, queries = random_set
    exact = ExactIndex().build(vectors)
    # exact_subset_max=0 forces the faiss selector path even for a small subset.
    index = ANNIndex(M=16, ef_search=32, exact_subset_max=0).build(vectors)
    mask = np.zeros(len(vectors), dtype=bool)
    mask[::50] = True  # 40 items allowed
    exclude = [np.flatnonzero(mask)[:35]] * len(queries)  # leaves 5 eligible
    idx, _ = index.search(queries, 10, exclude=exclude, allowed_mask=mask)
    want, _ = exact.search(queries, 10, exclude=exclude, allowed_mask=mask)
    assert (idx[:, 5:] == -1).all()
    assert np.array_equal(np.sort(idx[:, :5], axis=1), np.sort(want[:, :5], axis=1))


def test_batch_equals_single(random_set) -> None:  # noqa: ANN001
    vectors, queries = random_set
    rng = np.random.default_rng(2)
    exclude = [rng.choice(len(vectors), 20, replace=False) for _ in queries]
    for index in (ExactIndex(score_budget_mb=0).build(vectors), ANNIndex().build(vectors)):
        b_idx, b_sc = index.search(queries, 10, exclude=exclude)
        for i, q in enumerate(queries):
            s_idx, s_sc = index.search(q, 10, exclude=[exclude[i]])
            assert s_idx[0].tolist() == b_idx[i].tolist()
            np.testing.assert_allclose(s_sc[0], b_sc[i], rtol=1e-5)


def test_exact_matches_brute_force(random_set) -> None:  # noqa: ANN001
    vectors, queries = random_set
    idx, scores = ExactIndex().build(vectors).search(queries, 5)
    full = queries @ vectors.T
    assert idx.tolist() == np.argsort(-full, axis=1)[:, :5].tolist()
    np.testing.assert_allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :5], rtol=1e-5)


def test_ann_recall_at_10(random_set, ann) -> None:  # noqa: ANN001
    vectors, queries = random_set
    truth, _ = ExactIndex().build(vectors).search(queries, 10)
    found, _ = ann.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.9


def test_ann_never_returns_excluded(random_set, ann) -> None:  # noqa: ANN001
    vectors, queries = random_set
    exact = ExactIndex().build(vectors)
    top, _ = exact.search(queries, 50)
    exclude = [row[:40] for row in top]  # the 40 best are excluded: ANN must dig deeper
    idx, _ = ann.search(queries, 10, exclude=exclude)
    for row, ex in zip(idx, exclude, strict=True):
        assert (row >= 0).all() and not np.isin(row, ex).any()
    want, _ = exact.search(queries, 10, exclude=exclude)
    assert recall_at_k(idx, want) >= 0.9


def test_make_index_picks_by_size(random_set) -> None:  # noqa: ANN001
    vectors, _ = random_set
    assert make_index(vectors, ann_threshold=10_000, ef_search=8).kind == "exact"
    assert make_index(vectors, ann_threshold=1000, ef_search=8).kind == "ann"
    assert make_index(vectors, kind="exact").kind == "exact"
    with pytest.raises(InputError, match="kind"):
        make_index(vectors, kind="lsh")


def test_config_round_trip() -> None:
    index = ANNIndex(method="ivf", nprobe=7, M=12)
    clone = ANNIndex.from_config(index.get_config())
    assert clone.get_config() == index.get_config()
    assert ExactIndex.from_config(ExactIndex().get_config()).get_config()["kind"] == "exact"


def test_save_load_same_answers(tmp_path, random_set, ann) -> None:  # noqa: ANN001
    vectors, queries = random_set
    ann.save(tmp_path / "ann")
    assert (tmp_path / "ann" / "index.faiss").exists()
    loaded = load_index(tmp_path / "ann", vectors)
    assert loaded.get_config() == ann.get_config()
    for a, b in zip(loaded.search(queries, 10), ann.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)
    ExactIndex().build(vectors).save(tmp_path / "exact")
    assert load_index(tmp_path / "exact", vectors).kind == "exact"


def test_load_rebuilds_when_vectors_changed(tmp_path, random_set, ann) -> None:  # noqa: ANN001
    vectors, queries = random_set
    ann.save(tmp_path)
    changed = vectors[::-1].copy()
    loaded = load_index(tmp_path, changed)
    truth, _ = ExactIndex().build(changed).search(queries, 10)
    assert recall_at_k(loaded.search(queries, 10)[0], truth) >= 0.9


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"queries": np.zeros((1, 3)), "k": 1}, "queries"),
        ({"queries": np.zeros((1, 2)), "k": 0}, "k"),
        ({"queries": np.zeros((2, 2)), "k": 1, "exclude": [np.array([0])]}, "exclude"),
        ({"queries": np.zeros((1, 2)), "k": 1, "exclude": [np.array([9])]}, "exclude[0]"),
        ({"queries": np.zeros((1, 2)), "k": 1, "allowed_mask": np.ones(3, bool)}, "allowed_mask"),
    ],
)
def test_bad_input_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        ExactIndex().build(CIRCLE).search(**kwargs)
    assert err.value.field == field
