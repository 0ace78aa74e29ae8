"""Evaluate models × checkpoints × benchmarks: generate (resumable) → grade → score → `eval/results.csv`.

`plan_evaluations(study)` lists the jobs (one per model checkpoint, with its benchmarks); `run_evaluation(study)`
runs them. Records (`posttrain.records.Record`) live in `eval/<model>/<checkpoint>/<benchmark>.jsonl`, one line per
problem; each results.csv row names its records file (`records`) and the grader that produced its verdicts
(`grader`). Each line carries the params hash of what produced it (sampling, prompt template, context length): a
restarted run skips problems already there with the same hash, and grades only samples without verdicts from the
benchmark's grader. `graded_examples` (posttrain.records) is re-exported for notebooks/03.
All benchmarks of one checkpoint share one engine session (start-up is 15-35 s per engine on a CPU).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from posttrain.eval_sets import COMPETITION_MATH, Problem, ProblemSet, get_spec, grading_item, load_benchmark
from posttrain.params import EvalParams, StudyParams, params_hash, portable
from posttrain.runs import CHECKPOINT_COMPLETE_FILE, evaluation_checkpoints
from posttrain.records import (RESULT_COLUMNS, Record, graded_examples, read_jsonl, read_records,  # noqa: F401
                               records_dir, records_reference, results_path, write_records)

log = logging.getLogger(__name__)

PENDING = "_pending"  # per-checkpoint folder of the generation workers' shard files, absorbed into records


@dataclass
class EvalJob:
    model: str  # EvalModel.name / SFT run name: the directory under eval/
    arm: str
    size: str
    train_domain: str | None
    checkpoint: str  # "checkpoint-N", or "final" for a model without checkpoint dirs
    step: int  # training step of the checkpoint; 0 for a model that is no training output here (a hub Base model)
    path: str  # the model weights (dir or hub id)
    tokenizer: str
    benchmarks: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- planning


def _has_tokenizer(d: Path) -> bool:
    return (d / "tokenizer_config.json").is_file()


def _checkpoint_jobs(name, arm, size, domain, path, which, tokenizer_fallback, params: EvalParams) -> list[EvalJob]:
    all_benchmarks = list(dict.fromkeys(params.benchmarks.get("math", []) + params.benchmarks.get("code", [])))
    if domain is None:
        final_b, curve_b = all_benchmarks, all_benchmarks
    else:
        other = "code" if domain == "math" else "math"
        if isinstance(params.cross_domain, list):
            cross = [b for b in params.cross_domain if get_spec(b).domain == other]
        else:
            cross = params.benchmarks.get(other, []) if params.cross_domain else []
        final_b = list(dict.fromkeys(params.benchmarks.get(domain, []) + cross))
        # Earlier checkpoints draw the curves over training: in-domain sets only.
        curve_b = ([b for b in params.curve_benchmarks if get_spec(b).domain == domain]
                   if params.curve_benchmarks else params.benchmarks.get(domain, []))
    root = Path(path)
    ckpts = evaluation_checkpoints(root)  # complete ones only (snapshots where the run writes them)
    if not ckpts:  # a hub id or a plain model dir
        if root.exists() and not (root / "config.json").is_file():
            raise FileNotFoundError(f"evaluate: model {name!r}: {root} has neither a complete checkpoint-N dir "
                                    f"(with {CHECKPOINT_COMPLETE_FILE}) nor a config.json (has its training run "
                                    "finished?)")
        tok = str(root) if not root.exists() or _has_tokenizer(root) else tokenizer_fallback
        # Step 0: no training step of this study made it (results.csv's step is never empty).
        return [EvalJob(name, arm, size, domain, "final", 0, str(path), tok or str(path), final_b)]
    chosen = ckpts if which == "all" else ckpts[-1:]
    jobs = []
    for step, d in chosen:
        tok = str(d) if _has_tokenizer(d) else str(root) if _has_tokenizer(root) else tokenizer_fallback
        if tok is None:
            raise FileNotFoundError(f"evaluate: model {name!r}: no tokenizer in {d} or {root}")
        jobs.append(EvalJob(name, arm, size, domain, d.name, step, str(d), tok,
                            final_b if step == ckpts[-1][0] else curve_b))
    return [j for j in jobs if j.benchmarks]


def plan_evaluations(study: StudyParams) -> list[EvalJob]:
    """Jobs for every model × checkpoint, each with the benchmarks it is evaluated on.

    auto: Base (evaluate.base_model, all benchmarks) + every SFT run (final checkpoint: in-domain, plus the other
    domain when cross_domain; earlier checkpoints, when checkpoints is 'all': curve_benchmarks or in-domain).
    """
    params = study.evaluate
    for b in ([b for bs in params.benchmarks.values() for b in bs] + (params.curve_benchmarks or [])
              + (params.cross_domain if isinstance(params.cross_domain, list) else [])):
        get_spec(b)  # unknown names fail here, before any engine starts
    jobs = []
    if params.models == "auto":
        if isinstance(params.base_model, dict):  # one Base model per size (paper scale)
            for size, path in params.base_model.items():
                jobs += _checkpoint_jobs(f"base_{size}", "Base", size, None, path, "final", None, params)
        elif params.base_model:
            sizes = sorted({r.size for r in study.sft})
            size = sizes[0] if len(sizes) == 1 else "?"
            jobs += _checkpoint_jobs("base", "Base", size, None, params.base_model, "final", None, params)
        else:
            log.info("evaluate.base_model is not set: no Base arm in this evaluation")
        for run in study.sft:
            tok_fallback = run.model.tokenizer or run.model.name_or_path
            if not Path(run.output_dir).exists():  # a half-finished study still evaluates what exists
                log.warning("evaluate: SFT run %r not evaluated: output_dir %s does not exist (not trained yet?)",
                            run.name, run.output_dir)
                continue
            jobs += _checkpoint_jobs(run.name, run.arm, run.size, run.domain, run.output_dir, params.checkpoints,
                                     tok_fallback, params)
    else:
        for m in params.models:
            jobs += _checkpoint_jobs(m.name, m.arm, m.size, m.train_domain, m.path, m.checkpoints, None, params)
    return jobs


def plan_table(jobs: list[EvalJob]):
    import pandas as pd
    return pd.DataFrame([{**asdict(j), "benchmarks": ", ".join(j.benchmarks)} for j in jobs])


def plan_overview(jobs: list[EvalJob]):
    """The plan as a reader scans it: one row per model with its evaluated steps (plan_table has a row per job)."""
    table = plan_table(jobs)
    table["step"] = [("final" if c == "final" else str(int(s))) for c, s in zip(table["checkpoint"], table["step"])]
    union = lambda col: ", ".join(dict.fromkeys(b for row in col for b in row.split(", ")))  # noqa: E731
    return (table.groupby(["model", "arm", "size", "train_domain"], dropna=False, sort=False)
            .agg(steps=("step", ", ".join), benchmarks=("benchmarks", union)).reset_index())


def results_overview(results, stat: str = "pass@1", final_only: bool = False):
    """pass@k in % with its 95% CI, one row per model × step and one column per benchmark (results.csv has a row
    per benchmark too): the table a reader compares arms in. final_only: each model's last checkpoint only (the
    earlier ones are the report's curves and SFT-scale table)."""
    if final_only:
        results = results[results["step"] == results.groupby("model")["step"].transform("max")]
    cell = results.apply(lambda r: f"{100 * r[stat]:.1f} [{100 * r[f'{stat}_lo']:.1f}, {100 * r[f'{stat}_hi']:.1f}]",
                         axis=1)
    return (results.assign(cell=cell)
            .pivot_table(index=["model", "arm", "step"], columns="benchmark", values="cell", aggfunc="first", sort=False)
            .rename_axis(columns=None))


