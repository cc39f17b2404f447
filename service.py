"""recbento's services for ``bentoml serve``: the demo model, or the one you name.

    bentoml serve                                # the demo model, built on first start
    RECBENTO_MODEL=movies bentoml serve          # or: bentoml serve --arg model=movies
"""

from __future__ import annotations

import bentoml

from recommender.services import ServiceArgs, make_services

args = bentoml.use_arguments(ServiceArgs)
Encoder, Recommender = make_services(args.model)
