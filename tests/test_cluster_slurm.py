"""The cluster path on a real SLURM: the one-node cluster of scripts/local_slurm.sh (started here when it is not
running, stopped again at the end; the tests skip, saying why, where it cannot start: not root, no slurm-wlm/munge).

- a failed job makes `--submit slurm --wait` fail, naming the job and its log;
- a training job warned before its time limit (USR1) and then requeued by force (`scontrol requeue`) resumes each
  time and ends with the loss curve of an uninterrupted run;
- (slow) the smoke study through SLURM computes what the local chain computes (scripts/compare_runs.py).

Run: .venv/bin/python -m pytest tests/test_cluster_slurm.py -q -rs
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from posttrain import slurm
from posttrain.params import REPO_ROOT, load_run_params
from posttrain.runs import list_checkpoints, read_loss_log

SCRIPT = REPO_ROOT / "scripts" / "local_slurm.sh"
LOCAL = REPO_ROOT / "configs" / "slurm" / "local.yaml"


def _cannot_start() -> str | None:
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (scripts/local_slurm.sh)"
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(b) is None
               and not Path("/usr/sbin", b).exists()]
    return f"not installed: {', '.join(missing)} (apt-get install slurm-wlm munge)" if missing else None


@pytest.fixture(scope="session")
def local_slurm():
    reason = _cannot_start()
    if reason:
        pytest.skip(reason)
    running = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True).returncode == 0
    if not running:
        proc = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120)
        if proc.returncode:
            pytest.skip(f"the local SLURM cluster did not start: {proc.stderr.strip()[-500:]}")
    yield
    if not running:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)


def _submit(params, run_dir, cluster, *extra, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain.pipeline", str(params), "--run-dir", str(run_dir),
                           "--submit", "slurm", "--cluster", str(cluster), *extra], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_failed_job_makes_wait_fail_naming_it_and_its_log(local_slurm, tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({**yaml.safe_load(LOCAL.read_text()), "venv": str(tmp_path / "no-venv")}))
    run_dir = tmp_path / "smoke"
    proc = _submit(REPO_ROOT / "params/smoke.yaml", run_dir, broken, "--wait")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    records = json.loads((run_dir / "slurm" / "jobs.json").read_text())
    assert len(records) >= 4
    setup = records["setup"]
    first = proc.stderr.splitlines()[0]
    assert first.startswith(f"[cluster] FAILED setup (job {setup['job_id']}): exit 127"), proc.stderr
    assert first.endswith(f"log {setup['log']}") and Path(setup["log"]).is_file()
    assert "no-venv/bin/python: No such file" in Path(setup["log"]).read_text()
    # everything after it never ran, and says so
    assert "not run because of it: 00_explore_data" in proc.stderr and proc.stderr.count("FAILED") == 1
    status = subprocess.run([sys.executable, "-m", "posttrain.pipeline", "params/smoke.yaml", "--run-dir",
                             str(run_dir), "--status"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "failed" in status.stdout


def _wait(condition, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _state(job_id: str) -> str:
    return slurm.queue([job_id]).get(job_id, ("GONE", ""))[0]


@pytest.mark.slow  # ~2 min: two trainings, two requeues (a requeued job waits cred_expire before it restarts)
def test_warned_then_requeued_training_job_resumes_to_the_same_loss_curve(local_slurm, tmp_path):
    from fixtures.toy_task import write_reverse_task
    from test_cluster import toy_run

    from posttrain.trainer import train_in_process

    toy = write_reverse_task(tmp_path, num_rows=400)

    def run(name: str) -> Path:
        return toy_run(toy, name, max_steps=150, save_steps=15, logging_steps=5)

    reference = load_run_params(run("reference"))
    train_in_process(reference)
    expected = [(r["step"], r["loss"]) for r in read_loss_log(reference.output_dir)]

    params = load_run_params(run("requeued"))
    out = Path(params.output_dir)
    config = slurm.load_cluster(LOCAL)
    log = tmp_path / "train-%j.out"
    command = f"{config.python} -m posttrain.trainer --params {toy / 'requeued.yaml'}"
    script = tmp_path / "train.sh"
    script.write_text(slurm.job_script(config, "sft/requeued", slurm.sbatch_options(config, "train", name="requeued",
                                                                                     log=log, cpus=1),
                                       command, tmp_path / "exit", [out / "stop.request"], {"OMP_NUM_THREADS": "1"}))
    job = slurm.sbatch(script, [])
    step = lambda: (read_loss_log(out) or [{"step": 0}])[-1]["step"]  # noqa: E731

    # 1. the time-limit warning: the trainer saves at its next logging step, exits, the job requeues itself
    _wait(lambda: step() >= 15, "step 15")
    subprocess.run(["scancel", "--signal=USR1", "--batch", job], check=True)
    _wait(lambda: _state(job) == "PENDING", "the requeue after the warning", 180)
    warned_at = [s for s, _ in list_checkpoints(out)][-1]
    assert warned_at % 5 == 0 and warned_at % 15 and warned_at < 150, warned_at  # a logging step, no planned save
    # 2. a forced requeue (as preemption does): killed, and resumed from the last checkpoint (a multiple of the
    #    logging steps: a logged loss averages the steps since the last log, so a resume between logs differs)
    _wait(lambda: step() >= warned_at + 15, f"step {warned_at + 15}", 300)
    subprocess.run(["scontrol", "requeue", job], check=True)
    _wait(lambda: (out / "done.json").is_file() and _state(job) not in slurm.ACTIVE, "the run to finish", 400)

    text = Path(str(log).replace("%j", job)).read_text()
    assert "restart 2" in text and "time-limit warning" in text
    assert json.loads((tmp_path / "exit" / f"{job}.json").read_text())["exit"] == 0
    got = [(r["step"], r["loss"]) for r in read_loss_log(out)]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [pytest.approx(loss, rel=1e-4) for _, loss in expected] == [loss for _, loss in got]
    # only the planned checkpoints remain: a resume point between them was removed
    assert [s for s, _ in list_checkpoints(out)] == list(range(15, 151, 15))


@pytest.mark.slow
def test_smoke_study_through_slurm_computes_what_the_local_chain_computes(local_slurm, smoke_run, tmp_path):
    """The benchmark's comparison (benchmarks/slurm_overhead.py prints both wall times), against the session's
    local smoke run (tests/conftest.py: the chain runs once per session)."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    from slurm_overhead import compare_local_and_slurm

    result = compare_local_and_slurm(tmp_path, str(smoke_run))
    assert result["slurm_rc"] == 0, result["slurm_output"][-3000:]
    assert result["jobs"] >= 4
    assert result["compare_rc"] == 0, result["compare_output"]
    assert (tmp_path / "slurm" / "index.html").is_file()
