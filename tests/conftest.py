"""Shared fixtures. `smoke_run`: one finished run of the whole chain at its smallest size (params/smoke.yaml), made
once per test session and shared by the tests that read it (the chain's own checks, the notebooks in JupyterLab, the
SLURM comparison): the chain is the slowest thing CI runs, so it runs once.
SMOKE_RUN_DIR=<a finished copy of a smoke run> skips the chain and tests that run instead (tests write into it: point
it at a copy)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.params import REPO_ROOT


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A finished smoke run: SMOKE_RUN_DIR, or the chain run here once."""
    if os.environ.get("SMOKE_RUN_DIR"):
        return Path(os.environ["SMOKE_RUN_DIR"]).resolve()
    run_dir = tmp_path_factory.mktemp("chain") / "smoke"
    cmd = [sys.executable, "-m", "posttrain.pipeline", str(REPO_ROOT / "params/smoke.yaml"), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return run_dir