# ----------------------------------------------------------------------------------------------- records


def generation_hash(params: EvalParams, benchmark: str) -> str:
    """What determines a benchmark's samples: sampling, context length, dtype and the prompt template."""
    domain = get_spec(benchmark).domain
    return params_hash({"sampling": params.sampling.model_dump(mode="json"), "max_model_len": params.max_model_len,
                        "dtype": params.dtype, "template": params.prompts.get(domain), "benchmark": benchmark})


def _absorb_pending(ckpt_dir: Path) -> None:
    """Move finished generations from the workers' shard files into the per-benchmark record files."""
    pending = ckpt_dir / PENDING
    for shard in sorted(pending.glob("*.shard*.jsonl")) if pending.is_dir() else []:
        by_bench: dict[str, list[Record]] = {}
        for row in read_jsonl(shard, skip_unreadable=True):  # a worker killed mid-line leaves a cut last line
            key = row["key"]
            by_bench.setdefault(key["benchmark"], []).append(Record(
                problem_id=str(key["problem_id"]), benchmark=key["benchmark"], prompt=key["prompt"],
                responses=row["responses"], finish_reasons=row["finish_reasons"], num_tokens=row["num_tokens"],
                params_hash=key["params_hash"]))
        for bench, records in by_bench.items():
            path = ckpt_dir / f"{bench}.jsonl"
            existing = read_records(path)  # rewritten whole: also drops a line a kill cut short
            have = {(r.problem_id, r.params_hash) for r in existing}
            write_records(path, existing + [r for r in records if (r.problem_id, r.params_hash) not in have])
        shard.unlink()


