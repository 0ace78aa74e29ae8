"""Training runs (pre-training or SFT): the token-denominated schedule, the command that launches a run, and the
loop the notebooks call. The run itself (TRL's SFTTrainer, resumable) is posttrain.trainer.

    python -m posttrain.training --params params/paper/sft_math_1.5b_0pre.yaml            # one process
    python -m posttrain.training --params A.yaml --params B.yaml                           # several, one after another
    accelerate launch --config_file configs/accelerate/fsdp2.yaml -m posttrain.training --params FILE
    python -m posttrain.training --params FILE --print-launch                              # the accelerate command

Outputs of a run (checkpoint-N/, loss.jsonl, data_stats.json, done.json): see posttrain.trainer.
Tests: tests/test_training.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from posttrain.params import REPO_ROOT, TrainParams, dump_params, load_train_params, params_hash

log = logging.getLogger(__name__)

LOSS_LOG = "loss.jsonl"
DONE_MARKER = "done.json"
DATA_STATS = "data_stats.json"
ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# A multi-run worker prints this line before each run, so train_runs can file its output in that run's train.log.
RUN_MARKER = "[posttrain.training] run: "


# ------------------------------------------------------------------------------------------------ schedule


def world_size() -> int:
    """Processes in the job, from the env `accelerate launch`/torchrun set (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_schedule(params: TrainParams, num_processes: int | None = None) -> dict:
    """gradient_accumulation_steps and max_steps from the token-denominated recipe.

    tokens/step = per_device_batch_size × max_length × world_size × grad_accum (packed sequences are full, up to the
    packing remainder); max_steps = ceil(token_budget / tokens_per_step) when a budget is given."""
    t = params.training
    world = num_processes or world_size()
    tokens_per_micro_step = t.per_device_batch_size * t.max_length * world
    if t.gradient_accumulation_steps is not None:
        accum = t.gradient_accumulation_steps
    else:
        accum, remainder = divmod(t.tokens_per_step, tokens_per_micro_step)
        if accum < 1 or remainder:
            raise ValueError(
                f"training.tokens_per_step {t.tokens_per_step} is not a multiple of per_device_batch_size × "
                f"max_length × world_size = {t.per_device_batch_size} × {t.max_length} × {world} = "
                f"{tokens_per_micro_step}; pick tokens_per_step = k × {tokens_per_micro_step}")
    tokens_per_step = tokens_per_micro_step * accum
    max_steps = t.max_steps if t.max_steps is not None else math.ceil(t.token_budget / tokens_per_step)
    return {"world_size": world, "gradient_accumulation_steps": accum, "tokens_per_step": tokens_per_step,
            "max_steps": max_steps, "total_tokens": max_steps * tokens_per_step}


# ------------------------------------------------------------------------------------------------ run


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N dirs whose trainer_state.json exists (written last, so a kill mid-save leaves it absent)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state.json").is_file()]


def is_done(params: TrainParams) -> bool:
    """True when output_dir holds a done marker written for these exact params."""
    marker = Path(params.output_dir) / DONE_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("params_hash") == params_hash(params)


def read_loss_log(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / LOSS_LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# ------------------------------------------------------------------------------------------------ launching


def launch_command(params: TrainParams, params_path: str | Path, run_dir: str | None = None,
                   machine_rank: str = "${MACHINE_RANK}", main_process_ip: str = "${MASTER_ADDR}",
                   main_process_port: str = "${MASTER_PORT}") -> list[str]:
    """The exact command that runs this training: plain python for backend "local", else `accelerate launch` with
    configs/accelerate/<backend>.yaml. Multi-machine values default to shell variables that scripts/slurm_train.sh
    sets per node (run the joined command through a shell there)."""
    tail = ["-m", "posttrain.training", "--params", str(params_path)] + (["--run-dir", run_dir] if run_dir else [])
    launch = params.launch
    if launch.backend == "local":
        return [sys.executable] + tail
    config_file = ACCELERATE_CONFIGS / f"{launch.backend}.yaml"
    cmd = ["accelerate", "launch", "--config_file", str(config_file), "--num_machines", str(launch.num_machines),
           "--num_processes", str(launch.num_machines * launch.gpus_per_machine)]
    if launch.num_machines > 1:
        cmd += ["--machine_rank", machine_rank, "--main_process_ip", main_process_ip,
                "--main_process_port", main_process_port]
    return cmd + tail


# ------------------------------------------------------------------------------------------------ notebooks


def write_launch_params(params: TrainParams) -> Path:
    """The run's resolved params as a standalone YAML (no {run_dir} left), the file its launch command reads."""
    path = Path(params.output_dir) / "params.yaml"
    dump_params(params, path)
    return path


def run_training(params: TrainParams, resume: bool = True) -> dict:
    """Train one run to completion in this process (posttrain.trainer.run_training); returns its done marker."""
    from posttrain.trainer import run_training as run
    return run(params, resume=resume)


def train_runs(runs: list[TrainParams], force: bool = False) -> list[dict]:
    """Run the trainings that are not done yet, streaming their output; skip runs already done with the same params
    hash unless `force` (then they retrain from scratch). Runs on the local backend go, one after another, through
    a single subprocess (its memory is freed when it exits; one interpreter start and one torch/TRL import instead of
    one per run). Non-local backends are printed, not run: launch them on the cluster (scripts/slurm_train.sh)."""
    local = []
    for params in runs:
        path = write_launch_params(params)
        print(f"[{params.name}] {shlex.join(launch_command(params, path) + (['--no-resume'] if force else []))}")
        if is_done(params) and not force:
            print(f"[{params.name}] done with the same params hash: skipped")
        elif params.launch.backend != "local":
            print(f"[{params.name}] backend {params.launch.backend!r}: run the command above on GPU machines")
        else:
            local.append((params, path))
    if local:
        _run_local(local, force)
    return [{"name": p.name, "status": "done", **json.loads((Path(p.output_dir) / DONE_MARKER).read_text())}
            if is_done(p) else {"name": p.name, "status": "not run"} for p in runs]


def _run_local(runs: list[tuple[TrainParams, Path]], force: bool) -> None:
    """One `python -m posttrain.training --params A --params B ...` process; its output goes to the notebook and to
    each run's train.log (switched at the RUN_MARKER line the worker prints before each run)."""
    cmd = launch_command(*runs[0]) + [a for _, path in runs[1:] for a in ("--params", str(path))]
    cmd += ["--no-resume"] if force else []
    logs = {params.name: Path(params.output_dir) / "train.log" for params, _ in runs}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "lib"), os.environ.get("PYTHONPATH", "")])}
    print(f"[train_runs] {len(runs)} run(s) in one process: {shlex.join(cmd)}", flush=True)
    current, log_file = runs[0][0], None
    try:
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            for line in proc.stdout:
                if line.startswith(RUN_MARKER):
                    current = next(p for p, _ in runs if p.name == line[len(RUN_MARKER):].strip())
                    if log_file:
                        log_file.close()
                    log_file = logs[current.name].open("a")
                if log_file:
                    log_file.write(line)
                print(line, end="")
    finally:
        if log_file:
            log_file.close()
    if proc.returncode:
        raise RuntimeError(f"training {current.name} failed (exit {proc.returncode}); see {current.output_dir}/train.log")


