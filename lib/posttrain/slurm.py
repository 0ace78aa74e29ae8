"""SLURM itself: the cluster file (configs/slurm/*.yaml), the sbatch script of one job, and the three commands
posttrain.cluster needs (sbatch, squeue, scontrol). No scheduling logic of our own: SLURM runs the graph.

A job script asks for requeue and a warning signal (`--signal=B:USR1@signal_seconds`) before its time limit. On the
warning a training job touches its runs' STOP_REQUEST files (posttrain.trainer saves a checkpoint at its next
logging step and exits), any other job stops its command (stages resume from their records); then the job requeues
itself. Every job writes its exit code to `<run_dir>/slurm/exit/<job id>.json` on the way out: SLURM forgets
finished jobs after MinJobAge and a cluster may have no accounting database.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from posttrain.params import REPO_ROOT, ParamsError, Strict, _format_errors, _read_yaml, _substitute, resolve_repo_path

Stage = Literal["setup", "notebook", "train", "eval", "report"]
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # SLURM's time formats: minutes, h:mm:ss, d-hh:mm:ss


class StageResources(Strict):
    time: str = "4:00:00"  # the stage's time limit
    cpus: int | None = Field(None, gt=0)  # CPUs per task; None: the cluster's cpus_per_node for GPU jobs, else 1
    mem: str | None = None  # e.g. "64G"; None: the cluster's mem
    gpus_per_node: int | None = Field(None, ge=0)  # None: training from its launch section, evaluation tp × dp
    partition: str | None = None  # None: the cluster's partition
    constraint: str | None = None

    @field_validator("time")
    @classmethod
    def _slurm_time(cls, value: str) -> str:
        if not TIME_RE.match(value):
            raise ValueError(f"{value!r} is not a SLURM time (minutes, h:mm:ss or d-hh:mm:ss)")
        return value


class ClusterParams(Strict):
    name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = Field(0, ge=0)  # 0: a CPU cluster (every job runs on CPUs)
    cpus_per_node: int = Field(1, gt=0)  # what a whole-node job asks for; local-backend training splits it
    mem: str | None = None
    constraint: str | None = None
    sbatch_extra: list[str] = []  # more sbatch options, e.g. ["--exclusive", "--reservation=x"]
    modules: list[str] = []  # `module load` each, in order
    setup: list[str] = []  # more shell lines before the command (exports, conda activate, ...)
    venv: str = "{repo}/.venv"  # its bin/python runs every command
    container: str | None = None  # a command prefix, e.g. "apptainer exec --nv /images/posttrain.sif"
    requeue: bool = True
    signal_seconds: int = Field(300, gt=0)  # USR1 this long before a job's time limit
    master_port: int = 29500
    eval_checkpoints_per_chunk: int = Field(4, gt=0)  # one evaluation array task (one engine) per this many
    stages: dict[Stage, StageResources] = {}

    def stage(self, name: str) -> StageResources:
        return self.stages.get(name, StageResources())

    @property
    def python(self) -> str:
        python = shlex.quote(str(Path(self.venv) / "bin" / "python"))
        return f"{self.container} {python}" if self.container else python


def load_cluster(path: str | Path) -> ClusterParams:
    """A cluster file, validated: unknown fields and bad values are one error naming the field and the file."""
    path = resolve_repo_path(path)
    data = _substitute(_read_yaml(path), {"repo": str(REPO_ROOT)})
    try:
        return ClusterParams.model_validate(data)
    except ValidationError as e:
        raise ParamsError(_format_errors(e, str(path)).replace("posttrain/params.py", "posttrain/slurm.py")) from None


# ------------------------------------------------------------------------------------------------ job scripts


def sbatch_options(cluster: ClusterParams, stage: str, *, name: str, log: Path, nodes: int = 1, gpus: int = 0,
                   cpus: int | None = None, array: list[int] | None = None) -> list[str]:
    res = cluster.stage(stage)
    gpus = res.gpus_per_node if res.gpus_per_node is not None else gpus
    cpus = res.cpus or cpus or (cluster.cpus_per_node if gpus else 1)
    opts = [f"--job-name={name}", f"--output={log}", "--open-mode=append", f"--time={res.time}",
            f"--nodes={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus}", "--kill-on-invalid-dep=yes",
            f"--signal=B:USR1@{cluster.signal_seconds}"]
    opts += ["--requeue"] if cluster.requeue else ["--no-requeue"]
    opts += [f"--gpus-per-node={gpus}"] if gpus else []
    for flag, value in (("partition", res.partition or cluster.partition), ("account", cluster.account),
                        ("qos", cluster.qos), ("mem", res.mem or cluster.mem),
                        ("constraint", res.constraint or cluster.constraint)):
        opts += [f"--{flag}={value}"] if value else []
    opts += [f"--array={array_spec(array)}"] if array is not None else []
    return opts + list(cluster.sbatch_extra)


def array_spec(indices: list[int]) -> str:
    """SLURM's array syntax, runs of indices as ranges: [0, 1, 2, 5] -> '0-2,5'."""
    parts, start = [], None
    for i, n in enumerate(indices):
        start = n if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != n + 1:
            parts.append(str(n) if start == n else f"{start}-{n}")
            start = None
    return ",".join(parts)