def _current_records(path: Path, phash: str) -> dict[str, Record]:
    """problem_id → record for this params hash; records from other params are removed from the file."""
    records = read_records(path)
    keep = [r for r in records if r.params_hash == phash]
    if len(keep) != len(records):
        log.warning("%s: %d record(s) from other params removed (regenerated with the current params)",
                    path, len(records) - len(keep))
        write_records(path, keep)
    return {r.problem_id: r for r in keep}


# ----------------------------------------------------------------------------------------------- stages


def generation_request(job: EvalJob, problems: dict[str, ProblemSet], params: EvalParams, ckpt_dir: Path):
    """The request for the problems of every benchmark of one checkpoint not yet generated, or None if all are."""
    from transformers import AutoTokenizer

    from posttrain.eval_sets import render_prompt
    from posttrain.generation import GenerationRequest
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _absorb_pending(ckpt_dir)
    todo: list[tuple[str, Problem, str]] = []
    for bench in job.benchmarks:
        phash = generation_hash(params, bench)
        done = _current_records(ckpt_dir / f"{bench}.jsonl", phash)
        todo += [(bench, p, phash) for p in problems[bench] if p.id not in done]
    if not todo:
        return None
    tok = AutoTokenizer.from_pretrained(job.tokenizer)
    prompts = []
    for bench, problem, phash in todo:
        text = render_prompt(problem, tok, params.prompts.get(problem.domain))
        prompts.append({"prompt": text, "key": {"benchmark": bench, "problem_id": problem.id, "params_hash": phash,
                                                "prompt": text}})
    s = params.sampling
    return GenerationRequest(model=job.path, tokenizer=job.tokenizer, prompts=prompts,
                             output=str(ckpt_dir / PENDING / "gen.jsonl"), n=s.n, temperature=s.temperature,
                             top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
                             max_model_len=params.context_for(job.size),
                             dtype=params.dtype, tensor_parallel_size=params.tensor_parallel_size,
                             chunk_size=params.chunk_size, hf_batch_sequences=params.hf_batch_sequences)


