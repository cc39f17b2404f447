"""Where ``recommend`` encodes free text: in the API worker, or through the encoder service.

The encoder service exists so that one model on one accelerator serves every API
worker, with BentoML's adaptive batching merging their calls. On a machine without one,
the hop costs more than it saves: the call's serialisation on both sides, a third
process competing for the same cores, and PyTorch's threads in the encoder contending
with the API workers for them. There each API worker encodes the queries it has waiting
in one forward pass on a thread of its own (``RECBENTO_API_THREADS``): on the 2-core
reference machine free-text ``recommend`` at concurrency 32 went from 195-209 to 230-268
requests/s in most alternating runs (fp32), and ``recommend`` by user was unchanged
(``README.md``, "Serving performance").

``RECBENTO_ENCODE_IN`` chooses:

===========  ===========================================================================
``auto``     the worker when the encoder service would run on this machine's CPU (no
             CUDA device, or ``RECBENTO_DEVICE=cpu``, and the service is served beside
             this one); else the service. A deployment whose encoder runs elsewhere
             (BentoCloud's per-service scaling) always calls it.
``worker``   always in the API worker (each worker loads the checkpoint: about 90 MB
             for MiniLM)
``service``  always the encoder service
===========  ===========================================================================

The ``/encode`` API always calls the encoder service.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import numpy as np

from recommender.config import EncoderConfig
from recommender.services.metrics import BATCH_BUCKETS, histogram

__all__ = ["encode_site", "texts_per_pass", "worker_encoder"]

log = logging.getLogger(__name__)

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def encode_site(
    setting: str,
    encoder_service: str,
    *,
    runner_map: Mapping[str, str] | None = None,
    device: str | None = None,
) -> str:
    """``"worker"`` or ``"service"`` for ``RECBENTO_ENCODE_IN=setting``.

    ``runner_map`` is BentoML's map of dependencies to addresses (``BENTOML_RUNNER_MAP``
    by default); ``device`` the encoder's device (:func:`~recommender.encoder.resolve_device`
    by default).

    Examples
    --------
    >>> encode_site("auto", "enc", runner_map={"enc": "file:///tmp/1.sock"}, device="cpu")
    'worker'
    >>> encode_site("auto", "enc", runner_map={"enc": "file:///tmp/1.sock"}, device="cuda")
    'service'
    >>> encode_site("auto", "enc", runner_map={"enc": "http://enc.svc:3000"}, device="cpu")
    'service'
    >>> encode_site("service", "enc", runner_map={}, device="cpu")
    'service'
    """
    if setting in ("worker", "service"):
        return setting
    if runner_map is None:
        runner_map = json.loads(os.environ.get("BENTOML_RUNNER_MAP") or "{}")
    if device is None:
        from recommender.encoder import resolve_device

        device = resolve_device().type
    address = runner_map.get(encoder_service)
    beside = address is None or _on_this_machine(address)  # None: called in-process
    return "worker" if beside and not str(device).startswith("cuda") else "service"


def _on_this_machine(address: str) -> bool:
    """A Unix socket (``file://`` in BentoML's map), or TCP on loopback: how ``bentoml
    serve`` reaches a dependency it serves itself.

    >>> _on_this_machine("file:///tmp/bentoml-uds-1/2.sock"), _on_this_machine("tcp://127.0.0.1:3001")
    (True, True)
    >>> _on_this_machine("https://enc.example")
    False
    """
    url = urlparse(address)
    return url.scheme in ("file", "unix") or (url.hostname or "") in _LOCAL_HOSTS


def texts_per_pass() -> Any:
    """The histogram of texts in each forward pass, by the ``service`` that ran it."""
    return histogram(
        "recbento_encode_batch_texts",
        "Texts in each forward pass of an encoder",
        ["service"],
        buckets=BATCH_BUCKETS,
    )


def worker_encoder(
    config: EncoderConfig, service: str, *, precision: str = "fast"
) -> Callable[[list[str]], np.ndarray]:
    """Load the model's checkpoint in this process: ``texts -> vectors``, counted per pass.

    It is warmed up with one text, so the first query does not pay for the first pass.
    """
    from recommender.serving.model import load_encoder

    encoder = load_encoder(config, precision=precision)
    encoder.encode(["warm up"])
    log.info(
        "free text is encoded in this worker (%s on %s, %s)",
        encoder.name,
        encoder.device,
        encoder.dtype,
    )

    def encode(texts: list[str]) -> np.ndarray:
        texts_per_pass().labels(service=service).observe(len(texts))
        return encoder.encode(texts)

    return encode
