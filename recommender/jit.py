"""Numba's ``njit`` with its on-disk cache wherever there is somewhere to write it.

The request path's compiled loops (:mod:`recommender.topk`,
:mod:`recommender.rerank_greedy`, the relevance stage, the graph walk) are cached beside
the package or in the user's cache folder, so a worker loads them instead of compiling
them. Numba refuses to even define a cached function when neither is writable (a
read-only image run as a user without a home): such an install compiles them in memory
at each start instead, with a warning, rather than failing at import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numba

__all__ = ["njit"]

log = logging.getLogger(__name__)


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(cache=True, nogil=True, **options)``, uncached when caching is impossible."""

    def compile_(fn: Callable[..., Any]) -> Any:
        try:
            return numba.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            log.warning("%s is compiled without an on-disk cache: %s", fn.__qualname__, exc)
            return numba.njit(nogil=True, **options)(fn)

    return compile_
