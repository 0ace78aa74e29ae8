"""The smoke study through the local SLURM cluster vs the local chain: both wall times, their ratio, the job count,
and whether they computed the same (scripts/compare_runs.py: loss logs, sampled responses, scores).

    scripts/local_slurm.sh start
    .venv/bin/python benchmarks/slurm_overhead.py [--work DIR] [--local-run DIR]

--local-run: a finished local smoke run to compare with (its wall time is read from its timings.json, so the
ratio then compares with that run's machine load). tests/test_cluster_slurm.py runs the same comparison.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke.yaml"
LOCAL_CLUSTER = REPO / "configs" / "slurm" / "local.yaml"


def _timed(cmd: list[str]) -> tuple[int, float, str]:
    start = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    return proc.returncode, time.time() - start, proc.stdout + proc.stderr


def compare_local_and_slurm(work: Path, local_run: str | None = None) -> dict:
    """Run the smoke study locally (unless `local_run` is given) and through SLURM with --wait, under `work`."""
    work = Path(work)
    if local_run:
        local = Path(local_run)
        local_s = sum(json.loads((local / "timings.json").read_text()).values())
    else:
        local = work / "local"
        rc, local_s, out = _timed([sys.executable, "-m", "posttrain.pipeline", str(SMOKE), "--run-dir", str(local)])
        if rc:
            raise RuntimeError(f"the local smoke run failed:\n{out[-3000:]}")
    cluster_run = work / "slurm"
    rc, slurm_s, slurm_out = _timed([sys.executable, "-m", "posttrain.pipeline", str(SMOKE), "--run-dir",
                                     str(cluster_run), "--submit", "slurm", "--cluster", str(LOCAL_CLUSTER), "--wait"])
    jobs = json.loads((cluster_run / "slurm" / "jobs.json").read_text()) if rc == 0 else {}
    cmp = subprocess.run([sys.executable, str(REPO / "scripts" / "compare_runs.py"), str(local), str(cluster_run)],
                         cwd=REPO, capture_output=True, text=True)
    return {"local_s": round(local_s, 1), "slurm_s": round(slurm_s, 1), "ratio": round(slurm_s / local_s, 2),
            "jobs": len(jobs), "slurm_rc": rc, "slurm_output": slurm_out, "compare_rc": cmp.returncode,
            "compare_output": cmp.stdout + cmp.stderr}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None, help="where both runs go (default: a temporary folder)")
    ap.add_argument("--local-run", default=None, help="a finished local smoke run to compare with")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="slurm_overhead_"))
    r = compare_local_and_slurm(work, args.local_run)
    print(f"smoke study: local {r['local_s']} s, through SLURM {r['slurm_s']} s ({r['ratio']}x, {r['jobs']} jobs); "
          f"results {'identical' if r['compare_rc'] == 0 else 'DIFFER'}; runs under {work}")
    if r["slurm_rc"]:
        print(r["slurm_output"][-3000:])
    print(r["compare_output"].strip())
    return 0 if r["slurm_rc"] == 0 and r["compare_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
