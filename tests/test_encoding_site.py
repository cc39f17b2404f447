"""Where free text is encoded: the setting, and the choice ``auto`` makes."""

from __future__ import annotations

import json

import pytest

from recommender.errors import InputError
from recommender.services.encoding import encode_site
from recommender.services.settings import ServiceSettings


def test_the_setting_comes_from_the_environment_and_bad_values_name_it(monkeypatch):
    assert ServiceSettings.from_env().encode_in == "auto"
    monkeypatch.setenv("RECBENTO_ENCODE_IN", " Worker ")
    assert ServiceSettings.from_env().encode_in == "worker"
    monkeypatch.setenv("RECBENTO_ENCODE_IN", "gpu")
    with pytest.raises(InputError, match="RECBENTO_ENCODE_IN='gpu'.*'service'") as info:
        ServiceSettings.from_env()
    assert info.value.field == "RECBENTO_ENCODE_IN"
    monkeypatch.delenv("RECBENTO_ENCODE_IN")
    assert ServiceSettings.from_env().encode_precision == "fast"
    monkeypatch.setenv("RECBENTO_ENCODE_PRECISION", "int8")
    with pytest.raises(InputError, match="RECBENTO_ENCODE_PRECISION='int8'"):
        ServiceSettings.from_env()


def test_auto_encodes_in_the_worker_only_when_the_encoder_would_share_its_cpu(monkeypatch):
    monkeypatch.delenv("RECBENTO_DEVICE", raising=False)
    beside = {"recbento-encoder": "file:///tmp/bentoml-uds-x/1.sock", "recbento": "http://a:1"}
    monkeypatch.setenv("BENTOML_RUNNER_MAP", json.dumps(beside))
    assert encode_site("auto", "recbento-encoder", device="cpu") == "worker"
    # the same server on a machine with a GPU: the encoder service has it
    assert encode_site("auto", "recbento-encoder", device="cuda") == "service"
    # the encoder deployed on its own (BentoCloud scales each service apart)
    remote = {"recbento-encoder": "http://recbento-encoder.prod.svc:3000"}
    monkeypatch.setenv("BENTOML_RUNNER_MAP", json.dumps(remote))
    assert encode_site("auto", "recbento-encoder", device="cpu") == "service"
    # called in-process (no map: a test, or a service of the user's own that imports it)
    # with the encoder's device pinned to the CPU (RECBENTO_DEVICE), as on a machine without CUDA
    monkeypatch.delenv("BENTOML_RUNNER_MAP")
    monkeypatch.setenv("RECBENTO_DEVICE", "cpu")
    assert encode_site("auto", "recbento-encoder") == "worker"
    # an explicit choice is kept whatever the deployment
    assert encode_site("service", "recbento-encoder") == "service"
    monkeypatch.setenv("BENTOML_RUNNER_MAP", json.dumps(remote))
    assert encode_site("worker", "recbento-encoder") == "worker"
