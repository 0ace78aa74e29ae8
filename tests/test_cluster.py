"""The cluster path without a cluster: cluster files, the job graph and its sbatch scripts (`--dry-run`), the job
script's time-limit warning (bash, a stub scontrol), the trainer's stop request, and the pipeline's command line
(bad input, warning filter, stopping its processes). tests/test_cluster_slurm.py runs the graph on a real SLURM.

Run: .venv/bin/python -m pytest tests/test_cluster.py -q
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from posttrain import cluster, pipeline, slurm
from posttrain.params import REPO_ROOT, ParamsError, load_run_params, load_study
from posttrain.runs import STOP_REQUEST, STOPPED_EXIT, list_checkpoints, read_loss_log

LOCAL = REPO_ROOT / "configs" / "slurm" / "local.yaml"
GENERIC = REPO_ROOT / "configs" / "slurm" / "generic_gpu.yaml"


def _run_pipeline(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posttrain.pipeline", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, **kw)


# ------------------------------------------------------------------------------------------------ cluster files


def test_cluster_files_load_and_a_typo_is_one_clear_error(tmp_path):
    for path in sorted((REPO_ROOT / "configs" / "slurm").glob("*.yaml")):
        assert slurm.load_cluster(path).name == path.stem
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "partiton": "gpu", "stages": {"train": {"time": "two days"}}}))
    with pytest.raises(ParamsError) as e:
        slurm.load_cluster(bad)
    assert "partiton: unknown field" in str(e.value) and "stages.train.time" in str(e.value)
    proc = _run_pipeline("params/smoke.yaml", "--run-dir", tmp_path / "run", "--submit", "slurm", "--cluster", bad,
                         "--dry-run")
    assert proc.returncode == 2 and "partiton: unknown field" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ the graph


def test_paper_dry_run_asks_each_run_for_the_nodes_and_gpus_its_params_ask_for(tmp_path):
    run_dir = tmp_path / "paper"
    proc = _run_pipeline("params/paper/study.yaml", "--run-dir", run_dir, "--submit", "slurm", "--cluster", GENERIC,
                         "--dry-run")
    assert proc.returncode == 0, proc.stderr
    study = load_study(REPO_ROOT / "params/paper/study.yaml", str(run_dir))
    scripts = run_dir / "slurm" / "scripts"
    gpus = set()
    for run in study.pretrain + study.sft:
        script = scripts / f"{run.training.stage}.{run.name}.sh"
        text = script.read_text()
        nodes = int(re.search(r"#SBATCH --nodes=(\d+)", text).group(1))
        per_node = int(re.search(r"#SBATCH --gpus-per-node=(\d+)", text).group(1))
        assert (nodes, per_node) == (run.launch.num_machines, run.launch.gpus_per_machine), run.name
        assert f"--num_processes {nodes * per_node}" in text and "--requeue" in text
        assert "#SBATCH --signal=B:USR1@600" in text
        if nodes > 1:
            assert "srun --ntasks-per-node=1" in text and "MACHINE_RANK=$SLURM_NODEID" in text
        gpus.add(nodes * per_node)
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert gpus == {8, 16, 32, 64}
    assert not (run_dir / "slurm" / "jobs.json").exists()  # a dry run submits nothing
    # every planned checkpoint of every model is in exactly one evaluation chunk
    keys = cluster.planned_eval_keys(study)
    chunks = cluster.eval_chunks(study, 4)
    assert [tuple(k) for c in chunks for k in c["keys"]] == keys and len(keys) == len(set(keys))
    assert "#SBATCH --array=0-" in (scripts / "eval.sh").read_text()


def test_smoke_graph_order_dependencies_and_training_groups(tmp_path):
    study = load_study(REPO_ROOT / "params/smoke.yaml", str(tmp_path / "smoke"))
    jobs = cluster.build_graph(study, REPO_ROOT / "params/smoke.yaml", slurm.load_cluster(LOCAL))
    keys = [j.key for j in jobs]
    assert keys[0] == "setup" and keys[-1] == "report" and "eval" in keys and len(keys) >= 4
    position = {k: i for i, k in enumerate(keys)}
    for job in jobs:
        assert all(position[a] < position[job.key] for a in job.after), job.key  # submission order is topological
    sft = [j for j in jobs if j.key.startswith("sft/")]
    pre = [j for j in jobs if j.key.startswith("pretrain/")]
    # training grouped as the local chain groups it (train_workers: 2), every run exactly once
    assert sorted(r.name for j in sft for r in j.runs) == sorted(r.name for r in study.sft) and len(sft) == 2
    assert all(j.env == {"OMP_NUM_THREADS": "1"} and j.cpus == 1 for j in sft)
    assert all(set(j.after) == {"setup", pre[0].key} for j in sft)  # they start from the pre-training
    keys_planned = cluster.planned_eval_keys(study)
    assert ("base", "checkpoint-20") in keys_planned and ("math_0pre", "checkpoint-6") in keys_planned
    assert len(keys_planned) == 1 + 2 * len(study.sft)
    assert next(j for j in jobs if j.key == "eval").array == [0, 1]  # 13 checkpoints, 7 per chunk
    assert not any(j.done for j in jobs)


# ------------------------------------------------------------------------------------------------ the job script


def test_time_limit_warning_stops_the_command_and_requeues_the_job(tmp_path):
    """The job script under bash alone: USR1 (SLURM's warning) touches the stop files of a training job, and the job
    requeues itself once its command has exited; the exit record holds the command's exit code."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/scontrol.args\n")
    (bin_dir / "scontrol").chmod(0o755)
    stop = tmp_path / "run" / STOP_REQUEST
    stop.parent.mkdir()
    # the "trainer": waits for its stop file, then exits as posttrain.trainer does after a stop request
    command = f"bash -c 'while [ ! -e {stop} ]; do sleep 0.1; done; exit {STOPPED_EXIT}'"
    config = slurm.ClusterParams(name="t")
    opts = slurm.sbatch_options(config, "train", name="t", log=tmp_path / "log")
    script = tmp_path / "job.sh"
    script.write_text(slurm.job_script(config, "sft/x", opts, command, tmp_path / "exit", [stop]))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "41"}
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert proc.poll() is None
    proc.send_signal(signal.SIGUSR1)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == STOPPED_EXIT and "time-limit warning" in out
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "41"]
    assert json.loads((tmp_path / "exit" / "41.json").read_text())["exit"] == STOPPED_EXIT


