"""Launching training runs (pre-training or SFT): the command that runs one, checks that its accelerate config will
do what its params ask, and the loop the notebooks call. No torch import; the run itself is posttrain.trainer, a
separate program on every rank, and a run's outputs are read through posttrain.runs.

    python -m posttrain.training --params params/paper/sft_math_1.5b_0pre.yaml --run-dir runs/paper   # launch, wait
    python -m posttrain.training --params FILE [--run-dir DIR] --print-launch     # print that command only

Notebooks: `train_runs(runs)`, `plot_loss_curves(runs, path)`, `data_stats_table(runs)`. Tests:
tests/test_training.py, tests/test_scaleout.py.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from posttrain.params import REPO_ROOT, RunParams, dump_params, load_run_params, repo_relative
from posttrain.runs import (LAUNCH_PARAMS, RUN_END_MARKER, RUN_MARKER, TRAIN_LOG, is_done, launch_world_size,
                            read_data_stats, read_done, read_loss_log, resolve_schedule)

log = logging.getLogger(__name__)

ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"
# What each launch.backend must run as (the accelerate YAML's distributed_type).
BACKEND_DISTRIBUTED_TYPE = {"single_gpu": "NO", "ddp": "MULTI_GPU", "fsdp2": "FSDP", "deepspeed_zero3": "DEEPSPEED"}
# Accelerate raises in every worker when these sit next to deepspeed_config_file (they belong in the JSON).
DEEPSPEED_FILE_CONFLICTS = ("mixed_precision", "gradient_accumulation_steps", "gradient_clipping", "zero_stage",
                            "offload_optimizer_device", "offload_param_device", "offload_param_nvme_path",
                            "offload_optimizer_nvme_path", "zero3_save_16bit_model")


class LaunchConfigError(ValueError):
    """An accelerate config would not do what the run's params ask; the message names the field."""


# ------------------------------------------------------------------------------------------------ launching


def accelerate_config_path(params: RunParams) -> Path:
    return ACCELERATE_CONFIGS / f"{params.launch.backend}.yaml"


def check_accelerate_config(params: RunParams, config_path: str | Path) -> None:
    """Refuse an accelerate YAML that would silently run something else than the params ask: another backend,
    another precision than training.bf16, FSDP/DeepSpeed on a CPU job (Accelerate falls back to DDP), or a MULTI_CPU
    setup (`accelerate launch` starts one process, without a warning)."""
    cfg = yaml.safe_load(Path(config_path).read_text()) or {}
    where = f"{config_path}"
    dist = str(cfg.get("distributed_type", "NO"))
    backend = params.launch.backend
    if dist == "MULTI_CPU":
        raise LaunchConfigError(f"{where}: distributed_type: MULTI_CPU starts a single process under `accelerate "
                                "launch`, without a warning; use MULTI_GPU with use_cpu: true for DDP on CPUs")
    if cfg.get("use_cpu") and dist in ("FSDP", "DEEPSPEED"):
        raise LaunchConfigError(f"{where}: use_cpu: true with distributed_type: {dist}: Accelerate enables {dist} "
                                "only for GPU jobs and silently runs plain DDP on CPUs")
    expected = BACKEND_DISTRIBUTED_TYPE.get(backend)
    if expected is not None and dist != expected:
        raise LaunchConfigError(f"{where}: distributed_type: {dist} but launch.backend {backend!r} needs {expected}")
    if dist == "FSDP" and int((cfg.get("fsdp_config") or {}).get("fsdp_version", 1)) != 2:
        raise LaunchConfigError(f"{where}: fsdp_config.fsdp_version must be 2 for launch.backend 'fsdp2'")
    ds_config = cfg.get("deepspeed_config") or {}
    if ds_config.get("deepspeed_config_file"):
        if not (REPO_ROOT / ds_config["deepspeed_config_file"]).is_file():  # launches run from the repository root
            raise LaunchConfigError(f"{where}: deepspeed_config.deepspeed_config_file "
                                    f"{ds_config['deepspeed_config_file']} not found in {REPO_ROOT}")
        clashes = [k for k in DEEPSPEED_FILE_CONFLICTS if k in cfg or k in ds_config]
        if clashes:
            raise LaunchConfigError(f"{where}: {', '.join(clashes)} must not be set next to deepspeed_config_file "
                                    "(Accelerate raises in every worker); set them in the DeepSpeed JSON")
        return  # precision comes from the JSON's "auto" = the trainer's bf16 flag
    precision = str(cfg.get("mixed_precision", "no"))
    wanted = "bf16" if params.training.bf16 else "no"
    if precision != wanted:
        raise LaunchConfigError(f"{where}: mixed_precision: {precision} contradicts training.bf16: "
                                f"{str(params.training.bf16).lower()} in the params (it would override it); "
                                f"set mixed_precision: {wanted}")


