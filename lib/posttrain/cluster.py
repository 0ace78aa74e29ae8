"""The study as a SLURM job graph: the stages of the local chain (posttrain.pipeline) as sbatch jobs chained by
`--dependency=afterok`, so a cluster run ends with the same executed notebooks and index.html as a local one.

    python -m posttrain.pipeline PARAMS --submit slurm [--cluster configs/slurm/X.yaml] [--wait] [--dry-run]
    python -m posttrain.pipeline PARAMS --status

Jobs (keys), each waiting for those before it that it needs:
    setup                 the miniature's set-up and data preparation (posttrain.prepare, where runs have prepared_dir)
    00_explore_data       notebook 00                                  (after setup)
    pretrain/<runs>       training: one job per run on a GPU backend (its nodes × GPUs from its launch section), one
                          per share_out group of local-backend runs (as the local chain groups them)
    01_pretrain           notebook 01: the runs' tables and curves     (after every pre-training job)
    sft/<runs>            training                                    (after setup and the pre-training it starts from)
    02_sft                notebook 02                                  (after every SFT job)
    eval                  a job array: one task per chunk of checkpoints (all benchmarks of each; one engine per
                          task), `python -m posttrain.cluster eval-chunk` (after every training job)
    report                notebooks 03 (aggregation) and 04, HTML export (after everything)
A job is skipped when its outputs are done (runs' done markers, notebook stamps, evaluation chunk markers) and
nothing it waits for is resubmitted; a job still queued or running from an earlier submission is reused. Job records,
scripts, logs and exit records live in `<run_dir>/slurm/`.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from posttrain.params import (ParamsError, RunParams, StudyParams, load_study, params_hash, repo_relative,
                              resolve_repo_path)
from posttrain.runs import (LAUNCH_PARAMS, STOP_REQUEST, evaluation_checkpoints, is_done, planned_checkpoint_steps,
                           read_done, read_loss_log)
from posttrain.slurm import (ACTIVE, ClusterParams, job_script, load_cluster, multinode_command, queue, read_exits,
                             sbatch, sbatch_options)
from posttrain.stages import NOTEBOOK_STAGES, SETUP_STAGE, raise_stopped, stage_is_done, stamp_path, stop_descendants

SLURM_DIR = "slurm"
RECORDS = "jobs.json"
CHUNKS = "eval_chunks.json"


@dataclass
class Job:
    key: str
    stage: str  # the cluster file's resource stage
    command: str
    after: list[str]
    done: bool
    nodes: int = 1
    gpus: int = 0
    cpus: int | None = None
    env: dict = field(default_factory=dict)
    stop_files: list[Path] = field(default_factory=list)
    array: list[int] | None = None  # evaluation: the chunks still to run
    runs: list[RunParams] = field(default_factory=list)
    detail: str = ""  # for --status


def slurm_dir(study: StudyParams) -> Path:
    return Path(study.run_dir) / SLURM_DIR


def file_key(key: str) -> str:
    return key.replace("/", ".")


# ------------------------------------------------------------------------------------------------ the graph


def _pipeline_cmd(cluster: ClusterParams, params_path: Path, study: StudyParams, *stages: str,
                  export: bool = False) -> str:
    return f"{cluster.python} " + shlex.join(["-m", "posttrain.pipeline", str(params_path), "--run-dir", study.run_dir,
                                              "--only", *stages] + ([] if export else ["--no-export"]))


def _prepare_needed(study: StudyParams) -> list[RunParams]:
    """Runs whose data posttrain.prepare writes before training (data.prepared_dir), where that module exists."""
    if importlib.util.find_spec("posttrain.prepare") is None:
        return []
    return [r for r in study.pretrain + study.sft if getattr(r.data, "prepared_dir", None)]


def _prepared(runs: list[RunParams]) -> bool:
    if not runs:
        return True
    import huggingface_hub.constants as hub

    from posttrain.prepare import is_prepared  # torch and datasets: only for studies that prepare data
    # Offline (HF_HUB_OFFLINE, read at call time): a preparation here left its tokenizer in the cache; with none
    # there, nothing was prepared, and the hub's retries would only delay the answer.
    saved, hub.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE, True
    try:
        return all(is_prepared(r) for r in runs)
    except (OSError, ValueError):  # no cached tokenizer: the setup job prepares (or finds it done)
        return False
    finally:
        hub.HF_HUB_OFFLINE = saved


def _training_jobs(cluster: ClusterParams, stage: str, runs: list[RunParams], after: list[str], workers: int,
                   write: bool) -> list[Job]:
    """One job per run on a GPU backend; local-backend runs grouped as the local chain groups them (share_out),
    each group's CPUs and threads as it would get them there."""
    from posttrain.training import launch_command, share_out, write_launch_params

    jobs, local = [], []
    for run in runs:
        path = write_launch_params(run) if write else Path(run.output_dir) / LAUNCH_PARAMS
        if run.launch.backend == "local":
            local.append((run, path))
            continue
        cmd = launch_command(run, path)
        shell = " ".join([cluster.python] + [c if c.startswith("${") else shlex.quote(c) for c in cmd[1:]])
        if run.launch.num_machines > 1:
            shell = multinode_command(cluster, shell)
        jobs.append(Job(f"{stage}/{run.name}", "train", shell, after, is_done(run), nodes=run.launch.num_machines,
                        gpus=run.launch.gpus_per_machine, stop_files=[Path(run.output_dir) / STOP_REQUEST],
                        runs=[run]))
    # The study's train_workers groups, a node's CPUs shared among them as the local chain shares the machine's.
    groups = share_out(local, workers) if local else []
    threads = max(1, cluster.cpus_per_node // max(1, len(groups)))
    for group in groups:
        names = [r.name for r, _ in group]
        command = shlex.join(["-m", "posttrain.trainer"] + [a for _, p in group for a in ("--params", str(p))])
        jobs.append(Job(f"{stage}/{'+'.join(names)}", "train", f"{cluster.python} {command}", after,
                        all(is_done(r) for r, _ in group), cpus=threads,
                        env={"OMP_NUM_THREADS": str(threads)} if len(groups) > 1 else {},
                        stop_files=[Path(r.output_dir) / STOP_REQUEST for r, _ in group], runs=[r for r, _ in group]))
    return jobs


def _run_steps(study: StudyParams, path: str) -> list[str]:
    """The checkpoint names evaluation will find under `path` once training has run (plan_evaluations lists what
    is there): a run's planned steps, or what a model dir holds now, or 'final' for a hub id / plain model."""
    for run in study.pretrain + study.sft:
        if resolve_repo_path(run.output_dir) == resolve_repo_path(path):
            return [f"checkpoint-{s}" for s in planned_checkpoint_steps(run)]
    return [d.name for _, d in evaluation_checkpoints(path)] or ["final"]


def planned_eval_keys(study: StudyParams) -> list[tuple[str, str]]:
    """(model, checkpoint) of every evaluation job plan_evaluations will list after training, in its order."""
    e, keys = study.evaluate, []

    def add(name: str, path: str, which: str) -> None:
        names = _run_steps(study, path)
        keys.extend((name, c) for c in (names if which == "all" else names[-1:]))

    if e.models == "auto":
        if isinstance(e.base_model, dict):
            for size, path in e.base_model.items():
                add(f"base_{size}", path, "final")
        elif e.base_model:
            add("base", e.base_model, "final")
        for run in study.sft:
            add(run.name, run.output_dir, e.checkpoints)
    else:
        for m in e.models:
            add(m.name, m.path, m.checkpoints)
    return keys


def eval_chunks(study: StudyParams, per_chunk: int) -> list[dict]:
    keys = planned_eval_keys(study)
    chunks = [keys[i:i + per_chunk] for i in range(0, len(keys), per_chunk)]
    ehash = params_hash(study.evaluate)
    return [{"keys": c, "marker": f"chunk-{params_hash({'evaluate': ehash, 'keys': c})}.done"} for c in chunks]


def chunk_done(study: StudyParams, chunk: dict) -> bool:
    return (slurm_dir(study) / "eval" / chunk["marker"]).is_file()


def build_graph(study: StudyParams, params_path: Path, cluster: ClusterParams, write: bool = False) -> list[Job]:
    """The jobs in submission order (each after the jobs it waits for). write: also write each run's launch params
    (the file its training job reads)."""
    phash = params_hash(study)
    nb = lambda stage, after: Job(stage, "notebook", _pipeline_cmd(cluster, params_path, study, stage),  # noqa: E731
                                  after, stage_is_done(Path(study.run_dir), stage, phash))
    jobs: list[Job] = []
    prepare = _prepare_needed(study)
    if study.setup is not None or prepare:
        from posttrain.mini.build import setup_is_current
        parts = ([_pipeline_cmd(cluster, params_path, study, SETUP_STAGE)] if study.setup is not None else []) + (
            [f"{cluster.python} " + shlex.join(["-m", "posttrain.prepare", str(params_path), "--run-dir",
                                                 study.run_dir])] if prepare else [])
        jobs.append(Job("setup", "setup", " && ".join(parts), [],
                        (study.setup is None or setup_is_current(study.setup, study.run_dir)) and _prepared(prepare)))
    setup = ["setup"] if jobs else []
    jobs.append(nb("00_explore_data", setup))
    pretrain = _training_jobs(cluster, "pretrain", study.pretrain, setup, study.train_workers, write)
    jobs += pretrain + [nb("01_pretrain", setup + [j.key for j in pretrain])]
    sft = _training_jobs(cluster, "sft", study.sft, setup, study.train_workers, write)
    for job in sft:  # an SFT run waits for the pre-training its model.checkpoint points into
        starts = {resolve_repo_path(r.model.checkpoint) for r in job.runs if r.model.checkpoint}
        job.after = setup + [p.key for p in pretrain
                             if any(resolve_repo_path(r.output_dir) in (s, *s.parents) for r in p.runs for s in starts)]
    jobs += sft + [nb("02_sft", setup + [j.key for j in sft])]
    chunks = eval_chunks(study, cluster.eval_checkpoints_per_chunk)
    keys = [k for c in chunks for k in c["keys"]]
    todo = [i for i, c in enumerate(chunks) if not chunk_done(study, c)]
    e = study.evaluate
    chunk_cmd = shlex.join(["-m", "posttrain.cluster", "eval-chunk", str(params_path), "--run-dir", study.run_dir])
    jobs.append(Job("eval", "eval", f"{cluster.python} {chunk_cmd} --chunk \"$SLURM_ARRAY_TASK_ID\"",
                    setup + [j.key for j in pretrain + sft], not todo, array=todo or list(range(len(chunks))) or None,
                    gpus=e.tensor_parallel_size * e.data_parallel_size if cluster.gpus_per_node else 0,
                    detail=f"{len(chunks) - len(todo)} of {len(chunks)} chunks done ({len(keys)} checkpoints)"))
    report = Job("report", "report", _pipeline_cmd(cluster, params_path, study, "03_evaluate", "04_report",
                                                   export=True),
                 ["eval", "00_explore_data", "01_pretrain", "02_sft"],
                 all(stage_is_done(Path(study.run_dir), s, phash) for s in ("03_evaluate", "04_report"))
                 and (Path(study.run_dir) / "index.html").is_file())
    return jobs + [report]


# ------------------------------------------------------------------------------------------------ submitting


def _records(study: StudyParams) -> dict:
    path = slurm_dir(study) / RECORDS
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_script(study: StudyParams, cluster: ClusterParams, job: Job) -> tuple[Path, Path]:
    """The job's sbatch script and its log path pattern."""
    out = slurm_dir(study)
    log = out / "logs" / f"{file_key(job.key)}-{'%A_%a' if job.array is not None else '%j'}.out"
    opts = sbatch_options(cluster, job.stage, name=f"pt-{study.name}-{job.key}"[:64], log=log, nodes=job.nodes,
                          gpus=job.gpus, cpus=job.cpus, array=job.array)
    script = out / "scripts" / f"{file_key(job.key)}.sh"
    for d in (script.parent, log.parent):
        d.mkdir(parents=True, exist_ok=True)
    script.write_text(job_script(cluster, job.key, opts, job.command, out / "exit", job.stop_files, job.env))
    return script, log


def submit_study(params_path: str | Path, run_dir: str | None, cluster_path: str | Path, wait: bool = False,
                 dry_run: bool = False, force: bool = False) -> int:
    """Submit what is not done (or, with force, everything) and print the graph; with wait, block until it ends.
    Returns the exit code for the command line."""
    params_path = resolve_repo_path(params_path)
    study, cluster = load_study(params_path, run_dir), load_cluster(cluster_path)
    if force:
        raise ParamsError("--force with --submit: delete the outputs to redo (done markers, notebook stamps, "
                          f"{SLURM_DIR}/eval/*.done); a resubmission redoes only what is missing")
    Path(study.run_dir).mkdir(parents=True, exist_ok=True)
    jobs = build_graph(study, params_path, cluster, write=True)
    records = _records(study)
    live = queue([r["job_id"] for r in records.values()]) if records and not dry_run else {}
    ids: dict[str, str] = {}  # key -> job id this graph waits on
    print(f"[cluster] {study.name}: {len(jobs)} jobs, cluster file {repo_relative(resolve_repo_path(cluster_path))}"
          + (" (dry run: scripts only)" if dry_run else ""))
    for job in jobs:
        old = records.get(job.key)
        waits = [k for k in job.after if k in ids]
        # Done work is kept even when something it waits for runs again (as the local chain keeps it: training
        # and records carry their params hash); notebooks rerun then, to show what changed.
        if job.done and not (waits and job.stage in ("notebook", "report")):
            print(f"  {job.key}: done, skipped")
            continue
        states = [s for j, (s, _) in live.items() if old and j.split("_")[0] == old["job_id"]]
        if old and any(s in ACTIVE for s in states):
            ids[job.key] = old["job_id"]
            print(f"  {job.key}: job {old['job_id']} still {states[0].lower()}, kept; log {old['log']}")
            continue
        script, log = _write_script(study, cluster, job)
        after = [ids[k] for k in waits]
        if dry_run:
            ids[job.key] = f"<{job.key}>"
            print(f"  {job.key}: would submit {repo_relative(script)} after {', '.join(waits) or 'nothing'}")
            continue
        if job.stage in ("notebook", "report"):  # a rerun notebook must not be skipped by its old stamp
            for stage in [s for s in NOTEBOOK_STAGES if s in job.command.split()]:
                stamp_path(Path(study.run_dir), stage).unlink(missing_ok=True)
        ids[job.key] = sbatch(script, after)
        shown = str(repo_relative(log)).replace("%j", ids[job.key]).replace("%A", ids[job.key])
        records[job.key] = {"job_id": ids[job.key], "after": after, "log": shown, "script": str(script),
                            "array": job.array, "submitted": time.time()}
        print(f"  {job.key}: job {ids[job.key]}" + (f" array {job.array}" if job.array is not None else "")
              + f" after {', '.join(after) or 'nothing'}; log {shown}", flush=True)
    if dry_run:
        return 0
    (slurm_dir(study) / CHUNKS).write_text(json.dumps(eval_chunks(study, cluster.eval_checkpoints_per_chunk)))
    (slurm_dir(study) / "cluster.yaml").write_text(resolve_repo_path(cluster_path).read_text())
    (slurm_dir(study) / RECORDS).write_text(json.dumps(records, indent=1))
    if not ids:
        print(f"[cluster] nothing to submit: every stage is done; report {repo_relative(Path(study.run_dir))}/index.html")
    return wait_for(study, lambda: build_graph(study, params_path, cluster)) if wait else 0


# ------------------------------------------------------------------------------------------------ status


def _state(job: Job, rec: dict | None, live: dict, exits: dict) -> tuple[str, str]:
    if job.done:
        return "done", ""
    if rec is None:
        return "not submitted", ""
    mine = {j: s for j, s in live.items() if j.split("_")[0] == rec["job_id"]}
    active = [(s, r) for s, r in mine.values() if s in ACTIVE]
    if active:
        reason = active[0][1] if active[0][1] != "None" else ""
        return ("running" if any(s == "RUNNING" for s, _ in active) else "pending"), reason
    ran = {j: e for j, e in exits.items() if j.split("_")[0] == rec["job_id"]}
    bad = [j for j, e in ran.items() if e["exit"]]
    if bad:
        return "failed", f"exit {ran[bad[0]]['exit']}" + (f" (task {bad[0]})" if "_" in bad[0] else "")
    if ran:  # e.g. its outputs were deleted, or the set-up's code changed since
        return "incomplete", "exited 0, but its outputs are missing or out of date now: resubmit to redo it"
    states = ", ".join(sorted({s.lower() for s, _ in mine.values()})) or "gone from the queue"
    return "cancelled", f"never ran ({states}): a job it waits for failed, or it was cancelled"


def _step(run: RunParams) -> int:
    """The run's step: its done marker's, else the last logged one."""
    done = read_done(run)
    return done["global_step"] if done else (read_loss_log(run.output_dir) or [{"step": 0}])[-1]["step"]


def job_states(study: StudyParams, jobs: list[Job]) -> list[dict]:
    """Per job: state (done / running / pending / failed / not submitted), job id, log, detail (for training jobs
    each run's latest checkpoint against its planned final step)."""
    records = _records(study)
    live = queue([r["job_id"] for r in records.values()])
    exits = read_exits(slurm_dir(study) / "exit")
    rows = []
    for job in jobs:
        rec = records.get(job.key)
        state, detail = _state(job, rec, live, exits)
        log = rec["log"] if rec else ""
        if "(task " in detail:
            log = log.replace(f"{rec['job_id']}_%a", detail.split("(task ")[1].rstrip(")"))
        steps = [f"{r.name} step {_step(r)} of {planned_checkpoint_steps(r)[-1]}" for r in job.runs]
        rows.append({"job": job.key, "state": state, "id": rec["job_id"] if rec else "", "log": log,
                     "detail": "; ".join(filter(None, [detail, job.detail, ", ".join(steps)]))})
    return rows


def status_rows(params_path: str | Path, run_dir: str | None = None) -> list[dict]:
    """Each job of the study's graph: job, state (done, running, pending, failed, incomplete, cancelled, not
    submitted), id, log, detail; a notebook cell shows `pd.DataFrame(cluster.status_rows(params_path, run_dir))`."""
    study = load_study(resolve_repo_path(params_path), run_dir)
    return job_states(study, build_graph(study, resolve_repo_path(params_path), _cluster_of(study)))


def print_status(params_path: str | Path, run_dir: str | None) -> int:
    """--status: the table of status_rows; exit 0 when every job is done."""
    study = load_study(resolve_repo_path(params_path), run_dir)
    if not _records(study):
        print(f"[cluster] {study.name}: nothing submitted from {repo_relative(Path(study.run_dir))} "
              "(python -m posttrain.pipeline PARAMS --submit slurm)")
    rows = status_rows(params_path, run_dir)
    width = max(len(r["job"]) for r in rows)
    for r in rows:
        log = r["log"] if r["log"] and Path(r["log"].replace("%a", "0")).exists() else ""
        print(f"  {r['job']:<{width}}  {r['state']:<13} {r['id']:>8}  {log}  {r['detail']}".rstrip())
    return 0 if all(r["state"] == "done" for r in rows) else 1


def _cluster_of(study: StudyParams) -> ClusterParams:
    """The cluster file of the last submission (its chunking decides the evaluation jobs)."""
    used = slurm_dir(study) / "cluster.yaml"
    return load_cluster(used) if used.is_file() else ClusterParams(name="unknown")


def wait_for(study: StudyParams, graph, poll_s: float = 5.0) -> int:
    """Block until no job of the graph is queued or running; 0 when all are done, else 1 naming each failed job
    and its log. `graph()` builds the graph again at the end: what is done is read from the outputs then."""
    records = _records(study)
    ids = [r["job_id"] for r in records.values()]
    shown: dict[str, str] = {}
    while True:
        live = queue(ids)
        for key, rec in records.items():
            states = sorted({s for j, (s, _) in live.items() if j.split("_")[0] == rec["job_id"]})
            text = ",".join(states).lower()
            if text and shown.get(key) != text:  # jobs SLURM no longer lists are judged at the end
                shown[key] = text
                print(f"[cluster] {time.strftime('%H:%M:%S')} {key}: {text}", flush=True)
        if not any(s in ACTIVE for s, _ in live.values()):
            break
        time.sleep(poll_s)
    rows = job_states(study, graph())
    failed = [r for r in rows if r["state"] in ("failed", "incomplete")]
    for r in failed:
        print(f"[cluster] FAILED {r['job']} (job {r['id']}): {r['detail']}; log {r['log']}", file=sys.stderr)
    skipped = [r["job"] for r in rows if r["state"] not in ("done", "failed", "incomplete")]
    if skipped:
        print(f"[cluster] not run because of it: {', '.join(skipped)}", file=sys.stderr)
    if not failed and not skipped:
        print(f"[cluster] all {len(rows)} jobs done; report {repo_relative(Path(study.run_dir))}/index.html")
    return 1 if failed or skipped else 0


# ------------------------------------------------------------------------------------------------ job entry points


def run_eval_chunk(params_path: str | Path, run_dir: str | None, index: int) -> int:
    """One evaluation array task: generate (one engine session) and grade every benchmark of the chunk's
    checkpoints, check each is complete, then write the chunk's done marker. Records resume as in the local chain."""
    from posttrain import evaluation
    from posttrain.records import records_dir

    study = load_study(resolve_repo_path(params_path), run_dir)
    chunk = json.loads((slurm_dir(study) / CHUNKS).read_text())[index]
    keys = [tuple(k) for k in chunk["keys"]]
    jobs = [j for j in evaluation.plan_evaluations(study) if (j.model, j.checkpoint) in keys]
    missing = sorted(set(keys) - {(j.model, j.checkpoint) for j in jobs})
    if missing:  # the report job's notebook 03 evaluates whatever the plan holds
        print(f"[cluster] chunk {index}: not in the evaluation plan now: {missing}", flush=True)
    print(f"[cluster] chunk {index}: {', '.join(f'{m}/{c}' for m, c in keys)}", flush=True)
    problems = evaluation.load_problems([b for j in jobs for b in j.benchmarks], study.evaluate)
    pending = [(j, records_dir(study.run_dir, j.model, j.checkpoint)) for j in jobs]
    evaluation.generate_jobs(pending, problems, study.evaluate, progress=False)
    for job, d in pending:
        evaluation.grade_job(job, problems, study.evaluate, d, progress=False)
        evaluation.score_job(job, problems, study.evaluate, d, study.run_dir)  # raises if anything is missing
    marker = slurm_dir(study) / "eval" / chunk["marker"]
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"keys": keys, "jobs": len(jobs)}))
    print(f"[cluster] chunk {index}: {len(jobs)} checkpoint(s) evaluated", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="entry points of the cluster jobs (posttrain.pipeline --submit slurm "
                                             "submits them)")
    sub = ap.add_subparsers(dest="what", required=True)
    chunk = sub.add_parser("eval-chunk", help="one evaluation array task")
    chunk.add_argument("params")
    chunk.add_argument("--run-dir")
    chunk.add_argument("--chunk", type=int, required=True)
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, raise_stopped)  # the job's time-limit warning or a cancel: stop the workers too
    try:
        return run_eval_chunk(args.params, args.run_dir, args.chunk)
    except KeyboardInterrupt:
        stop_descendants()
        print(f"[cluster] chunk {args.chunk}: stopped; its records are kept for the rerun", flush=True)
        return 143


if __name__ == "__main__":
    sys.exit(main())
