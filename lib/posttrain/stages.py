"""The study chain's stages, their stamps and stopping them, shared by the local chain (posttrain.pipeline) and the
cluster job graph (posttrain.cluster): a notebook stage is done when its executed notebook and a stamp with the
study's params hash are in `<run_dir>/notebooks/`; a stage stopped by SIGTERM stops every process it started.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

from posttrain.params import REPO_ROOT

SETUP_STAGE = "mini_setup"
NOTEBOOK_STAGES = ["00_explore_data", "01_pretrain", "02_sft", "03_evaluate", "04_report"]
STAGES = [SETUP_STAGE, *NOTEBOOK_STAGES]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def stamp_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "notebooks" / f".{stage}.done.json"


def stage_is_done(run_dir: Path, stage: str, phash: str) -> bool:
    stamp = stamp_path(run_dir, stage)
    if not stamp.is_file() or not (Path(run_dir) / "notebooks" / f"{stage}.ipynb").is_file():
        return False
    return json.loads(stamp.read_text()).get("params_hash") == phash


def write_stamp(run_dir: Path, stage: str, phash: str, seconds: float) -> None:
    stamp_path(run_dir, stage).write_text(json.dumps({"params_hash": phash, "seconds": seconds}))


class Stopped(KeyboardInterrupt):
    """SIGTERM, raised where the chain waits so that it unwinds like Ctrl-C."""


def raise_stopped(signum, frame):
    raise Stopped(f"signal {signum}")


def stop_descendants(grace_s: float = 10.0) -> list[int]:
    """SIGTERM every process started below this one (kernels, training workers in their own sessions, generation
    workers), then SIGKILL those still alive after `grace_s`; returns their pids. The tree is read before any
    signal, so processes orphaned by the first deaths are still found."""
    import psutil  # a dependency of accelerate

    procs = psutil.Process().children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]