def launch_command(params: RunParams, params_path: str | Path, run_dir: str | None = None,
                   machine_rank: str = "${MACHINE_RANK}", main_process_ip: str = "${MASTER_ADDR}",
                   main_process_port: str = "${MASTER_PORT}", accelerate_config: str | Path | None = None) -> list[str]:
    """The exact command that runs this training: this interpreter on posttrain.trainer for backend "local", else
    this interpreter's `accelerate launch` (module form, so no activated venv is needed) with
    configs/accelerate/<backend>.yaml (or `accelerate_config`), checked by check_accelerate_config. Multi-machine
    values default to shell variables that scripts/slurm_train.sh sets per node (run the joined command through a
    shell there)."""
    tail = ["-m", "posttrain.trainer", "--params", str(params_path)] + (["--run-dir", run_dir] if run_dir else [])
    launch = params.launch
    if launch.backend == "local":
        return [sys.executable] + tail
    config_file = Path(accelerate_config or accelerate_config_path(params))
    check_accelerate_config(params, config_file)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
           "--num_machines", str(launch.num_machines), "--num_processes", str(launch_world_size(params))]
    if launch.num_machines > 1:
        cmd += ["--machine_rank", machine_rank, "--main_process_ip", main_process_ip,
                "--main_process_port", main_process_port]
    return cmd + tail


def start_job(cmd: list[str], **popen_kwargs) -> subprocess.Popen:
    """Start a training command in its own process group (the launcher, its workers and their helpers), so
    stop_job can end the whole job; workers also die with their parent (posttrain.trainer sets a death signal)."""
    return subprocess.Popen(cmd, start_new_session=True, **popen_kwargs)


