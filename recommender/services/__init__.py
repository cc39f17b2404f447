"""recbento's BentoML services, to serve as they are or to compose into a Bento of yours.

>>> from recommender.services import make_services        # doctest: +SKIP
>>> Encoder, Recommender = make_services("movies")        # doctest: +SKIP
"""

from __future__ import annotations

import os

# Before torch is imported: idle OpenMP threads sleep instead of spinning. A served
# process shares its cores with the API workers, and the encoder's spinning threads
# burned half of its CPU under load (12.8 against 6.1 ms per free-text request).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from recommender.services.factory import (  # noqa: E402
    ServiceArgs,
    encoder_service,
    make_services,
)
from recommender.services.handlers import Handlers  # noqa: E402
from recommender.services.settings import ServiceSettings  # noqa: E402

__all__ = ["Handlers", "ServiceArgs", "ServiceSettings", "encoder_service", "make_services"]
