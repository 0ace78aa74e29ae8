"""The study chain's stages and their stamps, shared by the local chain (posttrain.pipeline) and the cluster job
graph (posttrain.cluster): a notebook stage is done when its executed notebook and a stamp with the study's params
hash are in `<run_dir>/notebooks/`.
"""
from __future__ import annotations

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
