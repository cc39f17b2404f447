"""The Kubernetes files render, fit the Kubernetes API, and agree with the Bento they run.

Every Kubernetes overlay is rendered with ``kubectl kustomize`` (offline) and checked
against the Kubernetes OpenAPI schemas with kubernetes-validate in strict mode, so a
misspelt field fails here instead of on the cluster. The BentoCloud deployment is
checked in ``test_deploy_cloud.py``.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
#: Oldest Kubernetes release the manifests are written for (matchLabelKeys in
#: topologySpreadConstraints is on by default from 1.27; 1.30 is a still-supported floor).
K8S_VERSION = "1.30"
IMAGE = "recbento:latest"
PORT = 3000  # BentoML's HTTP port inside a containerized Bento
OVERLAYS = ("cpu", "cpu-refresh", "gpu", "sqlite", "sqlite-gpu")
SHARED = ("cpu", "cpu-refresh", "gpu")  # feedback in PostgreSQL: replicas on any node
SINGLE_NODE = ("sqlite", "sqlite-gpu")  # feedback in a SQLite file on one volume
GPU = ("gpu", "sqlite-gpu")
REFRESH = ("cpu-refresh",)  # a scheduled refresh CronJob and a shared model store


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: the deploy tests render deploy/kubernetes with "
            "`kubectl kustomize` (offline, no cluster needed). Install kubectl >= 1.27."
        )
    return kubectl


def _render_dir(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(_render_dir(K8S / "overlays" / overlay))


def render(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(overlay)))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def port_number(c: dict[str, Any], port: int | str) -> int:
    """Resolve a named port against the container's ports."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in c["ports"] if "name" in p}
    assert port in by_name, f"port {port!r} is not declared by the container"
    return by_name[port]


# -- Kubernetes ------------------------------------------------------------------------


