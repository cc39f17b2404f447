"""The sequential recommender learns a planted pattern and survives save -> load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recommender.errors import BundleError, InputError
from recommender.train import SequenceRecommender, TrainConfig, sequences_from_interactions

N_ITEMS = 12


def _vectors(n: int = N_ITEMS, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _cycle_sequences(n_users: int = 40, length: int = 10) -> list[np.ndarray]:
    """Every user walks the cycle 0 -> 1 -> ... -> 11 -> 0 from a random start."""
    rng = np.random.default_rng(1)
    return [(rng.integers(N_ITEMS) + np.arange(length)) % N_ITEMS for _ in range(n_users)]


CONFIG = TrainConfig(
    dim=16,
    n_layers=1,
    n_heads=1,
    max_len=8,
    dropout=0.0,
    id_dropout=0.0,
    lr=1e-2,
    batch_size=16,
    max_epochs=40,
    patience=40,
    max_seconds=3600.0,  # a busy machine must not turn "max_epochs" into "time_cap"
    random_state=0,
    softmax="full",
    max_train_len=None,
)


@pytest.fixture(scope="module")
def fitted() -> SequenceRecommender:
    return SequenceRecommender(CONFIG).fit(_cycle_sequences(), _vectors(), progress=False)


def test_loss_falls(fitted: SequenceRecommender) -> None:
    losses = [e["loss"] for e in fitted.summary_["epochs"]]
    assert losses[-1] < 0.5 * losses[0]
    assert fitted.summary_["best_epoch"] >= 1
    assert "val_ndcg@10" in fitted.summary_["epochs"][0]


def test_planted_next_item_ranks_first(fitted: SequenceRecommender) -> None:
    histories = [np.array([(s + j) % N_ITEMS for j in range(5)]) for s in range(N_ITEMS)]
    scores = fitted.scores(histories, _vectors())
    expected = [(s + 5) % N_ITEMS for s in range(N_ITEMS)]
    assert scores.argmax(axis=1).tolist() == expected


def test_batch_equals_single(fitted: SequenceRecommender) -> None:
    vecs = _vectors()
    table = fitted.item_embeddings(vecs)
    histories = [np.array([1, 2, 3]), np.array([7]), np.array([4, 5, 6, 7, 8, 9, 10, 11, 0, 1])]
    batch = fitted.user_embeddings(histories, item_table=table)
    for h, row in zip(histories, batch, strict=True):
        np.testing.assert_allclose(fitted.user_embedding(h, item_table=table), row, atol=1e-5)


def test_save_load_identical_scores(fitted: SequenceRecommender, tmp_path) -> None:
    vecs = _vectors()
    histories = [np.array([3, 4, 5]), np.array([11, 0])]
    fitted.save(tmp_path)
    assert (tmp_path / "user_tower.safetensors").is_file()
    assert (tmp_path / "tower_config.json").is_file()
    # on the device it was trained on (CUDA where present): the same arithmetic, the same bits
    loaded = SequenceRecommender.load(tmp_path, device=_device(fitted))
    np.testing.assert_array_equal(loaded.scores(histories, vecs), fitted.scores(histories, vecs))
    assert loaded.get_config() == fitted.get_config()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_model_trained_on_cuda_serves_the_same_lists_on_a_cpu(fitted, tmp_path) -> None:
    """Loading defaults to the CPU (a serving worker's tower); GPU and CPU kernels round
    differently, so the scores agree to float precision and the lists are the same."""
    assert _device(fitted).startswith("cuda")
    fitted.save(tmp_path)
    cpu = SequenceRecommender.load(tmp_path)
    assert _device(cpu) == "cpu"
    histories = [np.array([3, 4, 5]), np.array([11, 0]), np.array([7])]
    want, got = fitted.scores(histories, _vectors()), cpu.scores(histories, _vectors())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (np.argsort(-got, axis=1)[:, :5] == np.argsort(-want, axis=1)[:, :5]).all()


def _device(model: SequenceRecommender) -> str:
    return str(next(model.net_.parameters()).device)


def test_config_round_trips() -> None:
    cfg = TrainConfig(dim=8, dropout=0.1)
    assert TrainConfig.from_config(cfg.get_config()) == cfg
    assert SequenceRecommender.from_config(cfg.get_config()).config == cfg
    with pytest.raises(InputError, match="nope"):
        TrainConfig.from_config({"nope": 1})


def test_new_items_are_scored_from_text(fitted: SequenceRecommender) -> None:
    """Rows past the trained catalogue are text-only and still get finite scores."""
    vecs = np.vstack([_vectors(), _vectors(3, seed=9)])
    table = fitted.item_embeddings(vecs)
    assert table.shape == (N_ITEMS + 3, CONFIG.dim)
    scores = fitted.scores([np.array([0, 1])], item_table=table)
    assert np.isfinite(scores).all()


def test_unseen_items_have_no_id_part() -> None:
    """An item never in training scores exactly as a text-only item would."""
    seqs = [np.array([0, 1, 2, 3])] * 6
    model = SequenceRecommender(TrainConfig(dim=8, max_len=4, max_epochs=3)).fit(
        seqs, _vectors(6), progress=False
    )
    assert model.net_.has_id.tolist() == [True] * 3 + [False] * 3  # item 3 is validation only
    vecs = _vectors(6)
    with_ids = model.item_embeddings(vecs)
    model.net_.id_emb = None
    text_only = model.item_embeddings(vecs)
    np.testing.assert_allclose(with_ids[3:], text_only[3:], atol=1e-6)
    assert not np.allclose(with_ids[:3], text_only[:3])


def test_sequences_from_interactions_orders_by_time_then_item() -> None:
    df = pd.DataFrame(
        {"user_id": ["b", "a", "a", "a"], "item_id": [30, 20, 10, 30], "timestamp": [1, 5, 5, 1]}
    )
    users, seqs = sequences_from_interactions(df, [10, 20, 30])
    assert users.tolist() == ["a", "b"]
    assert [s.tolist() for s in seqs] == [[2, 0, 1], [2]]
    with pytest.raises(InputError, match="item_id"):
        sequences_from_interactions(df, [10, 20])


def test_errors() -> None:
    with pytest.raises(BundleError):
        SequenceRecommender().item_embeddings(_vectors())
    with pytest.raises(InputError, match="out of range"):
        SequenceRecommender(CONFIG).fit([np.array([0, 99])], _vectors(), progress=False)
    with pytest.raises(BundleError, match="tower_config.json"):
        SequenceRecommender.load("/nonexistent")


def test_new_items_are_marked_and_scored_from_text(fitted: SequenceRecommender) -> None:
    vecs = np.vstack([_vectors(), _vectors(2, seed=5)])  # items 12, 13 are new
    table = fitted.item_embeddings(vecs)
    assert fitted.new_item_mask(14).tolist() == [False] * 12 + [True] * 2
    scores = fitted.scores([np.array([0, 1, 2])], item_table=table)
    assert scores.shape == (1, 14) and np.isfinite(scores[0, 12:]).all()
    scores[0, [0, 1, 2]] = -np.inf
    assert int(np.argmax(scores[0])) == 3  # the planted next item still comes first


def test_hybrid_save_load_identical_scores(tmp_path) -> None:
    """The co-occurrence half (forced on with weight 1) survives save -> load exactly."""
    cfg = TrainConfig.from_config(
        {**CONFIG.get_config(), "max_epochs": 3, "cooc_weights": [1.0], "cooc_decays": [0.9]}
    )
    model = SequenceRecommender(cfg).fit(_cycle_sequences(), _vectors(), progress=False)
    assert model.cooc_weight_ == 1.0 and model.summary_["hybrid"]["weight"] == 1.0
    histories = [np.array([3, 4, 5]), np.array([11, 0])]
    tower_only = model.user_embeddings(histories, _vectors()) @ model.item_embeddings(_vectors()).T
    mixed = model.scores(histories, _vectors())
    assert not np.allclose(mixed, tower_only)
    model.save(tmp_path)
    loaded = SequenceRecommender.load(tmp_path, device=_device(model))
    np.testing.assert_array_equal(loaded.scores(histories, _vectors()), mixed)


def test_hybrid_settings_are_the_best_of_the_validation_grid(tmp_path) -> None:
    """EASE's weight, the decay (1.0 = order ignored) and the mix are searched together."""
    grids = {"cooc_lambdas": [1.0, 10.0], "cooc_decays": [0.5, 1.0], "cooc_weights": [0.0, 2.0]}
    cfg = TrainConfig.from_config({**CONFIG.get_config(), "max_epochs": 2, **grids})
    model = SequenceRecommender(cfg).fit(_cycle_sequences(), _vectors(), progress=False)
    hybrid = model.summary_["hybrid"]
    assert len(hybrid["grid"]) == 8
    assert hybrid["val_ndcg@10"] == max(hybrid["grid"].values())
    chosen = f"lam={hybrid['lam']:g},decay={hybrid['decay']:g},weight={hybrid['weight']:g}"
    assert hybrid["grid"][chosen] == hybrid["val_ndcg@10"]
    loaded = SequenceRecommender.load(model.save(tmp_path))
    assert loaded.cooc_.lam == hybrid["lam"] and loaded.cooc_decay_ == hybrid["decay"]


def test_time_cap_is_reported_and_saved(tmp_path) -> None:
    cfg = TrainConfig(**{**CONFIG.get_config(), "max_epochs": 5, "max_seconds": 0.0})
    model = SequenceRecommender(cfg).fit(_cycle_sequences(), _vectors(), progress=False)
    assert len(model.summary_["epochs"]) == 1
    assert model.summary_["stopped_by"] == "time_cap"
    loaded = SequenceRecommender.load(model.save(tmp_path / "tower"))
    assert loaded.summary_["stopped_by"] == "time_cap"


def test_what_stopped_training_is_named(fitted: SequenceRecommender) -> None:
    assert fitted.summary_["stopped_by"] == "max_epochs"  # patience = max_epochs
    # learning rate 0: the second epoch cannot beat the first
    cfg = TrainConfig(**{**CONFIG.get_config(), "lr": 0.0, "max_epochs": 40, "patience": 1})
    model = SequenceRecommender(cfg).fit(_cycle_sequences(), _vectors(), progress=False)
    assert model.summary_["stopped_by"] == "early_stopping"
    assert len(model.summary_["epochs"]) == model.summary_["best_epoch"] + 1


def test_max_train_len_trains_on_the_latest_items_only() -> None:
    seqs = _cycle_sequences(n_users=10, length=30)
    full = SequenceRecommender(TrainConfig(**{**CONFIG.get_config(), "max_epochs": 1}))
    full.fit(seqs, _vectors(), progress=False)
    short_cfg = TrainConfig(**{**CONFIG.get_config(), "max_epochs": 1, "max_train_len": 4})
    short = SequenceRecommender(short_cfg).fit(seqs, _vectors(), progress=False)
    # one validation item held out per user: 29 transitions each, or the latest 4
    assert full.summary_["n_targets"] == 10 * 28
    assert short.summary_["n_targets"] == 10 * 4


def test_sampled_softmax_learns_the_planted_cycle() -> None:
    cfg = TrainConfig(**{**CONFIG.get_config(), "softmax": "sampled", "n_negatives": 6})
    model = SequenceRecommender(cfg).fit(_cycle_sequences(), _vectors(), progress=False)
    assert model.summary_["softmax"] == "sampled"
    histories = [np.array([(s + j) % N_ITEMS for j in range(5)]) for s in range(N_ITEMS)]
    expected = [(s + 5) % N_ITEMS for s in range(N_ITEMS)]
    assert model.scores(histories, _vectors()).argmax(axis=1).tolist() == expected


def test_auto_softmax_samples_above_the_catalogue_threshold() -> None:
    small = TrainConfig(**{**CONFIG.get_config(), "max_epochs": 1, "softmax": "auto"})
    assert (
        SequenceRecommender(small)
        .fit(_cycle_sequences(), _vectors(), progress=False)
        .summary_["softmax"]
        == "full"
    )
    large = TrainConfig(**{**small.get_config(), "full_softmax_max_items": 10})
    assert (
        SequenceRecommender(large)
        .fit(_cycle_sequences(), _vectors(), progress=False)
        .summary_["softmax"]
        == "sampled"
    )
    with pytest.raises(InputError, match="softmax='soft'"):
        TrainConfig(softmax="soft")
    with pytest.raises(InputError, match=r"cooc_decays=\[\]; expected a non-empty list"):
        TrainConfig(cooc_decays=[])


def test_cooccurrence_keeps_the_most_popular_items() -> None:
    from recommender.cooccurrence import CooccurrenceScorer

    # item 0 in every history, item 1 in most, items 2..5 in two each
    seqs = [
        np.array([0, 1, 2, 3]),
        np.array([0, 1, 4, 5]),
        np.array([0, 1, 2, 3]),
        np.array([0, 4, 5]),
    ]
    full = CooccurrenceScorer(lam=1.0, min_count=2).fit(seqs, 6)
    head = CooccurrenceScorer(lam=1.0, min_count=2, max_items=2).fit(seqs, 6)
    assert full.active_.tolist() == [0, 1, 2, 3, 4, 5]
    assert head.active_.tolist() == [0, 1]


def test_cooccurrence_scores_are_recency_weighted_rows_of_b_alone_or_batched() -> None:
    import torch

    from recommender.cooccurrence import CooccurrenceScorer

    seqs = [np.array([0, 1, 2, 3]), np.array([0, 1, 4, 5]), np.array([2, 3, 4]), np.array([5, 0])]
    scorer = CooccurrenceScorer(lam=1.0, decay=0.5, min_count=1).fit(seqs, 6)
    B, pos = scorer.B_, scorer.pos_
    # item 0 seen twice counts once, at its latest position; 7 is newer than the model
    histories = [np.array([0, 1, 0]), np.array([5, 7, 2]), np.array([], dtype=np.int64)]
    got = scorer.scores(histories)
    assert got.shape == (3, 6)
    torch.testing.assert_close(got[0, scorer.active_], B[pos[0]] + 0.5 * B[pos[1]])
    torch.testing.assert_close(got[1, scorer.active_], 0.5 * B[pos[5]] + B[pos[2]])
    assert not got[2].any()
    alone = torch.cat([scorer.scores([h]) for h in histories])
    assert torch.equal(alone, got)


def test_cooccurrence_scores_read_only_the_positions_that_weigh() -> None:
    """A long history's score is its newest ``reach(decay)`` positions' (exactly), and
    within float32 rounding of the sum over every position."""
    from recommender.cooccurrence import CooccurrenceScorer, reach

    rng = np.random.default_rng(0)
    seqs = [rng.choice(40, size=12, replace=False) for _ in range(60)]
    scorer = CooccurrenceScorer(lam=2.0, decay=0.8, min_count=1).fit(seqs, 40)
    history = rng.integers(0, 40, size=300)
    got = scorer.scores([history])
    assert reach(0.8) == 82
    assert torch.equal(got, scorer.scores([history[-82:]]))
    B, pos = scorer.B_.double(), scorer.pos_
    full = torch.zeros(B.shape[1], dtype=torch.float64)
    for item in dict.fromkeys(history[::-1].tolist()):  # newest position first
        age = len(history) - 1 - max(np.flatnonzero(history == item))
        full += 0.8**age * B[pos[item]]
    assert (got[0, scorer.active_].double() - full).abs().max() < 1e-6 * full.abs().max()
    # an item seen only 82 positions ago is not read (items outside B count as positions)
    rare = CooccurrenceScorer(lam=2.0, decay=0.8, min_count=2).fit([*seqs, np.array([40])], 41)
    assert rare.pos_[40] == -1 and rare.pos_[7] >= 0
    assert rare.scores([np.array([7] + [40] * 81)]).abs().max() > 0
    assert not rare.scores([np.array([7] + [40] * 82)]).any()
    # with no decay every position counts
    plain = CooccurrenceScorer(lam=2.0, decay=1.0, min_count=2).fit([*seqs, np.array([40])], 41)
    assert plain.scores([np.array([7] + [40] * 500)]).abs().max() > 0


def test_the_tower_state_served_is_the_last_position_of_the_trained_encoder() -> None:
    import torch

    from recommender.tower import UserTower

    torch.manual_seed(0)
    net = UserTower(12, 8, dim=16, n_layers=3, n_heads=2, max_len=6).eval()
    table = torch.randn(12, 16)
    # left-padded: a full row, a short one, a single item, nothing at all
    seq = torch.tensor(
        [[1, 2, 3, 4, 5, 6], [-1, -1, -1, 7, 8, 9], [-1, -1, -1, -1, -1, 11], [-1] * 6]
    )
    with torch.no_grad():
        served = net.last_state(seq, table)
        trained = net.encode(seq, table)[:, -1]
    torch.testing.assert_close(served, trained, atol=1e-5, rtol=1e-5)
    assert served.shape == (4, 16)
