"""recbento's BentoML services, to serve as they are or to compose into a Bento of yours.

>>> from recommender.services import make_services        # doctest: +SKIP
>>> Encoder, Recommender = make_services("movies")        # doctest: +SKIP
"""

from __future__ import annotations

from recommender.services.factory import ServiceArgs, encoder_service, make_services
from recommender.services.handlers import Handlers
from recommender.services.settings import ServiceSettings

__all__ = ["Handlers", "ServiceArgs", "ServiceSettings", "encoder_service", "make_services"]
