"""The operator dashboard at ``/dashboard/`` of the API service (see :mod:`.app`)."""

from __future__ import annotations