def generate_jobs(pending: list[tuple[EvalJob, Path]], problems: dict[str, ProblemSet], params: EvalParams,
                  engine: str | None = None, progress: bool = True) -> int:
    """Generate what is missing for all (job, checkpoint record dir) pairs in one engine session where the engine
    allows (posttrain.generation); returns the number of problems generated."""
    from posttrain.generation import generate
    reqs = [(d, r) for job, d in pending if (r := generation_request(job, problems, params, d)) is not None]
    if reqs:
        generate([r for _, r in reqs], engine or params.engine, params.data_parallel_size, progress=progress)
        for d, _ in reqs:
            _absorb_pending(d)
    return sum(len(r.prompts) for _, r in reqs)


def generate_job(job: EvalJob, problems: dict[str, ProblemSet], params: EvalParams, ckpt_dir: Path,
                 engine: str | None = None, progress: bool = True) -> int:
    """Generate the missing problems of every benchmark of one checkpoint; returns how many."""
    return generate_jobs([(job, ckpt_dir)], problems, params, engine, progress)


def grade_job(job: EvalJob, problems: dict[str, ProblemSet], params: EvalParams, ckpt_dir: Path,
              progress: bool = True) -> int:
    """Grade every sample without a verdict from its benchmark's grader (math and code batches run in parallel);
    returns samples graded. Records graded by another grader (e.g. code semantics changed) are graded again.
    Samples cut at max_tokens (finish_reason 'length') are wrong without grading: status 'truncated'."""
    files, math_pairs, code_items, slots = {}, [], {}, []
    for bench in job.benchmarks:
        path = ckpt_dir / f"{bench}.jsonl"
        records = _current_records(path, generation_hash(params, bench))
        by_id = {p.id: p for p in problems[bench]}
        spec = get_spec(bench)
        grader = spec.grader_label
        files[bench] = (path, records)
        for pid, rec in records.items():
            if (rec.graded and rec.grader == grader) or pid not in by_id:
                continue
            problem = by_id[pid]
            rec.correct, rec.statuses = [False] * len(rec.responses), ["truncated"] * len(rec.responses)
            rec.grader = grader
            for i, (resp, reason) in enumerate(zip(rec.responses, rec.finish_reasons)):
                if reason == "length":
                    continue
                if problem.domain == "math":
                    slots.append(("math", len(math_pairs), rec, i))
                    math_pairs.append((resp, problem.answer))
                else:
                    batch = code_items.setdefault(spec.semantics, [])
                    slots.append((spec.semantics, len(batch), rec, i))
                    batch.append(grading_item(problem, resp))
    verdicts = _grade_batches(math_pairs, code_items, params, progress)
    for batch, j, rec, i in slots:
        v = verdicts[batch][j]
        rec.correct[i], rec.statuses[i] = bool(v.correct), v.status
    for path, records in files.values():
        write_records(path, list(records.values()))
    return len(slots)


def _grade_batches(math_pairs: list, code_items: dict[str, list[dict]], params: EvalParams, progress: bool) -> dict:
    """"math" or a code semantics → verdicts (posttrain.grading.Verdict) in input order; one code batch per
    semantics."""
    from posttrain.grading.code import grade_code_batch
    from posttrain.grading.math import grade_math_batch
    out = {"math": grade_math_batch(math_pairs, params.grade_timeout_s, num_workers=params.grade_workers,
                                    progress=progress) if math_pairs else []}
    for semantics, items in code_items.items():
        out[semantics] = grade_code_batch(items, params.grade_timeout_s, num_workers=params.grade_workers,
                                           progress=progress, semantics=semantics)
    return out