def test_the_overlays_are_the_documented_ones() -> None:
    assert tuple(sorted(p.name for p in (K8S / "overlays").iterdir())) == tuple(sorted(OVERLAYS))
    readme = (ROOT / "deploy" / "README.md").read_text()
    for overlay in OVERLAYS:
        assert f"kubectl apply -k deploy/kubernetes/overlays/{overlay}" in readme, overlay


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_fits_the_kubernetes_api(overlay: str) -> None:
    import kubernetes_validate as kv

    docs = render(overlay)
    kinds = sorted(d["kind"] for d in docs)
    expected = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    if overlay in SINGLE_NODE:
        expected.append("PersistentVolumeClaim")
    if overlay in REFRESH:
        expected += ["CronJob", "PersistentVolumeClaim"]
    assert kinds == sorted(expected)
    for doc in docs:
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{overlay}: {doc['kind']} {where}: {e.message}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_port_and_names_match_the_bento(overlay: str, bento_api) -> None:
    docs = render(overlay)
    dep = one(docs, "Deployment")
    api = bento_api
    assert dep["metadata"]["name"] == api.name == "recbento"
    c = container(dep)
    assert c["image"] == IMAGE
    assert PORT in [p["containerPort"] for p in c["ports"]]
    probes = {kind: c[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/livez"
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    probes["startupProbe"] = c["startupProbe"]["httpGet"]
    for kind, probe in probes.items():
        assert port_number(c, probe["port"]) == PORT, kind
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]

    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc = one(docs, "Service")
    assert svc["metadata"]["name"] == api.name
    assert svc["spec"]["selector"].items() <= labels.items()
    for port in svc["spec"]["ports"]:
        assert port_number(c, port["targetPort"]) == PORT
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_bentoml_serves_the_probed_endpoints() -> None:
    from bentoml._internal.server import base_app

    source = Path(base_app.__file__).read_text()
    assert '"/livez"' in source and '"/readyz"' in source


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_serves_the_model_its_bento_packed(overlay: str) -> None:
    dep = one(render(overlay), "Deployment")
    assert "RECBENTO_MODEL" not in env(dep)
    assert "envFrom" not in container(dep)  # nothing could bring RECBENTO_MODEL in unseen


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_hpa_alone_sets_the_replica_count(overlay: str) -> None:
    docs = render(overlay)
    dep, hpa = one(docs, "Deployment"), one(docs, "HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == (
        dep["apiVersion"],
        "Deployment",
        dep["metadata"]["name"],
    )
    assert "replicas" not in dep["spec"], "a Deployment replicas field resets the HPA on apply"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container(dep)["resources"]["requests"]  # utilization needs a request


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gpu_only_where_asked_and_rollouts_cannot_wait_for_a_busy_gpu(overlay: str) -> None:
    docs = render(overlay)
    dep = one(docs, "Deployment")
    c, spec = container(dep), dep["spec"]["template"]["spec"]
    rolling = dep["spec"]["strategy"]["rollingUpdate"]
    if overlay not in GPU:
        assert "nvidia.com/gpu" not in str(c["resources"])
        assert env(dep)["RECBENTO_DEVICE"]["value"] == "cpu"
        return
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert int(c["resources"]["requests"]["nvidia.com/gpu"]) == 1
    assert env(dep)["RECBENTO_DEVICE"]["value"] == "cuda"
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    # A new pod must never wait for the GPU an old pod holds: no surge, and the old pod
    # may stop first.
    assert rolling["maxSurge"] == 0 and rolling["maxUnavailable"] >= 1
    # ...and, as shipped, no replica waits for a GPU on a one-GPU node (one that did
    # would also stall the next rollout): operators raise the bound to their GPU count.
    hpa = one(docs, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 1)


@pytest.mark.parametrize("overlay", SHARED)
def test_shared_overlays_read_the_postgres_url_from_a_secret_and_spread(overlay: str) -> None:
    docs = render(overlay)
    dep = one(docs, "Deployment")
    ref = env(dep)["RECBENTO_FEEDBACK_DB"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] and ref["key"] and not ref.get("optional")  # no Secret: no start
    assert not [d for d in docs if d["kind"] == "Secret"]
    for pvc in [d for d in docs if d["kind"] == "PersistentVolumeClaim"]:  # any node mounts it
        assert overlay in REFRESH and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    spec = dep["spec"]["template"]["spec"]
    assert "podAffinity" not in spec.get("affinity", {})
    spread = {t["topologyKey"]: t for t in spec["topologySpreadConstraints"]}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"].items() <= (
        labels.items()
    )
    if overlay not in GPU:
        assert one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert f"kubectl create secret generic {ref['name']} --from-literal={ref['key']}=" in readme