def plot_loss_curves(runs: list[TrainParams], path: str | Path):
    """Training loss vs tokens seen, one line per run; saved to `path` (png) and returned."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for params in runs:
        log_rows = read_loss_log(params.output_dir)
        if log_rows:
            ax.plot([r["tokens"] for r in log_rows], [r["loss"] for r in log_rows], label=f"{params.name} ({params.arm})")
    ax.set(xlabel="training tokens", ylabel="training loss", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def data_stats_table(runs: list[TrainParams]) -> list[dict]:
    """Per run: examples seen / dropped as too long / skipped (data_stats.json), for the notebooks' tables."""
    rows = []
    for params in runs:
        path = Path(params.output_dir) / DATA_STATS
        stats = json.loads(path.read_text()) if path.exists() else {}
        rows.append({"run": params.name, **{k: stats.get(k) for k in
                     ("max_length", "examples_seen", "dropped_too_long", "skipped_missing_question", "kept", "step")}})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", required=True, action="append",
                        help="a TrainParams YAML; repeat it to train several runs one after another in this process")
    parser.add_argument("--run-dir", default=None, help="substituted for {run_dir} in the YAML")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and done marker")
    parser.add_argument("--print-launch", action="store_true", help="print the launch command and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    all_params = [load_train_params(path, args.run_dir) for path in args.params]  # every file checked before training
    if args.print_launch:
        for params, path in zip(all_params, args.params):
            print(" ".join(shlex.quote(c) if not c.startswith("${") else c
                           for c in launch_command(params, path, args.run_dir)))
        return
    for params in all_params:
        print(f"{RUN_MARKER}{params.name}", flush=True)
        summary = run_training(params, resume=not args.no_resume)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