SCRIPT = """#!/bin/bash
{sbatch}
# {key}: written by posttrain.cluster
set -u
{setup}
cd {repo}
export PYTHONUNBUFFERED=1 POSTTRAIN_JOB_KEY={key_q}
{env}
job_id=${{SLURM_ARRAY_JOB_ID:+${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}}}
job_id=${{job_id:-${{SLURM_JOB_ID:-local}}}}
record_exit() {{
  local rc=$?
  mkdir -p {exit_dir}
  printf '{{"key": "%s", "job": "%s", "exit": %d, "host": "%s", "end": %d}}\\n' \\
    {key_q} "$job_id" "$rc" "$(hostname -s)" "$(date +%s)" > {exit_dir}/"$job_id".json
}}
trap record_exit EXIT
stop_files=({stop_files})
rm -f "${{stop_files[@]}}"
stop_requested=0
on_warning() {{  # SLURM's USR1 before the time limit: stop at a resumable point, then requeue
  stop_requested=1
  echo "[posttrain.cluster] $(date -u +%FT%TZ) time-limit warning: stopping to requeue"
  # not training: TERM the command (a list like `a && b` runs in a subshell: its children too)
  if (( ${{#stop_files[@]}} )); then touch "${{stop_files[@]}}"; else kill -TERM $(pgrep -P "$child") "$child" 2>/dev/null; fi
}}
trap on_warning USR1
echo "[posttrain.cluster] $(date -u +%FT%TZ) {key} job $job_id on $(hostname -s), restart ${{SLURM_RESTART_COUNT:-0}}"
{command} &
child=$!
while :; do
  wait "$child"; rc=$?
  kill -0 "$child" 2>/dev/null || break  # wait returns early when USR1 arrives
done
if (( stop_requested )); then
  scontrol requeue "${{SLURM_JOB_ID}}"
fi
exit "$rc"
"""


def job_script(cluster: ClusterParams, key: str, options: list[str], command: str, exit_dir: Path,
               stop_files: list[Path] = (), env: dict[str, str] | None = None) -> str:
    setup = [f"module load {shlex.quote(m)}" for m in cluster.modules] + list(cluster.setup)
    return SCRIPT.format(
        sbatch="\n".join(f"#SBATCH {o}" for o in options), key=key, key_q=shlex.quote(key),
        setup="\n".join(setup), repo=shlex.quote(str(REPO_ROOT)), exit_dir=shlex.quote(str(exit_dir)),
        env="\n".join(f"export {k}={shlex.quote(v)}" for k, v in (env or {}).items()),
        stop_files=" ".join(shlex.quote(str(p)) for p in stop_files), command=command)


def multinode_command(cluster: ClusterParams, launch: str) -> str:
    """One srun task per node running `launch` (posttrain.training.launch_command with shell variables), each node
    with its MACHINE_RANK; the first node is the rendezvous (as scripts/slurm_train.sh does)."""
    inner = f"export MACHINE_RANK=$SLURM_NODEID; exec {launch}"
    return ('MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
            f"MASTER_PORT={cluster.master_port} srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
            f"bash -c {shlex.quote(inner)}")


# ------------------------------------------------------------------------------------------------ commands


class SlurmError(RuntimeError):
    pass


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SlurmError(f"{cmd[0]} not found: is this a SLURM login node? (scripts/local_slurm.sh starts a "
                         "one-node cluster here)") from None
    if proc.returncode:
        raise SlurmError(f"{shlex.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def sbatch(script: Path, after: list[str]) -> str:
    """Submit; the job id. `after`: job ids it waits for (afterok)."""
    dependency = [f"--dependency=afterok:{':'.join(after)}"] if after else []
    return _run(["sbatch", "--parsable", *dependency, str(script)]).strip().split(";")[0]


ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
          "SIGNALING", "STAGE_OUT", "SUSPENDED"}


def queue(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """'<id>' or '<array id>_<task>' → (state, reason) for the jobs SLURM still knows, finished ones included
    (until MinJobAge)."""
    if not job_ids:
        return {}
    out = _run(["squeue", "-h", "-r", "--states=all", "-o", "%A|%a|%T|%r"])
    states = {}
    for line in out.splitlines():
        job, task, state, reason = line.split("|", 3)
        if job in job_ids:
            states[job if task in ("N/A", "(null)", "") else f"{job}_{task}"] = (state, reason)
    return states


def read_exits(exit_dir: Path) -> dict[str, dict]:
    """'<id>' or '<array id>_<task>' → the exit record the job wrote."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(exit_dir.glob("*.json"))} if exit_dir.is_dir() else {}
