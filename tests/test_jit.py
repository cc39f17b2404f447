"""The compiled loops load from Numba's cache, and still work where nothing can be written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_an_install_with_nowhere_to_cache_compiles_in_memory(tmp_path):
    # a module whose __pycache__ cannot be a folder, run by a user whose cache folder
    # cannot be one either: plain numba.njit(cache=True) refuses to define the function
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "kern.py").write_text(
        textwrap.dedent(
            """
            from recommender.jit import njit

            @njit()
            def add(a, b):
                return a + b
            """
        )
    )
    (pkg / "__pycache__").write_text("")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".cache").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONDONTWRITEBYTECODE="1")
    path = [str(pkg), str(ROOT)]
    code = f"import sys; sys.path[:0] = {path!r}; import kern; print(kern.add(2, 3))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "5"
    assert "without an on-disk cache" in out.stderr