def score_job(job: EvalJob, problems: dict[str, ProblemSet], params: EvalParams, ckpt_dir: Path,
              run_dir: str | Path | None = None) -> list[dict]:
    """One results row per benchmark of the job (pass@k with 95% bootstrap CIs, over the current problem set).
    Its `records` is the records file, relative to run_dir when under it; its `path` the weights, `portable`
    (`{run_dir}/sft/...`, `{repo}/...`, or as given: a hub id)."""
    from posttrain.metrics import score_problems
    out = []
    n = params.sampling.n
    ks = tuple(k for k in (1, 5) if k <= n)
    for bench in job.benchmarks:
        rows = _current_records(ckpt_dir / f"{bench}.jsonl", generation_hash(params, bench))
        pset = problems[bench]
        missing = [p.id for p in pset if p.id not in rows or not rows[p.id].graded]
        if missing:
            raise RuntimeError(f"{ckpt_dir / bench}.jsonl: {len(missing)} problem(s) not generated or not graded "
                               f"(e.g. {missing[0]!r}); rerun run_evaluation")
        recs = [rows[p.id] for p in pset]
        scores = score_problems([r.correct for r in recs], ks=ks) if recs else {}
        reasons = [f for r in recs for f in r.finish_reasons]
        spec = get_spec(bench)
        out.append({"model": job.model, "arm": job.arm, "size": job.size, "train_domain": job.train_domain,
                    "step": job.step, "benchmark": bench, "domain": spec.domain, "n": n,
                    "num_problems": len(pset), "num_ungradable": len(pset.ungradable),
                    **{c: scores.get(c, math.nan) for c in RESULT_COLUMNS if c.startswith("pass@")},
                    "truncation_rate": reasons.count("length") / len(reasons) if reasons else math.nan,
                    "path": portable(job.path, run_dir), "grader": spec.grader_label,
                    "records": records_reference(ckpt_dir / f"{bench}.jsonl", run_dir)})
    return out


def load_problems(names, params: EvalParams) -> dict[str, ProblemSet]:
    problems = {}
    for name in dict.fromkeys(names):
        problems[name] = load_benchmark(name, params.data_dir, params.limit)
        if problems[name].ungradable:
            log.warning("%s: %d ungradable row(s) left out, e.g. %s", name, len(problems[name].ungradable),
                        problems[name].ungradable[0])
    return problems


def run_evaluation(study: StudyParams, force: bool = False, jobs: list[EvalJob] | None = None,
                   engine: str | None = None, progress: bool = True):
    """Generate, grade and score every job; writes eval/results.csv (after each job) and returns it as a DataFrame.

    force=True deletes the jobs' records first, so everything is regenerated.
    """
    import pandas as pd

    from posttrain.progress import bar
    params = study.evaluate
    jobs = plan_evaluations(study) if jobs is None else jobs
    problems = load_problems([b for j in jobs for b in j.benchmarks], params)
    results = []
    if force:
        for job in jobs:
            ckpt_dir = records_dir(study.run_dir, job.model, job.checkpoint)
            for f in list(ckpt_dir.glob("*.jsonl")) + list((ckpt_dir / PENDING).glob("*")):
                f.unlink()
    generate_jobs([(job, records_dir(study.run_dir, job.model, job.checkpoint)) for job in jobs], problems, params,
                  engine=engine, progress=progress)
    for job in bar(progress, iterable=jobs, desc="grade + score"):
        ckpt_dir = records_dir(study.run_dir, job.model, job.checkpoint)
        grade_job(job, problems, params, ckpt_dir, progress=progress)
        results += score_job(job, problems, params, ckpt_dir, study.run_dir)
        table = pd.DataFrame(results, columns=RESULT_COLUMNS)
        table.to_csv(results_path(study.run_dir), index=False)
    return pd.DataFrame(results, columns=RESULT_COLUMNS)


# ----------------------------------------------------------------------------------------------- reading


def competition_average(results, benchmarks=COMPETITION_MATH):
    """Mean pass@k over the competition-math benchmarks present (AIME24/25, HMMT Feb/Nov 25), per model × step.
    CIs are not averaged (they are not additive); the report states which benchmarks entered each mean."""
    sub = results[results["benchmark"].isin(benchmarks)]
    keys = ["model", "arm", "size", "train_domain", "step"]
    cols = [c for c in ("pass@1", "pass@5") if c in sub]
    agg = sub.groupby(keys, dropna=False).agg(**{c: (c, "mean") for c in cols},
                                              benchmarks=("benchmark", lambda s: ",".join(sorted(s))))
    return agg.reset_index()
