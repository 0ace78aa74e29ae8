"""The whole chain end to end at its smallest size (params/smoke.yaml), as `make smoke` runs it.

Slow (a few minutes): it trains tiny models, samples with vLLM on the CPU, grades, and renders the report.
"""
import csv
import subprocess
import sys

import pytest

from posttrain.params import REPO_ROOT, load_study

pytestmark = pytest.mark.slow


def test_smoke_chain(tmp_path):
    run_dir = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "posttrain.pipeline", str(REPO_ROOT / "params/smoke.yaml"), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    study = load_study(REPO_ROOT / "params/smoke.yaml", str(run_dir))
    for stage in ("00_explore_data", "01_pretrain", "02_sft", "03_evaluate", "04_report"):
        assert (run_dir / "notebooks" / f"{stage}.ipynb").is_file()
        assert (run_dir / "notebooks" / f"{stage}.html").is_file()
    assert (run_dir / "index.html").is_file()

    rows = list(csv.DictReader(open(run_dir / "eval" / "results.csv")))
    arms = {r["arm"] for r in rows}
    assert {"Base", "0%-Pre", "100%-Pre"} <= arms
    for r in rows:
        assert 0.0 <= float(r["pass@1"]) <= 1.0 and float(r["pass@1_lo"]) <= float(r["pass@1"]) <= float(r["pass@1_hi"])
    # every SFT run was evaluated, and cross-domain pairs exist
    trained = {(r["model"], r["benchmark"]) for r in rows if r["train_domain"]}
    assert len({m for m, _ in trained}) == len(study.sft)
    assert any(r["train_domain"] == "math" and r["domain"] == "code" for r in rows)

    # a second run skips every stage: nothing is recomputed for the same params
    again = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped") == 5, again.stdout[-2000:]
