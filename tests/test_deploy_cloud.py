"""The BentoCloud deployment fits BentoML's schema and agrees with the Bento it runs."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ROOT / "deploy" / "bentocloud" / "deployment.yaml"
IMAGE = "recbento:latest"


def test_bentocloud_config_fits_bentomls_schema() -> None:
    import attr
    from bentoml._internal.cloud.schemas.modelschemas import DeploymentServiceConfig
    from bentoml._internal.cloud.schemas.schemasv2 import CreateDeploymentSchema
    from bentoml._internal.cloud.schemas.utils import schema_from_object

    cfg = yaml.safe_load(CLOUD.read_text())
    # BentoML ignores unknown keys: a misspelt one would silently do nothing.
    assert set(cfg) <= {f.name for f in attr.fields(CreateDeploymentSchema)}
    for name, svc in cfg["services"].items():
        assert set(svc) <= {f.name for f in attr.fields(DeploymentServiceConfig)}, name
    parsed = schema_from_object(cfg, CreateDeploymentSchema)
    assert parsed.bento == IMAGE


def test_bentocloud_config_matches_the_bento(bento_api) -> None:
    cfg = yaml.safe_load(CLOUD.read_text())
    services = bento_api.all_services()
    assert set(cfg["services"]) == set(services) == {"recbento", "recbento-encoder"}
    for name, svc in cfg["services"].items():
        scaling = svc["scaling"]
        assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"], name
        wants_gpu = services[name].config.get("resources", {}).get("gpu")
        assert svc["instance_type"].startswith("gpu.") == bool(wants_gpu), name
    api = cfg["services"][bento_api.name]
    assert api["scaling"]["max_replicas"] > 1 and api["scaling"]["min_replicas"] >= 2
    envs = _env_names(cfg)
    assert "RECBENTO_MODEL" not in envs  # the Bento serves the model it packed


def test_bentocloud_has_one_bearer_token_check() -> None:
    """BentoCloud's access authorization and RECBENTO_API_TOKEN both read the same
    `Authorization: Bearer` header: at most one of them may be on."""
    cfg = yaml.safe_load(CLOUD.read_text())
    envs = _env_names(cfg)
    token_secret = "recbento-api"  # the secret deploy/README.md says holds the token
    app_token = "RECBENTO_API_TOKEN" in envs or token_secret in cfg.get("secrets", [])
    assert not (cfg.get("access_authorization") and app_token)
    assert cfg.get("access_authorization") or app_token, "the endpoint would be open"
    readme = (ROOT / "deploy" / "README.md").read_text()
    assert "access_authorization" in readme and "RECBENTO_API_TOKEN" in readme


def test_bentocloud_api_replicas_share_feedback() -> None:
    """More than one API replica only works with the shared (PostgreSQL) store."""
    cfg = yaml.safe_load(CLOUD.read_text())
    readme = (ROOT / "deploy" / "README.md").read_text()
    for secret in cfg["secrets"]:
        assert f"bentoml secret create {secret} RECBENTO_FEEDBACK_DB=" in readme
    envs = {e["name"]: e["value"] for s in cfg["services"].values() for e in s.get("envs", [])}
    assert "RECBENTO_FEEDBACK_DB" not in envs  # no replica-local SQLite path


def test_bentofile_names_the_api_service(bento_api) -> None:
    bentofile = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert bentofile["name"] == IMAGE.split(":")[0]
    assert bento_api.name == "recbento"


def _env_names(cfg: dict) -> list[str]:
    """Every environment variable the deployment sets, for all services or for one."""
    names = [e["name"] for e in cfg.get("envs", [])]
    return names + [e["name"] for s in cfg["services"].values() for e in s.get("envs", [])]
