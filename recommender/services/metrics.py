"""recbento's own Prometheus metrics, on the services' ``/metrics`` beside BentoML's.

Each metric is made once per process, on first use: BentoML points prometheus_client
at its multiprocess directory when a worker starts, and a metric made before that (at
import) would never reach ``/metrics``.

==================================  =========  =========================================
metric                              kind       what
==================================  =========  =========================================
recbento_impressions_total          counter    lists served, by experiment ``arm``
recbento_feedback_events_total      counter    events stored, by ``type`` and ``arm``
recbento_encode_batch_texts         histogram  texts in each forward pass of an encoder
                                               service, by ``service``
recbento_recommend_batch_requests   histogram  ``recommend`` requests scored together in
                                               one pass of an API worker
==================================  =========  =========================================

BentoML's own ``bentoml_service_adaptive_batch_size`` counts the *calls* merged into a
batch; a caller may send many texts in one call (``recommend`` sends the free-text
queries waiting together), so the texts per forward pass are counted here.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["counter", "histogram", "requests_per_pass"]

_made: dict[str, Any] = {}
_lock = threading.Lock()

#: Texts per forward pass: powers of two up to 256 (larger batches count under +Inf).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def counter(name: str, documentation: str, labels: list[str]) -> Any:
    """The process's Prometheus counter ``name``, made on first use."""
    return _metric("Counter", name, documentation, labels)


def histogram(name: str, documentation: str, labels: list[str], buckets: tuple[float, ...]) -> Any:
    """The process's Prometheus histogram ``name``, made on first use."""
    return _metric("Histogram", name, documentation, labels, buckets=buckets)


def requests_per_pass() -> Any:
    """Histogram of the ``recommend`` requests an API worker scores in one pass."""
    return histogram(
        "recbento_recommend_batch_requests",
        "recommend requests scored together in one pass of an API worker",
        [],
        BATCH_BUCKETS,
    )


def _metric(kind: str, name: str, documentation: str, labels: list[str], **kw: Any) -> Any:
    with _lock:
        if name not in _made:
            import prometheus_client

            _made[name] = getattr(prometheus_client, kind)(name, documentation, labels, **kw)
        return _made[name]
