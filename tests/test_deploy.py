"""The deploy/ manifests agree with each other and with the service they deploy."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
CLOUD = ROOT / "deploy" / "bentocloud" / "deployment.yaml"
IMAGE = "recbento:latest"
PORT = 3000  # BentoML's HTTP port inside a containerized Bento
DEPLOYMENTS = ("deployment.yaml", "deployment-gpu.yaml")
ENV_VARS = {"RECBENTO_MODEL", "RECBENTO_API_TOKEN", "RECBENTO_FEEDBACK_DB"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _one(path: Path, kind: str) -> dict[str, Any]:
    docs = [d for d in _docs(path) if d.get("kind") == kind]
    assert len(docs) == 1, f"{path.name}: expected one {kind}, found {len(docs)}"
    return docs[0]


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _port_number(container: dict[str, Any], port: int | str) -> int:
    """Resolve a named port against the container's ports."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container["ports"] if "name" in p}
    assert port in by_name, f"port {port!r} is not declared by the container"
    return by_name[port]


def _service_names() -> dict[str, str]:
    """``class name -> @bentoml.service(name=...)`` read from service.py without importing it."""
    tree = ast.parse((ROOT / "service.py").read_text())
    names = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for dec in node.decorator_list:
            if isinstance(dec, ast.Call) and ast.unparse(dec.func) == "bentoml.service":
                kw = {k.arg: k.value for k in dec.keywords}
                names[node.name] = ast.literal_eval(kw["name"]) if "name" in kw else node.name
    return names


def test_every_manifest_parses() -> None:
    files = sorted((ROOT / "deploy").rglob("*.yaml"))
    assert {f.name for f in files} >= {
        *DEPLOYMENTS,
        "service.yaml",
        "hpa.yaml",
        "kustomization.yaml",
    }
    for f in files:
        assert _docs(f), f"{f} is empty"


def test_bentoml_serves_health_endpoints() -> None:
    from bentoml._internal.server import base_app

    source = inspect.getsource(base_app)
    assert '"/livez"' in source and '"/readyz"' in source


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_probes_ports_image(name: str) -> None:
    dep = _one(K8S / name, "Deployment")
    c = _container(dep)
    assert c["image"] == IMAGE
    assert PORT in [p["containerPort"] for p in c["ports"]]
    probes = {kind: c[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/livez"
    if "startupProbe" in c:
        probes["startupProbe"] = c["startupProbe"]["httpGet"]
    for kind, probe in probes.items():
        assert _port_number(c, probe["port"]) == PORT, kind
    requests = c["resources"]["requests"]
    assert {"cpu", "memory"} <= set(requests)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_deployment_env_and_feedback_volume(name: str) -> None:
    dep = _one(K8S / name, "Deployment")
    c = _container(dep)
    env = {e["name"]: e for e in c["env"]}
    assert ENV_VARS <= set(env)
    assert env["RECBENTO_MODEL"]["value"] == "recbento-demo"
    assert env["RECBENTO_API_TOKEN"]["valueFrom"]["secretKeyRef"]["optional"] is True
    db = Path(env["RECBENTO_FEEDBACK_DB"]["value"])
    mounts = {m["name"]: Path(m["mountPath"]) for m in c["volumeMounts"]}
    (volume,) = [
        v for v in dep["spec"]["template"]["spec"]["volumes"] if mounts[v["name"]] in db.parents
    ]
    pvc = _one(K8S / "pvc.yaml", "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_gpu_variant_requests_a_gpu() -> None:
    dep = _one(K8S / "deployment-gpu.yaml", "Deployment")
    res = _container(dep)["resources"]
    assert int(res["limits"]["nvidia.com/gpu"]) == 1
    assert int(res["requests"].get("nvidia.com/gpu", 1)) == 1
    spec = dep["spec"]["template"]["spec"]
    assert spec.get("nodeSelector") or spec.get("tolerations")
    assert any(t["key"] == "nvidia.com/gpu" for t in spec.get("tolerations", []))
    cpu = _one(K8S / "deployment.yaml", "Deployment")
    assert "nvidia.com/gpu" not in str(_container(cpu)["resources"])
    # Same name: the GPU variant replaces the CPU one under the same Service and HPA.
    assert dep["metadata"]["name"] == cpu["metadata"]["name"]


def test_service_targets_the_container_port() -> None:
    svc = _one(K8S / "service.yaml", "Service")
    for name in DEPLOYMENTS:
        dep = _one(K8S / name, "Deployment")
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        for port in svc["spec"]["ports"]:
            assert _port_number(_container(dep), port["targetPort"]) == PORT


def test_hpa_targets_the_deployment() -> None:
    hpa = _one(K8S / "hpa.yaml", "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    dep = _one(K8S / "deployment.yaml", "Deployment")
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        dep["apiVersion"],
        "Deployment",
        dep["metadata"]["name"],
    )
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "resources" in _container(dep) and "cpu" in _container(dep)["resources"]["requests"]


def test_kustomization_lists_existing_files_and_the_same_image() -> None:
    kust = _docs(K8S / "kustomization.yaml")[0]
    for res in kust["resources"]:
        assert (K8S / res).exists(), res
    assert {"deployment.yaml", "service.yaml", "hpa.yaml"} <= set(kust["resources"])
    name, tag = IMAGE.split(":")
    (image,) = kust["images"]
    assert (image["name"], image.get("newName", name), image["newTag"]) == (name, name, tag)


def test_bentofile_and_service_names() -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["service"] == "service:Recommender"
    assert bentofile["name"] == IMAGE.split(":")[0]
    names = _service_names()
    assert {"Recommender", "Encoder"} <= set(names)


def test_bentocloud_config_matches_the_bento() -> None:
    cfg = yaml.safe_load(CLOUD.read_text())
    assert cfg["name"] and cfg["bento"] == IMAGE
    assert set(cfg["services"]) == set(_service_names().values())
    for name, svc in cfg["services"].items():
        assert svc["instance_type"], name
        scaling = svc["scaling"]
        assert 0 <= scaling["min_replicas"] <= scaling["max_replicas"], name
        for env in svc.get("envs", []):
            assert set(env) == {"name", "value"}
    envs = {e["name"]: e["value"] for e in cfg["envs"]}
    envs.update({e["name"]: e["value"] for s in cfg["services"].values() for e in s["envs"]})
    assert {"RECBENTO_MODEL", "RECBENTO_FEEDBACK_DB"} <= set(envs)


def test_bentocloud_config_fits_bentoml_schema() -> None:
    schemas = pytest.importorskip("bentoml._internal.cloud.schemas.schemasv2")
    utils = pytest.importorskip("bentoml._internal.cloud.schemas.utils")
    cfg = yaml.safe_load(CLOUD.read_text())
    parsed = utils.schema_from_object(cfg, schemas.CreateDeploymentSchema)
    assert parsed.services["recbento"].scaling.max_replicas == 1


def test_kustomize_renders_the_stack() -> None:
    import shutil
    import subprocess

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "Deployment",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
        "Service",
    ]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    assert _container(dep)["image"] == IMAGE
