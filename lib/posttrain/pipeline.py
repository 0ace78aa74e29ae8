"""Run the study chain headlessly: the miniature's set-up, then the five notebooks in order, with one params file.

    python -m posttrain.pipeline params/mini.yaml [--run-dir DIR] [--force] [--only 03_evaluate 04_report]
    python -m posttrain.pipeline params/mini.yaml --submit slurm [--cluster FILE] [--wait] [--dry-run]   # a cluster
    python -m posttrain.pipeline params/mini.yaml --status                  # each stage's jobs: done / running / ...

Stages: `mini_setup` (studies with a `setup` section: posttrain.mini.build writes the generated data, tokenizer and
tiny config every later stage reads) and the notebooks, run through papermill. The set-up is a plain function, not a
notebook: it has nothing to show, and as a stage of its own no notebook builds it as a side effect. Every notebook
gets `params_path` and `run_dir`; executed copies land in `<run_dir>/notebooks/`, then the chain exports them to HTML
with an index page (posttrain.export). A stage whose outputs exist for the same params hash is skipped (stages also
skip their own finished work inside, at a finer grain); `--force` reruns the notebooks (the set-up rebuilds only
when its params or code change). A failure names the notebook and the cell, keeps the partly executed notebook and
everything finished before it, and exits non-zero. Bad input (a params typo, invalid YAML, a missing file) is one
message and exit code 2 (`--debug` shows the traceback). Stopping the chain (Ctrl-C, SIGTERM) stops every process it
started (kernels, training and generation workers); a rerun resumes where it stopped.
`--submit slurm` sends the same stages to SLURM as a job graph instead (posttrain.cluster).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from .params import (REPO_ROOT, ParamsError, StudyParams, dump_params, load_study, params_hash, repo_relative,
                     resolve_repo_path)
from .stages import (NOTEBOOK_DIR, NOTEBOOK_STAGES, SETUP_STAGE, STAGES, Stopped, raise_stopped,  # noqa: F401
                     stage_is_done, stamp_path, stop_descendants, write_stamp)

def run_stage(stage: str, params_path: Path, run_dir: Path, force: bool, kernel: str) -> float:
    """Execute one notebook with papermill; return its wall time. Raises StageFailed with notebook + cell."""
    import papermill as pm

    out = run_dir / "notebooks" / f"{stage}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        pm.execute_notebook(
            str(NOTEBOOK_DIR / f"{stage}.ipynb"), str(out),
            # repo-relative (the kernel runs in the repo root): the injected cell is part of the shared report
            parameters={"params_path": str(repo_relative(params_path)), "run_dir": str(repo_relative(run_dir)),
                        "force": force},
            kernel_name=kernel, cwd=str(REPO_ROOT), progress_bar=False, log_output=False,
            kernel_manager_class=_quiet_kernel_manager())
    except pm.PapermillExecutionError as e:
        raise StageFailed(f"stage {stage} failed in cell {e.cell_index} (execution count {e.exec_count}): "
                          f"{e.ename}: {e.evalue}\n  partly executed notebook kept at {out}") from None
    return time.time() - start


class StageFailed(RuntimeError):
    pass


# ipykernel logs this once per kernel start; papermill's kernels listen on localhost only, so it says nothing here.
KERNEL_NOISE = ("Kernel is running over TCP without encryption",)


def _forward_filtered(read_fd: int, dest, noise: tuple[str, ...]) -> None:
    """Copy lines from read_fd to `dest` until EOF, leaving out those containing any of `noise`."""
    with os.fdopen(read_fd, "r", errors="replace") as source:
        for line in source:
            if not any(n in line for n in noise):
                dest.write(line)
                dest.flush()


def _quiet_kernel_manager():
    """A kernel manager whose kernels write stderr through a filter dropping KERNEL_NOISE (everything else,
    tracebacks included, passes through to this process's stderr)."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            read_fd, write_fd = os.pipe()
            threading.Thread(target=_forward_filtered, args=(read_fd, sys.stderr, KERNEL_NOISE), daemon=True).start()
            try:
                return await super()._async_launch_kernel(kernel_cmd, **{**kw, "stderr": write_fd})
            finally:
                os.close(write_fd)  # the kernel holds its copy; EOF reaches the thread when the kernel exits

    return QuietKernelManager


def run_setup_stage(study: StudyParams) -> float | None:
    """Build the miniature's set-up unless a build of the same params is there; its wall time, or None if skipped."""
    from .mini.build import build_mini_setup, setup_is_current

    if setup_is_current(study.setup, study.run_dir):
        print(f"[pipeline] {SETUP_STAGE}: done for these params, skipped", flush=True)
        return None
    print(f"[pipeline] {SETUP_STAGE}: building {repo_relative(Path(study.run_dir) / 'setup')} ...", flush=True)
    start = time.time()
    build_mini_setup(study.setup, study.run_dir, force=True)  # force: currency was just checked above
    seconds = time.time() - start
    print(f"[pipeline] {SETUP_STAGE}: {seconds:.0f} s", flush=True)
    return seconds


# tqdm's default for `disable` (a bar given disable= explicitly ignores it), and the Hugging Face libraries' switches.
PROGRESS_OFF = {"TQDM_DISABLE": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@contextlib.contextmanager
def headless_progress():
    """Progress bars off for the kernels the chain starts (they and their subprocesses inherit the environment),
    except where the caller set these variables. Nobody watches a headless notebook: a bar would be saved as its
    first frame (a widget reading 0%) or as hundreds of redraws; the stages print a summary line instead."""
    unset = [k for k in PROGRESS_OFF if k not in os.environ]
    os.environ.update({k: PROGRESS_OFF[k] for k in unset})
    try:
        yield
    finally:
        for k in unset:
            os.environ.pop(k, None)


def run_pipeline(params_path: str | Path, run_dir: str | None = None, force: bool = False,
                 only: list[str] | None = None, kernel: str = "python3", export: bool = True) -> dict:
    with headless_progress():
        return _run_stages(params_path, run_dir, force, only, kernel, export)


def _run_stages(params_path: str | Path, run_dir: str | None, force: bool, only: list[str] | None, kernel: str,
                export: bool) -> dict:
    params_path = resolve_repo_path(params_path)
    study = load_study(params_path, run_dir)  # validates everything before the first stage starts
    run_path = Path(study.run_dir)
    run_path.mkdir(parents=True, exist_ok=True)
    dump_params(study, run_path / "params.resolved.yaml")
    phash = params_hash(study)
    for name in only or []:
        if name not in STAGES:
            raise SystemExit(f"--only: unknown stage {name!r}; stages are {STAGES}")

    timings_path = run_path / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    if study.setup is not None and (not only or SETUP_STAGE in only):
        seconds = run_setup_stage(study)
        if seconds is not None:
            timings[SETUP_STAGE] = round(seconds, 1)
            timings_path.write_text(json.dumps(timings, indent=2))
    for stage in NOTEBOOK_STAGES:
        if only and stage not in only:
            continue
        if not force and stage_is_done(run_path, stage, phash):
            print(f"[pipeline] {stage}: done for these params, skipped (--force reruns it)", flush=True)
            continue
        print(f"[pipeline] {stage}: running ...", flush=True)
        stamp_path(run_path, stage).unlink(missing_ok=True)
        seconds = run_stage(stage, params_path, run_path, force, kernel)
        timings[stage] = round(seconds, 1)
        write_stamp(run_path, stage, phash, seconds)
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"[pipeline] {stage}: {seconds:.0f} s", flush=True)

    if export:
        from .export import export_html
        start = time.time()
        pages = export_html(run_path)
        timings["export_html"] = round(time.time() - start, 1)
        timings_path.write_text(json.dumps(timings, indent=2))
        print(f"[pipeline] report: {repo_relative(pages['index'])}")
    print("[pipeline] wall time per stage (s): " + ", ".join(f"{k} {v}" for k, v in timings.items())
          + f" | total {sum(timings.values()):.0f}")
    print_claims(run_path)
    return timings


def print_claims(run_dir: Path) -> None:
    """The claims and their verdicts (report/claims.csv, written by notebook 04) as the last thing a run prints."""
    path = run_dir / "report" / "claims.csv"
    if not path.is_file():
        return
    import csv
    rows = [{**r, "statement": r["statement"].split(" (")[0]} for r in csv.DictReader(path.open())]  # no asides
    width = max(len(r["statement"]) for r in rows) + 4 if rows else 0
    print(f"[pipeline] the paper's claims in this run ({repo_relative(path.with_name('claims.md'))}):")
    for r in rows:
        print(f"  {(r['claim'] + '. ' + r['statement']):<{width}} {r['verdict']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", help="a study params YAML, e.g. params/mini.yaml")
    ap.add_argument("--run-dir", help="where outputs go (default: the study's run_dir, runs/<name>)")
    ap.add_argument("--force", action="store_true", help="rerun stages even if their outputs exist")
    ap.add_argument("--only", nargs="+", metavar="STAGE", help=f"run only these stages ({', '.join(STAGES)})")
    ap.add_argument("--kernel", default="python3",
                    help="Jupyter kernel (default python3: the interpreter running this command)")
    ap.add_argument("--no-export", action="store_true", help="skip the HTML export")
    ap.add_argument("--submit", choices=["slurm"], help="submit the study to SLURM as a job graph (posttrain.cluster)")
    ap.add_argument("--cluster", default="configs/slurm/generic_gpu.yaml",
                    help="with --submit: the cluster file (configs/slurm/*.yaml)")
    ap.add_argument("--wait", action="store_true", help="with --submit: block until the graph ends")
    ap.add_argument("--dry-run", action="store_true", help="with --submit: write the sbatch scripts, submit nothing")
    ap.add_argument("--status", action="store_true", help="list each stage and job as done/running/pending/failed")
    ap.add_argument("--debug", action="store_true", help="show tracebacks for bad input")
    args = ap.parse_args(argv)
    if (args.wait or args.dry_run) and not args.submit:
        ap.error("--wait and --dry-run go with --submit slurm")
    for name in args.only or []:
        if name not in STAGES:
            ap.error(f"--only: unknown stage {name!r}; stages are {STAGES}")
    previous = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        if args.submit or args.status:
            from . import cluster  # deferred: the local chain does not need it
            from .slurm import SlurmError
            try:
                if args.status:
                    return cluster.print_status(args.params, args.run_dir)
                return cluster.submit_study(args.params, args.run_dir, args.cluster, wait=args.wait,
                                            dry_run=args.dry_run, force=args.force)
            except SlurmError as e:  # no SLURM here, or it refused a job: its own message says which
                print(f"[pipeline] {e}", file=sys.stderr)
                return 1
        run_pipeline(args.params, args.run_dir, args.force, args.only, args.kernel, export=not args.no_export)
    except (ParamsError, FileNotFoundError) as e:  # bad input: one message, no traceback
        if args.debug:
            traceback.print_exc()
        print(f"[pipeline] {e}", file=sys.stderr)
        return 2
    except StageFailed as e:
        print(f"[pipeline] {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        stopped = stop_descendants()
        # nbclient leaves a task holding the interrupted cell's error; asyncio would print it at exit
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        why = "SIGTERM" if isinstance(e, Stopped) else "interrupted"
        print(f"[pipeline] {why}: stopped" + (f" ({len(stopped)} process(es) it had started)" if stopped else "")
              + "; no process it started is left running; rerun the same command to resume", file=sys.stderr)
        return 130 if not isinstance(e, Stopped) else 143
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
