from __future__ import annotations

import numpy as np
import pytest
import torch

from recommender.encoder import TextEncoder
from recommender.errors import EncoderError

TEXTS = ["Heat (1995). genres: Action, Crime.", "Up", "Toy Story (1995) with a much longer text"]


def test_shape_and_unit_norm(tiny_encoder):
    v = tiny_encoder.encode(TEXTS)
    assert v.shape == (3, 32) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_batch_equals_single(tiny_encoder):
    batched = tiny_encoder.encode(TEXTS, batch_size=3)
    single = np.vstack([tiny_encoder.encode([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_order_is_kept_despite_length_sorting(tiny_encoder):
    v = tiny_encoder.encode(TEXTS, batch_size=2)
    w = tiny_encoder.encode(TEXTS[::-1], batch_size=2)[::-1]
    np.testing.assert_allclose(v, w, atol=1e-5)


def test_mean_pooling_ignores_padding(tiny_encoder):
    """A text's vector does not depend on the other texts padded beside it."""
    alone = tiny_encoder.encode(["Up"])
    padded = tiny_encoder.encode(["Up", "a very long neighbour " * 5])[0:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_empty_input(tiny_encoder):
    assert tiny_encoder.encode([]).shape == (0, 32)


def test_checkpoint_round_trip(tiny_encoder, tiny_encoder_path):
    loaded = TextEncoder.from_pretrained(tiny_encoder_path)
    np.testing.assert_allclose(loaded.encode(TEXTS), tiny_encoder.encode(TEXTS), atol=1e-5)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="could not load"):
        TextEncoder.from_pretrained(tmp_path / "nope")


def test_cuda_request_without_cuda_is_refused(tiny_encoder):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EncoderError, match="CUDA is not available"):
        TextEncoder(tiny_encoder.model, tiny_encoder.tokenizer, device="cuda")


def test_bf16_on_cpu_keeps_float32_unit_vectors_close_to_fp32(tiny_encoder):
    fp32 = tiny_encoder.encode(TEXTS)
    bf16 = TextEncoder(tiny_encoder.model, tiny_encoder.tokenizer, precision="bfloat16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    out = bf16.encode(TEXTS)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert (out * fp32).sum(axis=1).min() > 0.99


def test_unknown_precision_is_a_clear_error(tiny_encoder):
    with pytest.raises(EncoderError, match="precision='int4'.*'bfloat16'"):
        TextEncoder(tiny_encoder.model, tiny_encoder.tokenizer, precision="int4")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu(tiny_encoder):
    cpu = tiny_encoder.encode(TEXTS)
    gpu = TextEncoder(tiny_encoder.model, tiny_encoder.tokenizer, device="cuda")
    assert next(gpu.model.parameters()).dtype == torch.float16
    np.testing.assert_allclose(gpu.encode(TEXTS), cpu, atol=2e-2)


def test_default_minilm_loads_offline_and_means_something():
    enc = TextEncoder.from_pretrained()
    assert enc.name == "all-MiniLM-L6-v2" and enc.dim == 384
    q, toy, heat = enc.encode(
        [
            "a funny animated film for kids",
            "Toy Story: an animated comedy",
            "Heat: a crime thriller",
        ]
    )
    assert q @ toy > q @ heat
