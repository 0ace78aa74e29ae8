"""What the report reads and how it picks: eval/results.csv checked, final checkpoints, the per-problem pass@1 of a
results row (from its records), the study's expected cells (ReportSpec), one model per cell, seed groups."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from posttrain.eval_sets import BENCHMARK_DOMAIN, PAPER_COMPETITIONS, PROBES
from posttrain.records import ARM_ORDER, RESULT_COLUMNS, read_records, resolve_records
from posttrain.runs import launch_world_size, resolve_schedule

SHORT_ARMS = ("0.1%-Pre", "short-Pre")  # the short pre-training arm: the paper's 0.1%-Pre, or the miniature's


METRICS = ("pass@1", "pass@5")


# Table column → the benchmarks it averages. "headline" is Table 1 (and 3), "competitions" is Table 2.
LAYOUTS = {
    "paper": {
        "headline": {"MATH-500": ["math500"], "Comp. Math avg": list(PAPER_COMPETITIONS), "LCB v5": ["lcb_v5"],
                     "LCB v6": ["lcb_v6"]},
        "competitions": {"AIME 24": ["aime24"], "AIME 25": ["aime25"], "HMMT Feb 25": ["hmmt_feb25"],
                         "HMMT Nov 25": ["hmmt_nov25"]},
    },
    "miniature": {  # honest names: the sets that ran; captions map them to the paper's benchmarks
        "headline": {b: [b] for b in ("mini_math", "mini_math_competition", "mini_code", "mini_code_competition")},
        "competitions": {b: [b] for b in ("mini_math_competition", "mini_code_competition")},
        # Knowledge probes (docs/miniature.md §6): not paper benchmarks, a table of their own.
        "probes": {b: [b] for b in ("mini_knowledge_probe", "mini_knowledge_seen")},
    },
}


MISSING = "—"


# Arms as the paper names them, and one colour per arm in every figure (seaborn's colourblind palette).
ARM_LABELS = {"Base": "Base (no SFT)", "0%-Pre": "0%-Pre", "0.1%-Pre": "0.1%-Pre",
              "short-Pre": "short-Pre (paper: 0.1%-Pre)", "100%-Pre": "100%-Pre"}


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and check eval/results.csv; an empty frame with the right columns when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    df = pd.read_csv(path, dtype={"size": str, "model": str, "train_domain": str, "path": str, "records": str,
                                  "grader": str})
    return check_results(df, str(path))


def check_results(df: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; a results.csv from an older version: rerun "
                         "notebooks/03_evaluate.ipynb (records are kept; it only regrades and rescores)")
    df = df.copy()
    df["train_domain"] = df["train_domain"].fillna("").astype(str)
    df["size"] = df["size"].astype(str)
    bad_arm = df[~df["arm"].isin(ARM_ORDER)]
    if len(bad_arm):
        row = bad_arm.index[0]
        raise ValueError(f"{source}: row {row}: arm {bad_arm.loc[row, 'arm']!r} is not one of {ARM_ORDER}")
    if df["step"].isna().any():
        raise ValueError(f"{source}: row {df.index[df['step'].isna()][0]}: step is empty")
    df["step"] = df["step"].astype(int)
    dupes = df[df.duplicated(["model", "step", "benchmark"], keep=False)]
    if len(dupes):
        r = dupes.iloc[0]
        raise ValueError(f"{source}: {len(dupes)} rows repeat (model, step, benchmark), e.g. "
                         f"({r['model']}, {r['step']}, {r['benchmark']}) at rows {list(dupes.index[:4])}")
    for metric in METRICS:
        out = df[(df[metric] < 0) | (df[metric] > 1)]
        if len(out):
            raise ValueError(f"{source}: row {out.index[0]}: {metric}={out[metric].iloc[0]} is outside [0, 1]")
    return df


def final_checkpoints(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of each model's final checkpoint (its max step over all benchmarks)."""
    last = results.groupby("model")["step"].transform("max")
    return results[results["step"] == last]