# ------------------------------------------------------------------------------------------------ the trainer


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("stop"), num_rows=400)


def toy_run(toy: Path, name: str, **training) -> Path:
    """A toy SFT run's params file (tests/fixtures/toy_task) under `toy`; `training` overrides its schedule."""
    params = {"name": name, "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": str(toy / name),
              "model": {"name_or_path": str(toy / "base"), "init": "scratch"},
              "data": {"source": "messages_jsonl", "path": str(toy / "sft.jsonl")},
              "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 512, "per_device_batch_size": 2,
                           "max_steps": 24, "warmup_steps": 2, "learning_rate": 3e-3, "save_steps": 8,
                           "logging_steps": 3, "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
                           **training}}
    path = toy / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_stop_request_saves_at_a_logging_step_and_the_resumed_run_matches(toy):
    from posttrain.trainer import train_in_process
    reference = load_run_params(toy_run(toy, "reference"))
    train_in_process(reference)
    expected = [(r["step"], r["loss"]) for r in read_loss_log(reference.output_dir)]

    path = toy_run(toy, "stopped")
    out = toy / "stopped"
    cmd = [sys.executable, "-m", "posttrain.trainer", "--params", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while not read_loss_log(out) or read_loss_log(out)[-1]["step"] < 4:
        assert proc.poll() is None and time.time() < deadline, "training ended or stalled before step 4"
        time.sleep(0.05)
    (out / STOP_REQUEST).touch()
    assert proc.wait(timeout=120) == STOPPED_EXIT
    steps = [s for s, _ in list_checkpoints(out)]
    assert steps and steps[-1] % 3 == 0 and steps[-1] < 24 and not (out / "done.json").exists()
    (out / STOP_REQUEST).unlink()  # the cluster job script removes it before it starts the trainer
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    got = [(r["step"], r["loss"]) for r in read_loss_log(out)]
    assert [s for s, _ in got] == [s for s, _ in expected]
    assert [pytest.approx(l, rel=1e-4) for _, l in expected] == [l for _, l in got]
    # the resume point is gone once the run is complete (evaluation reads the planned checkpoints)
    assert [s for s, _ in list_checkpoints(out)] == [8, 16, 24]


# ------------------------------------------------------------------------------------------------ the command line


def test_bad_input_is_one_message_and_exit_2(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"base: {REPO_ROOT}/params/smoke.yaml\nevaluate:\n  sampling:\n    temprature: 1.0\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [\n")
    for args, says in [((typo,), "evaluate.sampling.temprature: unknown field"), ((broken,), "not valid YAML"),
                       ((tmp_path / "missing.yaml",), "params file not found")]:
        proc = _run_pipeline(*args)
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = _run_pipeline(typo, "--debug")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_kernel_noise_is_filtered_and_the_rest_passes():
    import io
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All ...\n"
                       b"a real error\n")
    os.close(write_fd)
    sink = io.StringIO()
    pipeline._forward_filtered(read_fd, sink, pipeline.KERNEL_NOISE)
    assert sink.getvalue() == "a real error\n"


STOPPER = """
import signal, subprocess, sys, time
import psutil
from posttrain import pipeline
signal.signal(signal.SIGTERM, pipeline.raise_stopped)  # what pipeline.main installs
try:
    # a child in its own session (as training jobs are) with a grandchild, as a kernel's workers would be
    child = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
                              "time.sleep(300)"], start_new_session=True)
    deadline = time.time() + 120
    while len(psutil.Process().children(recursive=True)) < 2 and time.time() < deadline:
        time.sleep(0.1)  # the grandchild's interpreter may take a while to start on a busy machine
    print(" ".join(str(p.pid) for p in psutil.Process().children(recursive=True)), flush=True)
    time.sleep(300)
except pipeline.Stopped:  # wherever the signal lands
    print("stopped", len(pipeline.stop_descendants(grace_s=5)), flush=True)
"""


def test_sigterm_stops_every_process_the_chain_started(tmp_path):
    import psutil
    proc = subprocess.Popen([sys.executable, "-c", STOPPER], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout.readline().split() == ["stopped", "2"]
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_submit_without_slurm_says_so(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with no sbatch on it
    bin_dir.mkdir()
    proc = _run_pipeline("params/smoke.yaml", "--run-dir", tmp_path / "run", "--submit", "slurm", "--cluster", LOCAL,
                         env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 1 and "sbatch not found" in proc.stderr and "Traceback" not in proc.stderr
