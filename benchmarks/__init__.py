"""Quality and speed benchmarks (not part of the installed package)."""

from __future__ import annotations