def stop_job(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal every process of a job started by start_job (a no-op once it has exited)."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def run_job(cmd: list[str]) -> int:
    """Run a training command to its end, from the repository root; Ctrl-C or SIGTERM here ends the whole job, not
    just its launcher."""
    proc = start_job(cmd, cwd=REPO_ROOT)
    previous = signal.signal(signal.SIGTERM, lambda *_: stop_job(proc, signal.SIGTERM))
    try:
        return proc.wait()
    finally:
        stop_job(proc)
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------------ notebooks


def write_launch_params(params: RunParams) -> Path:
    """The run's resolved params as a standalone YAML (no {run_dir} left), the file its launch command reads."""
    path = Path(params.output_dir) / LAUNCH_PARAMS
    dump_params(params, path)
    return path


def planned_schedule(params: RunParams) -> dict:
    """The run's schedule (accumulation, steps, tokens) for the world size its launch section asks for."""
    return resolve_schedule(params, launch_world_size(params))


def _shown(cmd: list[str]) -> str:
    """A command as notebooks print it: paths inside the repository relative to it (a shared report must not carry
    this machine's layout; the commands are run from the repository root)."""
    return shlex.join(repo_relative(c) for c in cmd)


def train_runs(runs: list[RunParams], force: bool = False, workers: int = 1) -> list[dict]:
    """Run the trainings that are not done yet, streaming their output; skip runs already done with the same params
    hash unless `force` (then they retrain from scratch). Runs on the local backend go through `workers`
    subprocesses at once (each runs its share one after another: one interpreter start and one torch/TRL import per
    worker, its memory freed when it exits), the CPU threads split among them; runs are shared out by planned
    tokens, longest first. Non-local backends are printed, not run: launch them on the cluster
    (scripts/slurm_train.sh)."""
    local = []
    for params in runs:
        path = write_launch_params(params)
        cmd = launch_command(params, path) + (["--no-resume"] if force else [])
        print(f"[{params.name}] {_shown(cmd)}")
        if is_done(params) and not force:
            print(f"[{params.name}] done with the same params hash: skipped")
        elif params.launch.backend != "local":
            print(f"[{params.name}] backend {params.launch.backend!r}: run the command above on GPU machines")
        else:
            local.append((params, path))
    if local:
        _run_local(local, force, workers)
    return [{"name": p.name, "status": "done", **done} if (done := read_done(p)) is not None
            else {"name": p.name, "status": "not run"} for p in runs]


def share_out(runs: list[tuple[RunParams, Path]], workers: int) -> list[list[tuple[RunParams, Path]]]:
    """Runs split into at most `workers` groups of similar planned tokens (longest first onto the lightest group);
    each group keeps the runs' given order. Fewer groups when one run outweighs the rest: with n groups that run
    alone sets the wall time on 1/n of the cores, while in fewer groups it gets more threads (the miniature's
    pre-training, one long run and a 5% one: two threads ran 1.73x one, docs/miniature.md §13)."""
    tokens = [planned_schedule(params)["total_tokens"] for params, _ in runs]
    n = max(1, min(workers, len(runs)))
    while n > 1 and sum(tokens) - max(tokens) < (n - 1) * max(tokens) / 2:
        n -= 1
    groups: list[list] = [[] for _ in range(n)]
    load = [0] * len(groups)
    for i in sorted(range(len(runs)), key=lambda i: -tokens[i]):
        g = load.index(min(load))
        groups[g].append(i)
        load[g] += tokens[i]
    return [[runs[i] for i in sorted(g)] for g in groups]


def _run_local(runs: list[tuple[RunParams, Path]], force: bool, workers: int = 1) -> None:
    """`python -m posttrain.trainer --params A --params B ...` processes, one per group of share_out. Their output
    goes to each run's train.log only (switched at the RUN_MARKER line the worker prints before each run); the
    caller sees one live progress line per run, then its summary (and the log's tail if one fails)."""
    groups = share_out(runs, workers)
    threads = max(1, (os.cpu_count() or 1) // len(groups))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if len(groups) > 1 else None
    procs, followers = [], []
    try:
        for group in groups:
            cmd = launch_command(*group[0]) + [a for _, path in group[1:] for a in ("--params", str(path))]
            cmd += ["--no-resume"] if force else []
            print(f"[train_runs] {len(group)} run(s) in one process"
                  + (f" ({threads} thread(s))" if env else "") + f": {_shown(cmd)}", flush=True)
            procs.append(start_job(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
            followers.append(_Follower({p.name: p for p, _ in group}, force, live=len(groups) == 1))
        _follow(procs, followers)
    finally:
        for proc in procs:
            stop_job(proc)  # an interrupted notebook cell must not leave the training running
        for f in followers:
            f.close()
    for proc, follower, group in zip(procs, followers, groups):
        if proc.returncode:
            failed = follower.current or group[0][0]
            log = Path(failed.output_dir) / TRAIN_LOG
            tail = log.read_text().splitlines()[-30:] if log.exists() else []
            raise RuntimeError(f"training {failed.name} failed (exit {proc.returncode}); last lines of "
                               f"{repo_relative(log)}:\n" + "\n".join(tail))


def _follow(procs: list[subprocess.Popen], followers: list["_Follower"]) -> None:
    """Feed each worker's output lines to its follower until every worker has exited (one reader thread each)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()

    def read(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            lines.put((i, line))
        proc.wait()
        lines.put((i, None))

    for i, proc in enumerate(procs):
        threading.Thread(target=read, args=(i, proc), daemon=True).start()
    running = len(procs)
    while running:
        i, line = lines.get()
        if line is None:
            running -= 1
            followers[i].ended()
        else:
            followers[i].feed(line)


class _Follower:
    """One worker's output: files each line in its run's train.log and keeps the run's progress line."""

    def __init__(self, by_name: dict[str, RunParams], force: bool, live: bool):
        self.by_name, self.force, self.live = by_name, force, live
        self.current, self.log_file, self.progress = None, None, None

    def feed(self, line: str) -> None:
        if line.startswith(RUN_MARKER):
            self.close()
            self.current = self.by_name[line[len(RUN_MARKER):].strip()]
            self.log_file = (Path(self.current.output_dir) / TRAIN_LOG).open("a")
            self.progress = _RunProgress(self.current, resumed=not self.force, live=self.live)
        if self.log_file:
            self.log_file.write(line)
        if line.startswith(RUN_END_MARKER):
            self.progress.finish(_run_summary(self.progress))
            self.progress = None
        elif self.progress:
            self.progress.maybe_update()

    def ended(self) -> None:
        if self.progress:  # the worker stopped inside a run: say so
            self.progress.finish(_run_summary(self.progress))
            self.progress = None

    def close(self) -> None:
        if self.log_file:
            self.log_file.close()
            self.log_file = None


class _RunProgress:
    """One line that rewrites itself while a run trains (step, loss, tokens/s, time), from the run's loss log: a
    display handle in a notebook (a saved notebook keeps only its last state), a carriage return elsewhere."""

    def __init__(self, params: RunParams, resumed: bool, live: bool = True):
        # live=False (several runs at once outside a notebook): no rewriting line, which the runs would garble;
        # the start and the summary are printed as plain lines.
        self.params, self.started, self.shown_at, self.live = params, time.monotonic(), 0.0, live
        rows = read_loss_log(params.output_dir) if resumed else []  # count only the tokens trained from now on
        self.tokens_before = rows[-1]["tokens"] if rows else 0
        self.max_steps = planned_schedule(params)["max_steps"]
        self.handle, self.width = _display_handle(), 0
        self.live = live or self.handle is not None
        log = repo_relative(Path(params.output_dir) / TRAIN_LOG)
        self.show(f"[{params.name}] starting (log: {log})", final=True)

    def maybe_update(self) -> None:
        if time.monotonic() - self.shown_at < 0.5:  # at most twice a second: reading the loss log is not free
            return
        rows = read_loss_log(self.params.output_dir)
        if rows:
            elapsed, last = time.monotonic() - self.started, rows[-1]
            self.show(f"[{self.params.name}] step {last['step']}/{self.max_steps} · loss {last['loss']:.4g} · "
                      f"{(last['tokens'] - self.tokens_before) / elapsed:,.0f} tokens/s · {_clock(elapsed)}")

    def show(self, text: str, final: bool = False) -> None:
        """Redraw the line (live), or, when not live, print `final` lines only (the start and the summary)."""
        self.shown_at = time.monotonic()
        if not self.live:  # only the lines that stay: the start and the summary
            if final:
                print(text, flush=True)
            return
        if self.handle is not None:
            from IPython.display import Pretty
            self.handle.update(Pretty(text))
        else:
            sys.stdout.write("\r" + text.ljust(self.width))
            sys.stdout.flush()
            self.width = len(text)

    def finish(self, summary: str) -> None:
        self.show(summary, final=True)
        if self.handle is None and self.live:
            sys.stdout.write("\n")


def _display_handle():
    """A display handle when running in a Jupyter kernel, else None."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return None
    from IPython.display import Pretty, display
    return display(Pretty(""), display_id=True)


def _run_summary(progress: _RunProgress) -> str:
    params, wall = progress.params, time.monotonic() - progress.started
    done, rows = read_done(params), read_loss_log(params.output_dir)
    log = repo_relative(Path(params.output_dir) / TRAIN_LOG)
    if done is None:
        return f"[{params.name}] stopped after {_clock(wall)} without finishing; log: {log}"
    tokens = done["tokens"] - progress.tokens_before
    final = f", final loss {rows[-1]['loss']:.4g}" if rows else ""
    return (f"[{params.name}] {done['global_step']} steps, {tokens:,} tokens in {_clock(wall)} "
            f"({tokens / wall:,.0f} tokens/s incl. start-up){final}; log: {log}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def plot_loss_curves(runs: list[RunParams], path: str | Path):
    """Training loss vs tokens seen, one line per run; saved to `path` (PNG, no timestamp) and returned (a notebook
    shows it by returning it)."""
    import matplotlib.ticker

    from posttrain.figstyle import figure_style, new_figure, save_figure

    fig, axes = new_figure(1, 1, panel=(7, 4))
    ax = axes[0][0]
    with figure_style():
        for params in runs:
            log_rows = read_loss_log(params.output_dir)
            if log_rows:
                ax.plot([r["tokens"] for r in log_rows], [r["loss"] for r in log_rows],
                        label=f"{params.name} ({params.arm})")
        ax.set(xlabel="training tokens", ylabel="training loss", yscale="log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):  # 5.5, not 5.5 × 10^0
            axis(matplotlib.ticker.FormatStrFormatter("%.3g"))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = Path(path)
    save_figure(fig, path.parent, path.stem, formats=(path.suffix or ".png",))
    return fig


def results_table(results: list[dict]):
    """train_runs' results as a reader scans them: one short row per run (the done marker's other fields, e.g. the
    schedule, are in each run's done.json)."""
    import pandas as pd

    rows = [{"run": r["name"], "status": r["status"], "steps": r.get("global_step"), "tokens": r.get("tokens"),
             "train loss": r.get("train_loss"),
             "final checkpoint": Path(r["final_checkpoint"]).name if r.get("final_checkpoint") else None}
            for r in results]
    return pd.DataFrame(rows)


def data_stats_table(runs: list[RunParams]) -> list[dict]:
    """Per run: examples seen / dropped as too long / skipped (data_stats.json), for the notebooks' tables."""
    rows = []
    for params in runs:
        stats = read_data_stats(params.output_dir)
        rows.append({"run": params.name, **{k: stats.get(k) for k in
                     ("max_length", "examples_seen", "dropped_too_long", "skipped_missing_question", "kept", "step")}})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", required=True, help="a RunParams YAML")
    parser.add_argument("--run-dir", default=None, help="substituted for {run_dir} in the YAML")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and done marker")
    parser.add_argument("--print-launch", action="store_true", help="print the launch command and exit")
    args = parser.parse_args(argv)
    params = load_run_params(args.params, args.run_dir)
    if "{run_dir}" in params.output_dir:  # the paper's files put every output under the study's run directory
        parser.error(f"{args.params}: output_dir {params.output_dir} needs --run-dir (the study's run directory, "
                     "e.g. runs/paper; slurm_train.sh: its second argument)")
    # Absolute paths: the job runs from the repository root (the accelerate configs name files relative to it).
    run_dir = str(Path(args.run_dir).resolve()) if args.run_dir else None
    cmd = launch_command(params, Path(args.params).resolve(), run_dir) + (["--no-resume"] if args.no_resume else [])
    if args.print_launch:  # shell variables (${MACHINE_RANK}) stay unquoted for the per-node shell to expand
        print(" ".join(shlex.quote(c) if not c.startswith("${") else c for c in cmd))
        return
    sys.exit(run_job(cmd))


if __name__ == "__main__":
    main()
