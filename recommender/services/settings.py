"""A deployment's service settings, read once from the environment.

==============================  =========  ==============================================
variable                        default    meaning
==============================  =========  ==============================================
RECBENTO_WORKERS                2          worker processes of the API service
RECBENTO_CONCURRENCY            16         sync API calls one API worker runs at once (threads)
RECBENTO_API_THREADS            1          BLAS / torch threads per API worker
RECBENTO_MAX_BODY_BYTES         1048576    larger request bodies get 413
RECBENTO_MAX_EVENTS             1000       events per ``feedback`` call
RECBENTO_MAX_GROUP              50         members per ``recommend_group`` call
RECBENTO_ENCODE_IN              auto       where ``recommend`` encodes free text: ``worker``
                                           (in the API worker), ``service`` (the encoder
                                           service), ``auto`` (see
                                           :mod:`~recommender.services.encoding`)
RECBENTO_ENCODE_PRECISION       fast       the encoder's precision for queries and
                                           ``/encode``: fp16 on CUDA, bf16 on a CPU with
                                           native bf16, else fp32 (see
                                           :class:`~recommender.encoder.TextEncoder`)
RECBENTO_ENCODE_MAX_BATCH       64         adaptive batching: largest ``encode`` batch
RECBENTO_ENCODE_MAX_LATENCY_MS  10000      adaptive batching: latency budget
RECBENTO_QUERY_MIN_BATCH        12         free-text queries a busy API worker waits for
                                           before its next forward pass (or encoder call)
RECBENTO_QUERY_LINGER_MS        15         ... for at most this long (0: never waits; a
                                           query reaching an idle worker never waits)
RECBENTO_RECOMMEND_LINGER_MS    3          a busy API worker waits up to this long for as
                                           many ``recommend`` requests as it recently had
                                           in flight, to score them together (0: never)
RECBENTO_RELOAD_SECONDS         30         how often a model served by name looks for a
                                           newer version (0: never)
RECBENTO_KEEPALIVE_REQUESTS     10         answers on one connection before the API asks
                                           the client to reconnect (0: never)
==============================  =========  ==============================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from recommender.encoder import PRECISIONS
from recommender.errors import InputError
from recommender.validate import check_fields

__all__ = ["ServiceSettings"]

_ENV = {
    "workers": "RECBENTO_WORKERS",
    "concurrency": "RECBENTO_CONCURRENCY",
    "api_threads": "RECBENTO_API_THREADS",
    "max_body_bytes": "RECBENTO_MAX_BODY_BYTES",
    "max_events": "RECBENTO_MAX_EVENTS",
    "max_group": "RECBENTO_MAX_GROUP",
    "encode_max_batch": "RECBENTO_ENCODE_MAX_BATCH",
    "encode_max_latency_ms": "RECBENTO_ENCODE_MAX_LATENCY_MS",
    "query_min_batch": "RECBENTO_QUERY_MIN_BATCH",
    "query_linger_ms": "RECBENTO_QUERY_LINGER_MS",
    "recommend_linger_ms": "RECBENTO_RECOMMEND_LINGER_MS",
    "reload_seconds": "RECBENTO_RELOAD_SECONDS",
    "keepalive_requests": "RECBENTO_KEEPALIVE_REQUESTS",
}
#: Settings that take one of a few words: field -> (variable, choices).
_CHOICES = {
    "encode_in": ("RECBENTO_ENCODE_IN", ("auto", "worker", "service")),
    "encode_precision": ("RECBENTO_ENCODE_PRECISION", PRECISIONS),
}
#: Every other setting is a whole number >= 1; 0 turns off reloading, the keep-alive
#: limit and the lingers.
_OFF_AT_0 = ("reload_seconds", "keepalive_requests", "query_linger_ms", "recommend_linger_ms")
_RANGES = {name: {"low": 0 if name in _OFF_AT_0 else 1, "whole": True} for name in _ENV}


@dataclass(frozen=True)
class ServiceSettings:
    """Process and request limits of recbento's services (see the module table).

    ``concurrency`` is BentoML's ``threads``: the sync APIs (all but ``recommend``,
    which is async and batches on the event loop) run that many calls at once per
    worker. ``recommend`` encodes the free-text queries waiting together in a worker at
    once, at most ``encode_max_batch`` of them: in one forward pass in the worker, or in
    one call to the encoder service (``encode_in``).
    ``encode_max_latency_ms`` is generous on purpose: on a 2-core CPU a batch of 64
    short texts takes about 160 ms, and a tight budget makes BentoML shed load with 503s.
    ``query_min_batch`` and ``query_linger_ms``: a worker that has just encoded queries
    waits up to the linger for that many before the next pass, so that passes grow under
    load (see :class:`~recommender.services.batcher.RequestBatcher`).
    ``recommend_linger_ms``: likewise for scoring, waiting for as many requests as the
    worker recently had in flight (``follow_load``), so that they share one pass over the
    item vectors.
    """

    workers: int = 2
    encode_in: str = "auto"
    encode_precision: str = "fast"
    concurrency: int = 16
    api_threads: int = 1
    max_body_bytes: int = 1 << 20
    max_events: int = 1000
    max_group: int = 50
    encode_max_batch: int = 64
    encode_max_latency_ms: int = 10_000
    query_min_batch: int = 12
    query_linger_ms: int = 15
    recommend_linger_ms: int = 3
    reload_seconds: int = 30
    keepalive_requests: int = 10

    def __post_init__(self) -> None:
        for name, (var, choices) in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise InputError(
                    f"{var}={value!r}: expected one of {list(choices)}", field=var, value=value
                )
        check_fields(self, _RANGES, label=_ENV.__getitem__, skip=_CHOICES)

    @classmethod
    def from_env(cls) -> ServiceSettings:
        """Defaults, overridden by whichever ``RECBENTO_*`` variables are set."""
        values: dict[str, object] = {}
        for name, (var, _) in _CHOICES.items():
            raw = os.environ.get(var)
            if raw:
                values[name] = raw.strip().lower()
        for name, var in _ENV.items():
            raw = os.environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                values[name] = int(raw)
            except ValueError:
                raise InputError(
                    f"{var}={raw!r}: expected a whole number", field=var, value=raw
                ) from None
        return cls(**values)