def per_problem_pass1(row: pd.Series, run_dir: str | Path) -> dict[str, float] | None:
    """problem_id → pass@1 (share of correct samples) from the records file the results row names; None when the
    row names none or it is gone. (Read once per file version: the tables, claims and SFT-scale rows ask for the
    same files many times.)"""
    path = resolve_records(run_dir, row.get("records"))
    if path is None or not path.is_file():
        return None
    stat = path.stat()
    return dict(_pass1_of_file(str(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=1024)
def _pass1_of_file(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, float], ...]:
    return tuple((r.problem_id, float(np.mean(r.correct))) for r in read_records(path) if r.graded and r.correct)


def paired_arrays(rows: list[pd.Series], run_dir) -> list[np.ndarray] | None:
    """Per-problem pass@1 of several results rows on the problems they all answered, aligned (row i = problem i)."""
    scores = [per_problem_pass1(r, run_dir) for r in rows]
    if any(s is None for s in scores):
        return None
    common = [pid for pid in scores[0] if all(pid in s for s in scores[1:])]
    if not common:
        return None
    return [np.array([s[pid] for pid in common]) for s in scores]


@dataclass
class ReportSpec:
    """What the study should contain, so missing runs show as gaps: sizes, arms, in-domain benchmarks per domain."""
    sizes: list[str]
    arms: list[str]
    domains: dict[str, list[str]]
    layout: str
    expected_sft: set[tuple[str, str, str]] = field(default_factory=set)  # (arm, size, domain)
    probes: list[str] = field(default_factory=list)  # probe sets (eval_sets PROBES): their own table, no claims
    tokens_per_step: dict[str, int] = field(default_factory=dict)  # SFT run name -> tokens per step (x of SFT scale)
    # group -> sizes that are training-seed replicates of one configuration (ReportParams.seed_groups)
    seed_groups: dict[str, list[str]] = field(default_factory=dict)
    plan_known: bool = False  # expected_sft comes from the study's params (else only from the results found)
    planned_steps: dict[str, int] = field(default_factory=dict)  # SFT run name -> its planned final step

    @property
    def short_arm(self) -> str | None:
        return next((a for a in self.arms if a in SHORT_ARMS), None)


def spec_from(results: pd.DataFrame, study=None, sizes: list[str] | None = None, layout: str | None = None):
    benches = set(results["benchmark"])
    arms, found_sizes = set(results["arm"]), list(dict.fromkeys(results["size"]))
    domains: dict[str, list[str]] = {}
    expected = {(a, s, d) for a, s, d in zip(results["arm"], results["size"], results["train_domain"]) if a != "Base"}
    if study is not None:
        for run in study.sft:
            arms.add(run.arm)
            if run.size not in found_sizes:
                found_sizes.append(run.size)
            expected.add((run.arm, run.size, run.domain))
        arms.add("Base")
        for d, names in study.evaluate.benchmarks.items():
            domains[d] = list(names)
            benches.update(names)
        sizes = sizes or (study.report.sizes if study.report.sizes else None)
    canonical = list(BENCHMARK_DOMAIN)
    for b in sorted(benches, key=lambda b: (canonical.index(b) if b in canonical else len(canonical), b)):
        d = domain_of(b, results)
        if b not in domains.setdefault(d, []):
            domains[d].append(b)
    probes = [b for bs in domains.values() for b in bs if b in PROBES]
    domains = {d: [b for b in domains[d] if b not in PROBES]
               for d in sorted(domains, key=lambda d: (d != "math", d != "code", d))}
    layout = layout or ("miniature" if any(b.startswith("mini_") for b in benches) else "paper")
    tokens_per_step, seed_groups, planned_steps = {}, {}, {}
    if study is not None:
        schedules = {r.name: resolve_schedule(r, launch_world_size(r)) for r in study.sft}
        tokens_per_step = {name: sched["tokens_per_step"] for name, sched in schedules.items()}
        planned_steps = {name: sched["max_steps"] for name, sched in schedules.items()}
        seed_groups = {g: list(ms) for g, ms in study.report.seed_groups.items()}
    sizes = list(sizes or found_sizes)
    return ReportSpec(sizes=sizes, arms=[a for a in ARM_ORDER if a in arms],
                      domains={d: bs for d, bs in domains.items() if bs}, layout=layout, expected_sft=expected,
                      probes=probes, tokens_per_step=tokens_per_step,
                      seed_groups={g: [m for m in ms if m in sizes] for g, ms in seed_groups.items()},
                      plan_known=study is not None, planned_steps=planned_steps)


def domain_of(benchmark: str, results: pd.DataFrame) -> str:
    if benchmark in BENCHMARK_DOMAIN:
        return BENCHMARK_DOMAIN[benchmark]
    domains = set(results.loc[results["benchmark"] == benchmark, "domain"])
    if len(domains) != 1:
        raise ValueError(f"benchmark {benchmark!r}: unknown domain (not in posttrain.eval_sets, results say "
                         f"{domains})")
    return domains.pop()


def model_rows(final: pd.DataFrame, arm: str, size: str, model_domain: str) -> pd.DataFrame:
    rows = final[(final["arm"] == arm) & (final["size"] == size)]
    if arm != "Base":
        rows = rows[rows["train_domain"] == model_domain]
    models = rows["model"].unique()
    if len(models) > 1:
        raise ValueError(f"results: {len(models)} models for arm {arm}, size {size}, domain {model_domain}: "
                         f"{list(models)}; the report needs one per cell")
    return rows


def model_row(final: pd.DataFrame, arm: str, size: str, model_domain: str, bench: str) -> pd.Series | None:
    rows = model_rows(final, arm, size, model_domain)
    rows = rows[rows["benchmark"] == bench]
    return rows.iloc[0] if len(rows) else None


def describe_model(arm: str, size: str, model_domain: str) -> str:
    return f"{arm} {size}" if arm == "Base" else f"{arm} {size} {model_domain}-SFT"


def columns_for(spec: ReportSpec, which: str, domain: str | None = None) -> dict[str, list[str]]:
    """The layout's columns whose benchmarks the study has (in `domain` when given)."""
    present = {b for bs in spec.domains.values() for b in bs} | set(spec.probes)
    cols = {c: bs for c, bs in LAYOUTS[spec.layout][which].items() if set(bs) & present}
    if domain is not None:
        cols = {c: bs for c, bs in cols.items() if BENCHMARK_DOMAIN.get(bs[0]) == domain}
    return cols


def pooled_label(group: str, members: list[str]) -> str:
    """The size label of a seed group's pooled rows ("L (4 seeds)"); `is_pooled` recognizes it."""
    return f"{group} ({len(members)} seeds)"


def is_pooled(label: str) -> bool:
    return label.endswith(" seeds)")


def seed_group_arrays(final, run_dir, members: list[str], domain: str, bench: str,
                       arms: tuple[str, ...]) -> list[list[np.ndarray]] | None:
    """Per seed of a group, the paired per-problem arrays of `arms` (final checkpoints), for
    metrics.bootstrap_over_seeds; None when the group has one seed or a seed lacks an arm or its records (e.g.
    short-Pre ran with one seed): then there is no pooled case."""
    if len(members) < 2:
        return None
    groups = []
    for m in members:
        rows = [model_row(final, arm, m, domain, bench) for arm in arms]
        arrays = None if any(r is None for r in rows) else paired_arrays(rows, run_dir)
        if arrays is None:
            return None
        groups.append(arrays)
    return groups


def sft_tokens(row: pd.Series, spec: ReportSpec) -> float:
    per_step = spec.tokens_per_step.get(row["model"])
    return float(row["step"]) * per_step if per_step else float(row["step"])


def arm_checkpoints(results: pd.DataFrame, size: str, domain: str, bench: str):
    """One size × domain × benchmark's SFT rows, 0%-Pre's and 100%-Pre's, and the steps both were evaluated at."""
    rows = results[(results["arm"] != "Base") & (results["size"] == size) & (results["train_domain"] == domain)
                   & (results["benchmark"] == bench)]
    zero, full = rows[rows["arm"] == "0%-Pre"], rows[rows["arm"] == "100%-Pre"]
    at = lambda arm_rows, step: arm_rows[arm_rows["step"] == step].iloc[0]  # noqa: E731
    return rows, zero, full, sorted(set(zero["step"]) & set(full["step"])), at


def scores_at(results: pd.DataFrame, arm: str, size: str, domain: str, bench: str) -> pd.DataFrame:
    rows = results[(results["arm"] == arm) & (results["size"] == size) & (results["benchmark"] == bench)]
    return rows if arm == "Base" else rows[rows["train_domain"] == domain].sort_values("step")


def unfinished_runs(results: pd.DataFrame, spec: ReportSpec) -> dict[str, list[str]]:
    """size -> "model at step k of N" for each SFT run whose last evaluated checkpoint is before its planned final
    step (a cluster run still training, or stopped): its numbers are not the run's result."""
    found: dict[str, list[str]] = {}
    last = results[results["arm"] != "Base"].groupby(["model", "size"])["step"].max()
    for (model, size), step in last.items():
        planned = spec.planned_steps.get(model)
        if planned and step < planned:
            found.setdefault(size, []).append(f"{model} at step {step} of {planned}")
    return found


def fmt_ci(value, lo, hi) -> str:
    if pd.isna(value):
        return MISSING
    ci = f" [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) and np.isfinite(hi) else " (no CI)"
    return f"{value:.1f}{ci}"


class NoResultsYet(RuntimeError):
    """The study has not been evaluated in this run directory: nothing to report, and nothing is touched."""


def require_results(study, params_path: str | None = None) -> pd.DataFrame:
    """eval/results.csv of the study's run, checked; NoResultsYet, saying how to make it, when there is none."""
    from posttrain.params import repo_relative
    from posttrain.records import results_path

    path = results_path(study.run_dir)
    if not path.is_file():
        how = f"make demo PARAMS={params_path}" if params_path else "make demo PARAMS=<this study's YAML>"
        raise NoResultsYet(f"study {study.name!r} has no evaluation results: {repo_relative(path)} does not exist. "
                           f"Run the study first ({how}, or notebooks 00-03 with these params); this notebook "
                           "wrote and deleted nothing.")
    return load_results(path)