@pytest.mark.parametrize("overlay", SINGLE_NODE)
def test_sqlite_overlays_keep_every_replica_beside_the_volume(overlay: str) -> None:
    docs = render(overlay)
    dep, pvc = one(docs, "Deployment"), one(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    db = Path(env(dep)["RECBENTO_FEEDBACK_DB"]["value"])
    mounts = {m["name"]: Path(m["mountPath"]) for m in container(dep)["volumeMounts"]}
    spec = dep["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if mounts[v["name"]] in db.parents]
    assert volume["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    (term,) = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    assert "topologySpreadConstraints" not in spec


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlays_images_field_sets_the_image(overlay: str, tmp_path: Path) -> None:
    """What `kustomize edit set image` writes in the overlay reaches the Deployment."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(K8S, tree)
    kfile = tree / "overlays" / overlay / "kustomization.yaml"
    kust = yaml.safe_load(kfile.read_text())
    (image,) = kust["images"]
    assert (image["name"], image["newName"], image["newTag"]) == ("recbento", "recbento", "latest")
    image.update(newName="registry.example.com/team/recbento", newTag="v7")
    kfile.write_text(yaml.safe_dump(kust))
    docs = _render_dir(kfile.parent)
    assert container(one(docs, "Deployment"))["image"] == "registry.example.com/team/recbento:v7"
    for job in [d for d in docs if d["kind"] == "CronJob"]:  # the refresh runs the same image
        (c,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert c["image"] == "registry.example.com/team/recbento:v7"


def _refresh_job(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The CronJob's pod spec and its one container."""
    pod = one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


def _store_claim(pod: dict[str, Any], c: dict[str, Any], store: str) -> str:
    """The PersistentVolumeClaim holding the path ``store`` in this pod."""
    mounts = {m["name"]: Path(m["mountPath"]) for m in c["volumeMounts"]}
    (volume,) = [v for v in pod["volumes"] if mounts.get(v["name"]) in Path(store).parents]
    return volume["persistentVolumeClaim"]["claimName"]


@pytest.mark.parametrize("overlay", REFRESH)
def test_the_refresh_job_shares_the_pods_image_feedback_and_model_store(overlay: str) -> None:
    from bentoml._internal.container.generate import BENTO_PATH, BENTO_UID_GID

    docs = render(overlay)
    cron, dep = one(docs, "CronJob"), one(docs, "Deployment")
    pod, c = _refresh_job(docs)
    pods_env, job_env = env(dep), {e["name"]: e for e in c["env"]}
    assert c["image"] == container(dep)["image"] == IMAGE
    # the same feedback store: what the pods acknowledged is what the job folds in
    assert job_env["RECBENTO_FEEDBACK_DB"] == pods_env["RECBENTO_FEEDBACK_DB"]
    assert "secretKeyRef" in job_env["RECBENTO_FEEDBACK_DB"]["valueFrom"]
    # the same model store, on the same ReadWriteMany claim, that the pods follow
    store = job_env["RECBENTO_MODEL_STORE"]["value"]
    assert pods_env["RECBENTO_MODEL_STORE"]["value"] == store
    claim = _store_claim(pod, c, store)
    assert claim == _store_claim(dep["spec"]["template"]["spec"], container(dep), store)
    pvc = one(docs, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == claim and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert int(pods_env["RECBENTO_RELOAD_SECONDS"]["value"]) > 0  # the pods look for it
    # the job refreshes what the pods serve: the Bento's model, no override anywhere
    assert "RECBENTO_MODEL" not in job_env and "envFrom" not in c
    assert c["command"] == ["python", "-m", "recommender.cli"] and c["args"][0] == "refresh"
    assert "--model" not in c["args"]
    # run from the Bento's code folder, as the user the image's files belong to
    assert c["workingDir"] == f"{BENTO_PATH}/src"
    assert pod["securityContext"]["runAsUser"] == BENTO_UID_GID
    assert pod["securityContext"] == dep["spec"]["template"]["spec"]["securityContext"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    # never two at once (both would start from the same version), on a valid schedule
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    fields = spec["schedule"].split()
    assert len(fields) == 5 and not spec["schedule"].startswith("@"), spec["schedule"]
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] > 0
    # the job's pods are not API pods: no Service, PDB or spread counts them
    labels = spec["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert not one(docs, "Service")["spec"]["selector"].items() <= labels.items()
    assert not one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )


def test_the_retrain_component_adds_the_flag(tmp_path: Path) -> None:
    tree = tmp_path / "kubernetes"
    shutil.copytree(K8S, tree)
    kfile = tree / "overlays" / "cpu-refresh" / "kustomization.yaml"
    kust = yaml.safe_load(kfile.read_text())
    assert "../../components/refresh-retrain" not in kust["components"]  # off as shipped
    assert "- ../../components/refresh-retrain" in kfile.read_text()  # one line to turn on
    kust["components"].append("../../components/refresh-retrain")
    kfile.write_text(yaml.safe_dump(kust))
    _, c = _refresh_job(_render_dir(kfile.parent))
    assert c["args"] == ["refresh", "--retrain"]
    from recommender.cli import app

    ran = CliRunner().invoke(app, [*c["args"], "--help"])
    assert ran.exit_code == 0 and "--retrain" in ran.output


def test_no_committed_secret_values() -> None:
    for path in (ROOT / "deploy").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "Secret"), path
        for line in path.read_text().splitlines():
            if "postgresql://" in line:
                assert "USER:PASSWORD@HOST" in line, f"{path}: {line.strip()}"
