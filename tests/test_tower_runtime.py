"""The trained tower served on ONNX Runtime gives PyTorch's states, and the same alone or
batched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recommender.build import build_bundle
from recommender.errors import InputError
from recommender.schemas import validate_tables
from recommender.sequences import left_pad
from recommender.serving import Request, load_model
from recommender.tower import UserTower
from recommender.tower_runtime import TowerRuntime


def _net(dim: int, layers: int, heads: int, max_len: int, seed: int = 0) -> UserTower:
    """A tower with random weights everywhere (layer norms and biases included)."""
    torch.manual_seed(seed)
    net = UserTower(30, 8, dim=dim, n_layers=layers, n_heads=heads, max_len=max_len).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return net


def _histories(max_len: int, seed: int = 0) -> np.ndarray:
    """Left-padded: nothing, one item, half full, full, longer than ``max_len``, repeats."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, max(max_len // 2, 1), max_len, max_len + 4]
    rows = [rng.integers(0, 30, size=n) for n in lengths] + [np.array([3, 3, 3])]
    return left_pad(rows, max_len)


@pytest.mark.parametrize(
    ("dim", "layers", "heads", "max_len"),
    [(8, 1, 1, 8), (16, 2, 2, 6), (24, 3, 4, 10), (64, 2, 2, 50)],
)
def test_the_runtime_gives_the_states_pytorch_gives(dim, layers, heads, max_len) -> None:
    net = _net(dim, layers, heads, max_len)
    table = np.random.default_rng(1).normal(size=(30, dim)).astype(np.float32)
    seq = _histories(max_len)
    with torch.no_grad():
        want = net.last_state(torch.from_numpy(seq), torch.from_numpy(table)).numpy()
    got = TowerRuntime(net).last_state(seq, table)
    assert got.shape == (len(seq), dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_user_gets_the_same_state_alone_and_in_any_batch() -> None:
    net = _net(16, 2, 2, 6)
    table = np.random.default_rng(2).normal(size=(30, 16)).astype(np.float32)
    runtime = TowerRuntime(net)
    seq = _histories(6, seed=3)
    together = runtime.last_state(seq, table)
    for r in range(len(seq)):
        np.testing.assert_array_equal(runtime.last_state(seq[r : r + 1], table)[0], together[r])
    np.testing.assert_array_equal(runtime.last_state(seq[::-1], table), together[::-1])


def test_a_runtime_refuses_what_is_not_its_own() -> None:
    net = _net(8, 1, 1, 8)
    with pytest.raises(ValueError, match="seq: expected"):
        TowerRuntime(net).last_state(np.zeros((2, 5), np.int64), np.zeros((30, 8), np.float32))
    with pytest.raises(ValueError, match="eval mode"):
        TowerRuntime(_net(8, 1, 1, 8).train())


@pytest.fixture(scope="module")
def trained(_tiny_encoder_session):
    from tests.toy import INTERACTIONS, ITEMS

    config = {"dim": 16, "n_layers": 2, "n_heads": 2, "max_len": 6, "max_epochs": 3}
    config.update({"batch_size": 4, "num_threads": 1, "device": "cpu"})
    return build_bundle(
        validate_tables(ITEMS.copy(), INTERACTIONS.copy()),
        _tiny_encoder_session,
        progress=False,
        train=True,
        train_config=config,
    )


def test_a_served_model_runs_its_tower_on_onnx_runtime_unless_told_not_to(
    trained, monkeypatch
) -> None:
    onnx, torch_model = load_model(trained), load_model(trained, tower_runtime="torch")
    assert isinstance(onnx.tower_runtime, TowerRuntime)
    assert torch_model.tower_runtime is None
    monkeypatch.setenv("RECBENTO_TOWER_RUNTIME", "torch")
    assert load_model(trained).tower_runtime is None
    reqs = [Request(user_id=u, k=4) for u in (10, 20, 30)] + [Request(history=[4, 5], k=3)]
    for a, b in zip(onnx.recommend_batch(reqs), torch_model.recommend_batch(reqs), strict=True):
        assert [i.item_id for i in a.items] == [i.item_id for i in b.items]
        assert [i.score for i in a.items] == pytest.approx([i.score for i in b.items], abs=1e-4)
    # the tower's rows score exactly the same alone as batched with others
    together = onnx.recommend_batch(reqs)
    for req, batched in zip(reqs, together, strict=True):
        alone = onnx.recommend(req)
        assert [(i.item_id, i.score) for i in alone.items] == [
            (i.item_id, i.score) for i in batched.items
        ]


def test_an_unknown_tower_runtime_is_named(trained, monkeypatch) -> None:
    monkeypatch.setenv("RECBENTO_TOWER_RUNTIME", "tpu")
    with pytest.raises(InputError, match=r"RECBENTO_TOWER_RUNTIME='tpu': expected one of") as err:
        load_model(trained)
    assert err.value.field == "RECBENTO_TOWER_RUNTIME"
