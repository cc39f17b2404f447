"""The README's "Use recbento inside your own Bento" example, built and served as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port, serve, stop

ROOT = Path(__file__).resolve().parent.parent


def _example() -> tuple[str, str]:
    """The section's Python service and its bentofile, exactly as the README shows them."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use recbento inside your own Bento", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(# service\.py.*?)```", section, re.S)
    bentofile = re.search(r"```yaml\n(# bentofile\.yaml.*?)```", section, re.S)
    assert code and bentofile, "the README section lost its example"
    return code.group(1), bentofile.group(1)


def test_the_example_is_a_service_of_its_own(tmp_path, toy_model, monkeypatch):
    """Importing the example defines a service that depends on recbento's, doing no work."""
    code, _ = _example()
    (tmp_path / "shop_service.py").write_text(code)
    monkeypatch.setenv("RECBENTO_MODEL", toy_model)
    monkeypatch.syspath_prepend(str(tmp_path))
    import shop_service

    deps = {d.on.name for d in shop_service.Shop.dependencies.values()}
    assert deps == {"recbento"}
    assert [str(m.tag) for m in shop_service.Recommender.models] == [toy_model]


@pytest.mark.integration
def test_the_readme_example_builds_and_serves(tmp_path, toy_model):
    code, bentofile = _example()
    (tmp_path / "service.py").write_text(code)
    (tmp_path / "bentofile.yaml").write_text(bentofile)
    out = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(tmp_path), "--output", "tag"],
        cwd=tmp_path,
        env={**os.environ, "RECBENTO_MODEL": toy_model, "BENTOML_DO_NOT_TRACK": "True"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    assert tag.startswith("shop:")
    port = free_port()
    proc = serve(None, port, target=tag, env={"RECBENTO_WORKERS": "1"}, timeout=240)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/for_you", json={"user_id": 10, "k": 2}, timeout=60)
        assert r.status_code == 200, r.text
        picks = r.json()["picks"]
        assert len(picks) == 2
        # user 10 watched Heat and Collateral; the crime fan's next pick is explained
        assert not {"Heat (1995)", "Collateral (2004)"} & {p["title"] for p in picks}
        assert any(p["why"] for p in picks)
    finally:
        stop(proc)
