"""Tables, figures and the paper's claims checked on a run, from eval/results.csv and the generation records only.

Claims: each claim of the paper (data: posttrain/paper_claims.yaml) with the paper's figure, this run's figure with
its 95% CI and a verdict by a stated rule (CLAIM_RULE). Table 1: sizes × arms, in-domain final checkpoints. Table 2:
each competition. Table 3: cross-domain (math-SFT models on code, code-SFT models on math, next to Base). Training
curves, gap closure of the short pre-training ((short − 0%) / (100% − 0%), problems resampled jointly) and graded
examples. Columns are named after the benchmarks that ran; a caption under each table says which of the paper's
benchmarks a miniature set stands in for, and which grader produced the verdicts.
Runs not evaluated yet are gaps ("—") with a note listing them, so a half-finished study still renders.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
import yaml  # noqa: E402

from posttrain.eval_sets import BENCHMARK_DOMAIN, BENCHMARKS, PAPER_COMPETITIONS, PROBES  # noqa: E402
from posttrain.metrics import bootstrap_over_seeds, bootstrap_stat  # noqa: E402
from posttrain.params import repo_relative  # noqa: E402
from posttrain.runs import launch_world_size, read_loss_log, resolve_schedule  # noqa: E402
from posttrain.records import (ARM_ORDER, RESULT_COLUMNS, example_row, read_records,  # noqa: E402
                               resolve_records, results_path)

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
_PALETTE = sns.color_palette("colorblind")
ARM_COLORS = {"Base": _PALETTE[7], "0%-Pre": _PALETTE[1], "0.1%-Pre": _PALETTE[2], "short-Pre": _PALETTE[2],
              "100%-Pre": _PALETTE[0]}
CLAIMS_FILE = Path(__file__).with_name("paper_claims.yaml")
CLAIM_RULE = ("A case holds when its whole 95% CI lies inside the claim's region, does not hold when its whole CI "
              "lies outside it, and is undetermined (CI too wide) when the CI straddles a bound. A claim holds when "
              "every case holds, does not hold when any case does not, and is undetermined otherwise. Differences "
              "between arms are paired: each bootstrap resample draws the same problems for every arm.")


# ---------------------------------------------------------------------------------------------- inputs


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
        d = _domain_of(b, results)
        if b not in domains.setdefault(d, []):
            domains[d].append(b)
    probes = [b for bs in domains.values() for b in bs if b in PROBES]
    domains = {d: [b for b in domains[d] if b not in PROBES]
               for d in sorted(domains, key=lambda d: (d != "math", d != "code", d))}
    layout = layout or ("miniature" if any(b.startswith("mini_") for b in benches) else "paper")
    tokens_per_step, seed_groups = {}, {}
    if study is not None:
        tokens_per_step = {r.name: resolve_schedule(r, launch_world_size(r))["tokens_per_step"] for r in study.sft}
        seed_groups = {g: list(ms) for g, ms in study.report.seed_groups.items()}
    sizes = list(sizes or found_sizes)
    return ReportSpec(sizes=sizes, arms=[a for a in ARM_ORDER if a in arms],
                      domains={d: bs for d, bs in domains.items() if bs}, layout=layout, expected_sft=expected,
                      probes=probes, tokens_per_step=tokens_per_step,
                      seed_groups={g: [m for m in ms if m in sizes] for g, ms in seed_groups.items()},
                      plan_known=study is not None)


def _domain_of(benchmark: str, results: pd.DataFrame) -> str:
    if benchmark in BENCHMARK_DOMAIN:
        return BENCHMARK_DOMAIN[benchmark]
    domains = set(results.loc[results["benchmark"] == benchmark, "domain"])
    if len(domains) != 1:
        raise ValueError(f"benchmark {benchmark!r}: unknown domain (not in posttrain.eval_sets, results say "
                         f"{domains})")
    return domains.pop()


# ---------------------------------------------------------------------------------------------- tables


def _model_rows(final: pd.DataFrame, arm: str, size: str, model_domain: str) -> pd.DataFrame:
    rows = final[(final["arm"] == arm) & (final["size"] == size)]
    if arm != "Base":
        rows = rows[rows["train_domain"] == model_domain]
    models = rows["model"].unique()
    if len(models) > 1:
        raise ValueError(f"results: {len(models)} models for arm {arm}, size {size}, domain {model_domain}: "
                         f"{list(models)}; the report needs one per cell")
    return rows


def _model_row(final: pd.DataFrame, arm: str, size: str, model_domain: str, bench: str) -> pd.Series | None:
    rows = _model_rows(final, arm, size, model_domain)
    rows = rows[rows["benchmark"] == bench]
    return rows.iloc[0] if len(rows) else None


def _describe(arm: str, size: str, model_domain: str) -> str:
    return f"{arm} {size}" if arm == "Base" else f"{arm} {size} {model_domain}-SFT"


def _cell_table(final, spec: ReportSpec, columns: dict[str, list[str]], model_domain_of, arms) -> tuple:
    """Rows (size, arm), columns (column, metric): mean of `metric` over the column's benchmarks, NaN if any
    benchmark is missing. `model_domain_of(column_domain)` picks which SFT model fills a column."""
    data, notes, unplanned = {}, {}, set()  # model description → benchmarks it lacks; runs the study never had
    for size in spec.sizes:
        for arm in arms:
            row = {}
            for col, benches in columns.items():
                model_domain = model_domain_of(BENCHMARK_DOMAIN.get(benches[0], "math"))
                rows = _model_rows(final, arm, size, model_domain).set_index("benchmark")
                absent = [b for b in benches if b not in rows.index]
                for metric in METRICS:
                    row[(col, metric)] = np.nan if absent else float(rows.loc[benches, metric].mean())
                if absent and spec.plan_known and arm != "Base" and (arm, size, model_domain) not in spec.expected_sft:
                    unplanned.add((arm, size, model_domain))  # by design (e.g. short-Pre with one seed): no note
                elif absent:
                    notes.setdefault(_describe(arm, size, model_domain), []).extend(absent)
            data[(size, arm)] = row
    if not data or not columns:
        return pd.DataFrame(), []
    table = pd.DataFrame.from_dict(data, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["size", "arm"])
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["benchmark", "metric"])
    missing = [f"missing: {model} on {', '.join(dict.fromkeys(benches))}" for model, benches in notes.items()]
    if unplanned:
        missing.append(f"— also marks {len(unplanned)} arm × size × domain combinations the study's params do not "
                       "run (not missing runs)")
    return table, missing


def _columns_for(spec: ReportSpec, which: str, domain: str | None = None) -> dict[str, list[str]]:
    """The layout's columns whose benchmarks the study has (in `domain` when given)."""
    present = {b for bs in spec.domains.values() for b in bs} | set(spec.probes)
    cols = {c: bs for c, bs in LAYOUTS[spec.layout][which].items() if set(bs) & present}
    if domain is not None:
        cols = {c: bs for c, bs in cols.items() if BENCHMARK_DOMAIN.get(bs[0]) == domain}
    return cols


def build_tables(results: pd.DataFrame, spec: ReportSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    final = final_checkpoints(results)
    tables, notes = {}, {}
    in_domain = lambda col_domain: col_domain  # noqa: E731  (SFT arms: the model trained on the column's domain)
    tables["table1"], notes["table1"] = _cell_table(final, spec, _columns_for(spec, "headline"), in_domain, spec.arms)
    tables["table2"], notes["table2"] = _cell_table(final, spec, _columns_for(spec, "competitions"), in_domain,
                                                    spec.arms)
    if "probes" in LAYOUTS[spec.layout] and (cols := _columns_for(spec, "probes")):
        tables["table_probes"], notes["table_probes"] = _cell_table(final, spec, cols, in_domain, spec.arms)
    for model_domain, other in (("math", "code"), ("code", "math")):
        # Only the other domain's sets these models were evaluated on (evaluate.cross_domain may list a subset).
        evaluated = set(final.loc[final["train_domain"] == model_domain, "benchmark"])
        cols = {c: bs for c, bs in _columns_for(spec, "headline", other).items() if set(bs) & evaluated}
        if model_domain in spec.domains and cols:
            name = f"table3_{model_domain}_sft_on_{other}"
            tables[name], notes[name] = _cell_table(final, spec, cols, lambda _d, m=model_domain: m, spec.arms)
    return tables, notes


def benchmark_caption(benchmarks, results: pd.DataFrame | None = None) -> str:
    """A sentence naming the paper's benchmarks the miniature sets stand in for, the benchmarks an average column
    covers, and the grader behind each benchmark's verdicts (results' `grader` column)."""
    benchmarks = list(dict.fromkeys(benchmarks))
    parts = [f"{b} stands in for the paper's {BENCHMARKS[b].stands_in_for}" for b in benchmarks
             if b in BENCHMARKS and BENCHMARKS[b].stands_in_for]
    if set(PAPER_COMPETITIONS) & set(benchmarks):
        parts.append("Comp. Math avg is the mean of " + ", ".join(b for b in PAPER_COMPETITIONS if b in benchmarks))
    text = "; ".join(parts) + "." if parts else ""
    if results is not None and len(results):
        graders = results[results["benchmark"].isin(benchmarks)].groupby("benchmark", sort=False)["grader"]
        used = {b: ", ".join(sorted(set(g.dropna()))) for b, g in graders}
        if used:
            text += " Verdicts by grader: " + "; ".join(f"{b}: {g}" for b, g in used.items() if g) + "."
    return text.strip()


def _table_benchmarks(spec: ReportSpec, name: str) -> list[str]:
    if name == "table2":
        return [b for bs in _columns_for(spec, "competitions").values() for b in bs]
    if name == "table_probes":
        return [b for bs in _columns_for(spec, "probes").values() for b in bs]
    if name.startswith("table3_"):
        return [b for bs in _columns_for(spec, "headline", name.rsplit("_", 1)[1]).values() for b in bs]
    return [b for bs in _columns_for(spec, "headline").values() for b in bs]


# ---------------------------------------------------------------------------------------------- seed groups


def _pooled_label(group: str, members: list[str]) -> str:
    """The size label of a seed group's pooled rows ("L (4 seeds)"); `_is_pooled` recognizes it."""
    return f"{group} ({len(members)} seeds)"


def _is_pooled(label: str) -> bool:
    return label.endswith(" seeds)")


def _seed_group_arrays(final, run_dir, members: list[str], domain: str, bench: str,
                       arms: tuple[str, ...]) -> list[list[np.ndarray]] | None:
    """Per seed of a group, the paired per-problem arrays of `arms` (final checkpoints), for
    metrics.bootstrap_over_seeds; None when the group has one seed or a seed lacks an arm or its records (e.g.
    short-Pre ran with one seed): then there is no pooled case."""
    if len(members) < 2:
        return None
    groups = []
    for m in members:
        rows = [_model_row(final, arm, m, domain, bench) for arm in arms]
        arrays = None if any(r is None for r in rows) else paired_arrays(rows, run_dir)
        if arrays is None:
            return None
        groups.append(arrays)
    return groups


# ---------------------------------------------------------------------------------------------- gap closure


def _gap_closure_stat(zero, short, full):
    return (short.mean() - zero.mean()) / (full.mean() - zero.mean())


def _difference_stat(a, b):
    return a.mean() - b.mean()


def joint_bootstrap_gap(zero: np.ndarray, short: np.ndarray, full: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> dict:
    """Gap closure (short − zero) / (full − zero) of per-problem pass@1 arrays aligned on the same problems, with
    percentile CIs from resampling problems jointly (metrics.bootstrap_stat). Defined only where the gap
    full − zero is positive with its CI above 0; otherwise gap_closure is NaN and `reason` says why."""
    zero, short, full = (np.asarray(a, float) for a in (zero, short, full))
    if not (len(zero) == len(short) == len(full)) or len(zero) == 0:
        raise ValueError(f"joint_bootstrap_gap: need equal non-empty arrays, got {len(zero)}, {len(short)}, "
                         f"{len(full)}")
    return _gap_stats([[zero, short, full]], lambda groups, stat: bootstrap_stat(
        groups[0], stat, n_boot=n_boot, seed=seed, alpha=alpha))


def joint_bootstrap_gap_over_seeds(groups: list[list[np.ndarray]], n_boot: int = 1000, seed: int = 0,
                                   alpha: float = 0.05) -> dict:
    """joint_bootstrap_gap pooled over training seeds: `groups` holds one [zero, short, full] per seed, the CIs
    resample seeds and then problems within each (metrics.bootstrap_over_seeds)."""
    groups = [[np.asarray(a, float) for a in g] for g in groups]
    return _gap_stats(groups, lambda gs, stat: bootstrap_over_seeds(gs, stat, n_boot=n_boot, seed=seed, alpha=alpha))


def _gap_stats(groups: list[list[np.ndarray]], boot) -> dict:
    zero, short, full = (np.concatenate([g[i] for g in groups]) for i in range(3))
    denom, d_lo, d_hi = boot([[g[2], g[0]] for g in groups], _difference_stat)
    out = {"zero": zero.mean(), "short": short.mean(), "full": full.mean(), "denominator": denom,
           "denominator_lo": d_lo, "denominator_hi": d_hi, "gap_closure": np.nan, "gap_lo": np.nan,
           "gap_hi": np.nan, "defined": bool(denom > 0 and d_lo > 0), "reason": ""}
    if out["defined"]:
        out["gap_closure"], out["gap_lo"], out["gap_hi"] = boot(groups, _gap_closure_stat)
    else:
        out["reason"] = (f"undefined: 100%-Pre − 0%-Pre = {100 * denom:.1f} points, 95% CI [{100 * d_lo:.1f}, "
                         f"{100 * d_hi:.1f}], is not above 0: there is no gap to close")
    return out


GAP_COLUMNS = ["size", "domain", "benchmark", "short_arm", "zero", "short", "full", "denominator", "denominator_lo",
               "denominator_hi", "gap_closure", "gap_lo", "gap_hi", "note", "group"]


def gap_closure(results: pd.DataFrame, spec: ReportSpec, run_dir: str | Path, n_boot: int = 1000,
                seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Per size × in-domain benchmark: gap closure of the short pre-training arm, CI from the records."""
    final, short_arm = final_checkpoints(results), spec.short_arm
    if short_arm is None or "0%-Pre" not in spec.arms or "100%-Pre" not in spec.arms:
        return pd.DataFrame(), ["gap closure needs the 0%-Pre, short pre-training and 100%-Pre arms"]
    rows, notes = [], []
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches:
                picked = {key: _model_row(final, arm, size, domain, bench)
                          for key, arm in (("zero", "0%-Pre"), ("short", short_arm), ("full", "100%-Pre"))}
                out = {"size": size, "domain": domain, "benchmark": bench, "short_arm": short_arm,
                       **_gap_row(picked, run_dir, n_boot, seed)}
                if out["note"]:
                    notes.append(f"{size} {bench}: {out['note']}")
                rows.append(out)
    for group, members in spec.seed_groups.items():
        for domain, benches in spec.domains.items():
            for bench in benches:
                arrays = _seed_group_arrays(final, run_dir, members, domain, bench, ("0%-Pre", short_arm, "100%-Pre"))
                if arrays is None:
                    continue
                stats = joint_bootstrap_gap_over_seeds(arrays, n_boot=n_boot, seed=seed)
                stats.pop("defined")
                stats["note"] = stats.pop("reason")
                rows.append({"size": _pooled_label(group, members), "domain": domain, "benchmark": bench,
                             "short_arm": short_arm, "group": group, **stats})
    return pd.DataFrame(rows).reindex(columns=GAP_COLUMNS), notes


def _gap_row(picked: dict, run_dir, n_boot: int, seed: int) -> dict:
    absent = [k for k, r in picked.items() if r is None]
    if absent:
        return {"note": f"missing runs: {', '.join(absent)}"}
    arrays = paired_arrays([picked[k] for k in ("zero", "short", "full")], run_dir)
    if arrays is None:
        z, s, f = (picked[k]["pass@1"] for k in ("zero", "short", "full"))
        return {"zero": z, "short": s, "full": f, "denominator": f - z,
                "note": "undefined: no per-problem records, so no CI for 100%-Pre − 0%-Pre"}
    stats = joint_bootstrap_gap(*arrays, n_boot=n_boot, seed=seed)
    stats.pop("defined")
    stats["note"] = stats.pop("reason")
    return stats


# ---------------------------------------------------------------------------------------------- claims


# ---------------------------------------------------------------------------------------------- SFT scale

SCALE_COLUMNS = ["size", "domain", "benchmark", "arm", "step", "sft_tokens", "pass@1", "pass@1_lo", "pass@1_hi",
                 "gap", "gap_lo", "gap_hi", "problems"]


def _sft_tokens(row: pd.Series, spec: ReportSpec) -> float:
    per_step = spec.tokens_per_step.get(row["model"])
    return float(row["step"]) * per_step if per_step else float(row["step"])


def _arm_checkpoints(results: pd.DataFrame, size: str, domain: str, bench: str):
    """One size × domain × benchmark's SFT rows, 0%-Pre's and 100%-Pre's, and the steps both were evaluated at."""
    rows = results[(results["arm"] != "Base") & (results["size"] == size) & (results["train_domain"] == domain)
                   & (results["benchmark"] == bench)]
    zero, full = rows[rows["arm"] == "0%-Pre"], rows[rows["arm"] == "100%-Pre"]
    at = lambda arm_rows, step: arm_rows[arm_rows["step"] == step].iloc[0]  # noqa: E731
    return rows, zero, full, sorted(set(zero["step"]) & set(full["step"])), at


def sft_scale(results: pd.DataFrame, spec: ReportSpec, run_dir, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """pass@1 against SFT tokens for every arm and evaluated checkpoint, on each domain's first in-domain benchmark
    (and the probes, for math): the paper's title as a figure. Rows with arm "100%-Pre − 0%-Pre" carry the
    paired difference (gap, in points) with its CI at each step both arms were evaluated at."""
    out = []
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches[:1] + (spec.probes if domain == "math" else []):
                rows, zero, full, steps, at = _arm_checkpoints(results, size, domain, bench)
                for _, r in rows.sort_values("step").iterrows():
                    out.append({"size": size, "domain": domain, "benchmark": bench, "arm": r["arm"],
                                "step": int(r["step"]), "sft_tokens": _sft_tokens(r, spec), "pass@1": r["pass@1"],
                                "pass@1_lo": r["pass@1_lo"], "pass@1_hi": r["pass@1_hi"]})
                for step in steps:
                    a, b = at(full, step), at(zero, step)
                    arrays = paired_arrays([a, b], run_dir)
                    gap = (bootstrap_stat(arrays, _difference_stat, n_boot=n_boot, seed=seed) if arrays
                           else (a["pass@1"] - b["pass@1"], np.nan, np.nan))
                    out.append({"size": size, "domain": domain, "benchmark": bench, "arm": "100%-Pre − 0%-Pre",
                                "step": int(step), "sft_tokens": _sft_tokens(a, spec),
                                **dict(zip(("gap", "gap_lo", "gap_hi"), (100 * g for g in gap))),
                                "problems": len(arrays[0]) if arrays else np.nan})
    out += _pooled_scale_rows(results, spec, run_dir, n_boot, seed)
    return pd.DataFrame(out, columns=SCALE_COLUMNS)


def _pooled_scale_rows(results, spec: ReportSpec, run_dir, n_boot: int, seed: int) -> list[dict]:
    """sft_scale rows pooled over each seed group (size "<group> (k seeds)"): per arm run by every seed, pass@1 at
    each step all seeds were evaluated at, and the paired gap, with CIs over seeds and problems."""
    out = []
    for group, members in spec.seed_groups.items():
        label = _pooled_label(group, members)
        for domain, benches in spec.domains.items():
            for bench in benches[:1] + (spec.probes if domain == "math" else []):
                per_seed = [_arm_checkpoints(results, m, domain, bench) for m in members]
                at = per_seed[0][4]
                base = {"size": label, "domain": domain, "benchmark": bench}
                for arm in [a for a in ARM_ORDER if a != "Base"]:
                    runs = [rows[rows["arm"] == arm] for rows, *_ in per_seed]
                    for step in sorted(set.intersection(*(set(r["step"]) for r in runs))):
                        picked = [at(r, step) for r in runs]
                        arrays = [paired_arrays([r], run_dir) for r in picked]
                        if any(a is None for a in arrays):
                            continue
                        value, lo, hi = bootstrap_over_seeds(arrays, np.mean, n_boot=n_boot, seed=seed)
                        out.append({**base, "arm": arm, "step": int(step), "sft_tokens": _sft_tokens(picked[0], spec),
                                    "pass@1": value, "pass@1_lo": lo, "pass@1_hi": hi})
                for step in sorted(set.intersection(*(set(steps) for _, _, _, steps, _ in per_seed))):
                    pairs = [[at(full, step), at(zero, step)] for _, zero, full, _, _ in per_seed]
                    arrays = [paired_arrays(p, run_dir) for p in pairs]
                    if any(a is None for a in arrays):
                        continue
                    gap = bootstrap_over_seeds(arrays, _difference_stat, n_boot=n_boot, seed=seed)
                    out.append({**base, "arm": "100%-Pre − 0%-Pre", "step": int(step),
                                "sft_tokens": _sft_tokens(pairs[0][0], spec),
                                **dict(zip(("gap", "gap_lo", "gap_hi"), (100 * g for g in gap))),
                                "problems": sum(len(a[0]) for a in arrays)})
    return out


def _narrowing(f1, z1, fl, zl):
    return (f1.mean() - z1.mean()) - (fl.mean() - zl.mean())


def _cases_gap_narrows(ctx) -> list[dict]:
    """gap(first step) − gap(last step), 100%-Pre − 0%-Pre in points, on the same problems at both steps; per size,
    and pooled over each seed group."""
    results, run_dir, spec, cases = ctx["results"], ctx["run_dir"], ctx["spec"], []

    def picked_for(size, domain, bench):
        _, zero, full, steps, at = _arm_checkpoints(results, size, domain, bench)
        if len(steps) < 2:
            return None
        rows = [at(arm_rows, st) for st in (steps[0], steps[-1]) for arm_rows in (full, zero)]
        arrays = paired_arrays(rows, run_dir)
        return None if arrays is None else (steps[0], steps[-1], rows, arrays)

    for domain, benches in spec.domains.items():
        bench, found = benches[0], {}
        for size in spec.sizes:
            if (got := picked_for(size, domain, bench)) is None:
                continue
            found[size] = got
            first, last, rows, arrays = got
            value, lo, hi = bootstrap_stat(arrays, _narrowing, *ctx["boot"])
            x1, xl = (_sft_tokens(rows[i], spec) for i in (0, 2))
            cases.append({"case": f"{bench} ({size}): step {first} → {last}", "value": 100 * value,
                          "lo": 100 * lo, "hi": 100 * hi, "_size": size, "_bench": bench,
                          "note": f"SFT tokens ×{xl / x1:.0f}; {len(arrays[0])} problems"})
        for group, members in spec.seed_groups.items():
            if len(members) < 2 or not all(m in found for m in members):
                continue
            value, lo, hi = bootstrap_over_seeds([found[m][3] for m in members], _narrowing, *ctx["boot"])
            cases.append({"case": f"{bench} ({group}, {len(members)} seeds): first → last step",
                          "value": 100 * value, "lo": 100 * lo, "hi": 100 * hi, "_group": group, "_bench": bench,
                          "note": _seeds_note(members, [found[m][3] for m in members], _narrowing)})
    return cases


def _seeds_note(members: list[str], groups: list[list[np.ndarray]], stat) -> str:
    """Each seed's own value: the reader sees the spread the pooled interval covers."""
    per_seed = ", ".join(f"{m} {100 * stat(*g):+.1f}" for m, g in zip(members, groups))
    return f"CI over training seeds and problems (two-level bootstrap); per seed: {per_seed}"


def _short_number(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:g}"


def _file_stem(label: str) -> str:
    """A size label as a file-name part: "L (4 seeds)" -> "L_4_seeds"; plain labels unchanged."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_")


def plot_sft_scale(scale: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Per size × domain: pass@1 against SFT tokens (log x), a line per arm with its CI band, one column per
    benchmark; beneath, the paired gap 100%-Pre − 0%-Pre with its CI."""
    paths = []
    for (size, domain), part in scale.groupby(["size", "domain"], sort=False):
        benches = list(dict.fromkeys(part["benchmark"]))
        with sns.axes_style("whitegrid"):
            fig, axes = plt.subplots(2, len(benches), figsize=(4.2 * len(benches), 5.6), squeeze=False,
                                     sharex=True, gridspec_kw={"height_ratios": [3, 2]})
            for col, bench in enumerate(benches):
                top, bottom, rows = axes[0][col], axes[1][col], part[part["benchmark"] == bench]
                for arm in [a for a in ARM_ORDER if a in set(rows["arm"])]:
                    line = rows[rows["arm"] == arm]
                    x = line["sft_tokens"].to_numpy(float)
                    y, lo, hi = (100 * line[c].to_numpy(float) for c in ("pass@1", "pass@1_lo", "pass@1_hi"))
                    top.plot(x, y, marker="o", color=ARM_COLORS[arm], label=ARM_LABELS[arm])
                    if len(line) > 1:
                        top.fill_between(x, lo, hi, color=ARM_COLORS[arm], alpha=0.15)
                    else:  # one checkpoint: a band would be invisible
                        top.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="none", ecolor=ARM_COLORS[arm],
                                     capsize=3)
                gap = rows[rows["arm"] == "100%-Pre − 0%-Pre"]
                if len(gap):
                    x = gap["sft_tokens"].to_numpy(float)
                    y = gap["gap"].to_numpy(float)
                    err = np.vstack([y - gap["gap_lo"].to_numpy(float), gap["gap_hi"].to_numpy(float) - y])
                    bottom.errorbar(x, y, yerr=err, fmt="o-", color=ARM_COLORS["100%-Pre"], capsize=3)
                bottom.axhline(0, color="black", linewidth=0.8)
                top.set_xscale("log")
                top.set_title(bench + (" (probe)" if bench in PROBES else ""))
                bottom.set_xlabel("SFT tokens" if rows["sft_tokens"].max() > rows["step"].max() else "SFT step")
            ticks = sorted(set(part["sft_tokens"]))  # the budgets themselves, labelled 150k / 2.4M
            for ax in axes[1]:
                ax.set_xticks(ticks, [_short_number(t) for t in ticks])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
            axes[0][0].set_ylabel("pass@1 (%)")
            axes[1][0].set_ylabel("100%-Pre − 0%-Pre\n(points, paired 95% CI)")
            axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            pooled = _is_pooled(size)
            fig.suptitle(f"{domain}-SFT, size {size}: scores against SFT scale (95% CI"
                         + (" over training seeds and problems)" if pooled else ")"))
            fig.tight_layout()
            paths += _save(fig, figures_dir, f"sft_scale_{domain}_{_file_stem(size)}")
    return paths


def load_claims(path: str | Path = CLAIMS_FILE) -> list[dict]:
    """The paper's claims (id, claim, measure, reference, source, holds_if, why), checked for their fields."""
    data = yaml.safe_load(Path(path).read_text())
    claims = data.get("claims") if isinstance(data, dict) else None
    if not claims:
        raise ValueError(f"{path}: needs a `claims:` list")
    needed = {"id", "claim", "measure", "reference", "source", "holds_if", "why"}
    for i, c in enumerate(claims):
        if needed - set(c):
            raise ValueError(f"{path}: claim {i} ({c.get('id', '?')}) lacks {sorted(needed - set(c))}")
        if not set(c["holds_if"]) <= {"above", "below"} or not c["holds_if"]:
            raise ValueError(f"{path}: claim {c['id']}: holds_if takes `above` and/or `below`, got {c['holds_if']}")
    if set(c["id"] for c in claims) != set(_CLAIM_CASES):
        raise ValueError(f"{path}: claim ids {[c['id'] for c in claims]} do not match the report's checks "
                         f"{list(_CLAIM_CASES)}")
    return claims


def case_verdict(lo: float, hi: float, region: dict) -> str:
    """CLAIM_RULE for one case: the CI [lo, hi] against the open region (above, below)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "undetermined (no CI)"
    above, below = region.get("above", -np.inf), region.get("below", np.inf)
    if lo > above and hi < below:
        return "holds"
    if hi <= above or lo >= below:
        return "does not hold"
    return "undetermined (CI too wide)"


def claim_verdict(verdicts: list[str]) -> str:
    """All cases hold: holds; any does not: does not hold; else undetermined, with the cases' reason when they
    share one."""
    if not verdicts:
        return "not checked (runs missing)"
    if all(v == "holds" for v in verdicts):
        return "holds"
    if "does not hold" in verdicts:
        return "does not hold"
    undetermined = {v for v in verdicts if v != "holds"}
    return undetermined.pop() if len(undetermined) == 1 else "undetermined (CI too wide)"


def _difference_case(final, run_dir, size, domain, bench, arm_a, arm_b, n_boot, seed) -> dict | None:
    """arm_a − arm_b on one in-domain benchmark, in points, with a paired bootstrap CI (None: a run is missing)."""
    a = _model_row(final, arm_a, size, domain, bench)
    b = _model_row(final, arm_b, size, domain, bench)
    if a is None or b is None:
        return None
    arrays = paired_arrays([a, b], run_dir)
    if arrays is None:
        return {"value": 100 * (a["pass@1"] - b["pass@1"]), "lo": np.nan, "hi": np.nan,
                "note": "no per-problem records: no paired CI"}
    value, lo, hi = bootstrap_stat(arrays, _difference_stat, n_boot=n_boot, seed=seed)
    case = {"value": 100 * value, "lo": 100 * lo, "hi": 100 * hi, "note": f"{len(arrays[0])} problems"}
    if not any(a.any() for a in arrays):
        # a set no arm solves once measures the set, not the arms: its difference of exactly 0 decides nothing
        case["verdict"] = f"undetermined ({arm_a} and {arm_b} at 0 on every problem)"
    return case


def _difference_cases(ctx, arm_a: str, arm_b: str) -> list[dict]:
    """arm_a − arm_b per size × in-domain benchmark, and pooled over each seed group (two-level bootstrap)."""
    final, run_dir, spec, cases = ctx["final"], ctx["run_dir"], ctx["spec"], []
    for size, domain, bench in ctx["in_domain"]:
        if c := _difference_case(*ctx["args"](size, domain, bench), arm_a, arm_b, *ctx["boot"]):
            cases.append(dict(case=f"{bench} ({size})", _size=size, _bench=bench, **c))
    for group, members in spec.seed_groups.items():
        for domain, benches in spec.domains.items():
            for bench in benches:
                arrays = _seed_group_arrays(final, run_dir, members, domain, bench, (arm_a, arm_b))
                if arrays is None:
                    continue
                value, lo, hi = bootstrap_over_seeds(arrays, _difference_stat, *ctx["boot"])
                cases.append({"case": f"{bench} ({group}, {len(members)} seeds)", "value": 100 * value,
                              "lo": 100 * lo, "hi": 100 * hi, "_group": group, "_bench": bench,
                              "note": _seeds_note(members, arrays, _difference_stat)})
                if not any(a.any() for pair in arrays for a in pair):
                    cases[-1]["verdict"] = f"undetermined ({arm_a} and {arm_b} at 0 on every problem)"
    return cases


def _cases_scratch_vs_base(ctx) -> list[dict]:
    return _difference_cases(ctx, "0%-Pre", "Base")


def _cases_full_vs_scratch(ctx) -> list[dict]:
    return _difference_cases(ctx, "100%-Pre", "0%-Pre")


def _superseded_by_pools(found: list[dict], spec: ReportSpec) -> None:
    """A single-seed case of a seed group, where the group has a pooled case on the same benchmark, is shown but
    does not decide the claim: one training run is not a replicate (docs/miniature.md §14)."""
    pooled = {(c["_group"], c["_bench"]) for c in found if "_group" in c}
    for c in found:
        group = next((g for g, ms in spec.seed_groups.items() if c.get("_size") in ms), None)
        if group is not None and (group, c.get("_bench")) in pooled:
            c["verdict"] = f"one seed of {group} (the pooled case decides)"

def _cases_gap_closure(ctx) -> list[dict]:
    gaps, cases = ctx["gaps"], []
    for g in gaps.itertuples() if not gaps.empty else []:
        if str(g.note).startswith("missing runs"):
            continue
        case = {"case": f"{g.benchmark} ({g.size})", "value": 100 * g.gap_closure, "lo": 100 * g.gap_lo,
                "hi": 100 * g.gap_hi, "note": g.note, "_bench": g.benchmark,
                **({"_group": g.group} if isinstance(g.group, str) else {"_size": g.size})}
        if pd.isna(g.gap_closure):
            case["verdict"] = "undetermined (gap closure undefined)"
        cases.append(case)
    return cases


def _cases_cross_domain(ctx) -> list[dict]:
    final, run_dir, spec, cases = ctx["final"], ctx["run_dir"], ctx["spec"], []
    for size in spec.sizes:
        for model_domain in spec.domains:
            for bench in [b for d, bs in spec.domains.items() if d != model_domain for b in bs]:
                for arm in [a for a in spec.arms if a != "Base"]:
                    row = _model_row(final, arm, size, model_domain, bench)
                    if row is None:
                        continue
                    arrays = paired_arrays([row], run_dir)
                    value, lo, hi = (bootstrap_stat(arrays, np.mean, *ctx["boot"]) if arrays else
                                     (row["pass@1"], row["pass@1_lo"], row["pass@1_hi"]))
                    cases.append({"case": f"{arm} {model_domain}-SFT on {bench} ({size})", "value": 100 * value,
                                  "lo": 100 * lo, "hi": 100 * hi, "note": ""})
    return cases


_CLAIM_CASES = {"scratch_sft_beats_base": _cases_scratch_vs_base, "pretraining_leads_modestly": _cases_full_vs_scratch,
                "short_pretraining_closes_part": _cases_gap_closure, "no_cross_domain_transfer": _cases_cross_domain,
                "gap_narrows_with_sft_scale": _cases_gap_narrows}


# ---------------------------------------------------------------------------------------------- gates

# Checks made before any comparison is read (docs/miniature.md §8); a failed gate turns the claims that need it into
# "cannot decide". Only the miniature has them (its sets are generated, its training adequacy is in question).
FLOOR, CEILING, BASE_CEILING, STORAGE = 0.30, 0.95, 0.05, 0.80
CLAIM_GATES = {"scratch_sft_beats_base": ("learning floor", "instruments"),
               "pretraining_leads_modestly": ("learning floor",),
               "short_pretraining_closes_part": ("learning floor",),
               "no_cross_domain_transfer": (),
               "gap_narrows_with_sft_scale": ("learning floor", "off the ceiling")}
GATE_COLUMNS = ["gate", "size", "what", "value", "threshold", "passed", "needed by"]


def _scores_at(results: pd.DataFrame, arm: str, size: str, domain: str, bench: str) -> pd.DataFrame:
    rows = results[(results["arm"] == arm) & (results["size"] == size) & (results["benchmark"] == bench)]
    return rows if arm == "Base" else rows[rows["train_domain"] == domain].sort_values("step")


def check_gates(results: pd.DataFrame, spec: ReportSpec, run_dir, study=None) -> pd.DataFrame:
    """The miniature's gates, one row each per size: learning floor (0%-Pre's last math checkpoint >= 30%), off
    the ceiling (100%-Pre's first <= 95%), instruments (Base <= 5% on the in-domain math set), transfer sanity
    (100%-Pre's SFT loss at the end of warmup not above 0%-Pre's), storage (Base's fill-in accuracy >= 80% on seen and
    held-out towns; eval/fill_in.json from notebook 03). Empty for paper-scale studies."""
    if spec.layout != "miniature" or "math" not in spec.domains:
        return pd.DataFrame(columns=GATE_COLUMNS)
    bench, rows = spec.domains["math"][0], []

    def add(gate, size, what, value, threshold, passed):
        needed = [c for c, gates in CLAIM_GATES.items() if gate in gates] or [
            {"storage": "the knowledge probe"}.get(gate, "no claim (a warning)")]
        rows.append({"gate": gate, "size": size, "what": what, "value": value, "threshold": threshold,
                     "passed": passed, "needed by": ", ".join(needed)})

    for size in spec.sizes:
        zero, full = (_scores_at(results, a, size, "math", bench) for a in ("0%-Pre", "100%-Pre"))
        base = _scores_at(results, "Base", size, "math", bench)
        if len(zero):
            v = zero["pass@1"].iloc[-1]
            add("learning floor", size, f"0%-Pre pass@1 on {bench}, step {zero['step'].iloc[-1]}", v, f">= {FLOOR:.0%}",
                bool(v >= FLOOR))
        if len(full):
            v = full["pass@1"].iloc[0]
            add("off the ceiling", size, f"100%-Pre pass@1 on {bench}, step {full['step'].iloc[0]}", v,
                f"<= {CEILING:.0%}", bool(v <= CEILING))
        if len(base):
            v = base["pass@1"].iloc[0]
            add("instruments", size, f"Base pass@1 on {bench}", v, f"<= {BASE_CEILING:.0%}", bool(v <= BASE_CEILING))
        if study is not None:
            # The first logged step after warmup: at step 1 a pretrained model that never saw the chat markers
            # can sit above a random init's ln(vocab) (pilot world 1002: 7.44 vs 6.96), which says nothing about
            # transfer.
            first = {r.arm: [x for x in read_loss_log(r.output_dir) if x["step"] >= r.training.warmup_steps][:1]
                     for r in study.sft if r.domain == "math" and r.size == size and r.arm in ("0%-Pre", "100%-Pre")}
            if all(first.get(a) for a in ("0%-Pre", "100%-Pre")):
                f, z = first["100%-Pre"][0], first["0%-Pre"][0]
                add("transfer sanity", size, f"math SFT loss at step {f['step']} (end of warmup), 100%-Pre vs "
                    "0%-Pre", f"{f['loss']:.3g} vs {z['loss']:.3g}", "not above", bool(f["loss"] <= z["loss"]))
    fill_in = Path(run_dir) / "eval" / "fill_in.json"
    if fill_in.is_file():
        f = json.loads(fill_in.read_text())
        v = min(x for x in (f.get("seen"), f.get("held_out")) if x is not None)
        add("storage", "—", f"Base fill-in accuracy, {f['facts']} facts (seen {f['seen']}, held-out {f['held_out']})",
            v, f">= {STORAGE:.0%}", bool(v >= STORAGE))
    return pd.DataFrame(rows, columns=GATE_COLUMNS)


def _gate_verdict(claim_id: str, gates: pd.DataFrame) -> str | None:
    """'cannot decide (...)' when a gate this claim needs failed, else None."""
    if gates.empty:
        return None
    failed = sorted(set(gates[(~gates["passed"].astype(bool)) & gates["gate"].isin(CLAIM_GATES.get(claim_id, ()))]
                        ["gate"]))
    return f"cannot decide (gate failed: {', '.join(failed)})" if failed else None


def check_claims(results: pd.DataFrame, spec: ReportSpec, run_dir, gaps: pd.DataFrame, n_boot: int = 1000,
                 seed: int = 0, claims: list[dict] | None = None,
                 gates: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, cases): one summary row per claim (paper's figure, this run's figure with 95% CI, verdict by
    CLAIM_RULE, or "cannot decide" when a gate it needs failed) and one row per case it was checked on (size ×
    benchmark, or × arm for cross-domain)."""
    gates = gates if gates is not None else pd.DataFrame(columns=GATE_COLUMNS)
    claims = claims or load_claims()
    final = final_checkpoints(results)
    ctx = {"final": final, "results": results, "run_dir": run_dir, "spec": spec, "gaps": gaps, "boot": (n_boot, seed),
           "in_domain": [(s, d, b) for s in spec.sizes for d, bs in spec.domains.items() for b in bs],
           "args": lambda size, domain, bench: (final, run_dir, size, domain, bench)}
    summary, cases = [], []
    for number, claim in enumerate(claims, 1):
        found = _CLAIM_CASES[claim["id"]](ctx)
        _superseded_by_pools(found, spec)
        for c in found:
            c.setdefault("verdict", case_verdict(c["lo"], c["hi"], claim["holds_if"]))
            cases.append({"claim": number, **c})
        deciding = [c for c in found if not c["verdict"].startswith("one seed of")]
        summary.append({"claim": number, "statement": claim["claim"], "paper": claim["reference"],
                        "source": claim["source"], "measure": claim["measure"],
                        "region": region_text(claim["holds_if"]), "this run (95% CI)": _run_figure(deciding),
                        "verdict": (_gate_verdict(claim["id"], gates) if deciding else None)
                        or claim_verdict([c["verdict"] for c in deciding])})
    case_cols = ["claim", "case", "value", "lo", "hi", "verdict", "note"]
    return pd.DataFrame(summary), pd.DataFrame(cases).reindex(columns=case_cols)


def region_text(region: dict) -> str:
    above, below = region.get("above"), region.get("below")
    if above is not None and below is not None:
        return f"between {above:g} and {below:g}"
    return f"above {above:g}" if above is not None else f"below {below:g}"


def _fmt_ci(value, lo, hi) -> str:
    if pd.isna(value):
        return MISSING
    ci = f" [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) and np.isfinite(hi) else " (no CI)"
    return f"{value:.1f}{ci}"


def _run_figure(cases: list[dict], show: int = 3) -> str:
    """The cases' figures; beyond `show` cases only the one that decides the verdict (the first that does not hold,
    else the first undetermined, else the largest value), and how many cases there are."""
    if not cases:
        return MISSING
    shown, suffix = cases, ""
    if len(cases) > show:
        rank = {"does not hold": 0, "holds": 2}
        shown = [min(cases, key=lambda c: (rank.get(c["verdict"], 1), -np.nan_to_num(c["value"], nan=-np.inf)))]
        suffix = f" (decisive case of {len(cases)}; all in the cases table)"
    return "; ".join(f"{c['case']}: {_fmt_ci(c['value'], c['lo'], c['hi'])}" for c in shown) + suffix


# ---------------------------------------------------------------------------------------------- examples


def example_outputs(results: pd.DataFrame, spec: ReportSpec, run_dir, per_arm: int = 2) -> pd.DataFrame:
    """A few graded outputs per arm: the first `per_arm` problems (shared by all arms) of each domain's first
    benchmark with records, final checkpoints; the response excerpt is its end, where the answer is."""
    final, out = final_checkpoints(results), []
    if per_arm == 0:
        return pd.DataFrame()
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches:
                by_arm = {}
                for arm in spec.arms:
                    row = _model_row(final, arm, size, domain, bench)
                    path = resolve_records(run_dir, row.get("records")) if row is not None else None
                    if path is not None and path.is_file():
                        by_arm[arm] = {r.problem_id: r for r in read_records(path)}
                if not by_arm:
                    continue
                first = next(iter(by_arm.values()))
                shared = [p for p in first if all(p in recs for recs in by_arm.values())][:per_arm]
                out += [_example(size, domain, bench, arm, example_row(recs[pid]))
                        for arm, recs in by_arm.items() for pid in shared]
                break  # one benchmark per domain
    return pd.DataFrame(out)


def _example(size, domain, bench, arm, ex: dict) -> dict:
    verdict = ("correct" if ex["correct"] else "wrong") + (f" ({ex['status']})" if ex["status"] else "")
    return {"size": size, "domain": domain, "benchmark": bench, "arm": arm, "problem_id": ex["problem_id"],
            "problem": _excerpt(ex["prompt"], 300, head=True), "response": _excerpt(ex["response"], 400, head=False),
            "verdict": verdict, "finish_reason": ex["finish"]}


def _excerpt(text: str, limit: int, head: bool) -> str:
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + " …" if head else "… " + text[-limit:]


# ---------------------------------------------------------------------------------------------- figures


def _save(fig, figures_dir: Path, stem: str) -> list[Path]:
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [figures_dir / f"{stem}.png", figures_dir / f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return paths


def headline_bars(results: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """Table 1's pass@1 in long form with its 95% CI: (size, arm, column, pass@1, lo, hi). An average column has
    no CI (intervals of different benchmarks do not add up), so lo/hi are NaN there."""
    final, rows = final_checkpoints(results), []
    for col, benches in _columns_for(spec, "headline").items():
        domain = BENCHMARK_DOMAIN.get(benches[0], "math")
        for size in spec.sizes:
            for arm in spec.arms:
                picked = [_model_row(final, arm, size, domain, b) for b in benches]
                if any(r is None for r in picked):
                    continue
                one = len(picked) == 1
                rows.append({"size": size, "arm": arm, "column": col,
                             "pass@1": float(np.mean([r["pass@1"] for r in picked])),
                             "lo": picked[0]["pass@1_lo"] if one else np.nan,
                             "hi": picked[0]["pass@1_hi"] if one else np.nan})
    return pd.DataFrame(rows, columns=["size", "arm", "column", "pass@1", "lo", "hi"])


def plot_headline(bars: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Grouped bars of Table 1's pass@1 with 95% CI error bars: a panel per size, a group per column, a bar per arm."""
    sizes, cols = list(dict.fromkeys(bars["size"])), list(dict.fromkeys(bars["column"]))
    arms = [a for a in ARM_ORDER if a in set(bars["arm"])]
    width = 0.8 / max(len(arms), 1)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, len(sizes), figsize=(2 + 2.2 * len(cols) * len(sizes), 3.8), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            for i, arm in enumerate(arms):
                sub = bars[(bars["size"] == size) & (bars["arm"] == arm)].set_index("column").reindex(cols)
                y = 100 * sub["pass@1"].to_numpy(float)
                err = np.vstack([y - 100 * sub["lo"].to_numpy(float), 100 * sub["hi"].to_numpy(float) - y])
                x = np.arange(len(cols)) + i * width
                ax.bar(x, y, width, label=ARM_LABELS[arm], color=ARM_COLORS[arm])
                has_ci = np.isfinite(err).all(axis=0) & np.isfinite(y)  # an average column has no CI
                if has_ci.any():
                    ax.errorbar(x[has_ci], y[has_ci], yerr=err[:, has_ci], fmt="none", ecolor="0.2", elinewidth=1,
                                capsize=3)
            ax.set_xticks(np.arange(len(cols)) + width * (len(arms) - 1) / 2, cols, rotation=10)
            ax.set_title(f"size {size}")
            ax.set_ylabel("pass@1 (%), 95% CI")
            top = np.nanmax(100 * bars["hi"].fillna(bars["pass@1"]).to_numpy(float), initial=0.0)
            ax.set_ylim(0, max(10.0, 1.15 * top))  # all-zero runs (smoke) still get a readable axis
        axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _save(fig, figures_dir, "headline")


def plot_curves(results: pd.DataFrame, spec: ReportSpec, figures_dir: Path) -> tuple[list[Path], list[str]]:
    """pass@1 over training steps: a figure per domain × size, a panel per benchmark, a line per arm (CI band)."""
    paths, notes = [], []
    sft = results[results["arm"] != "Base"]
    base = final_checkpoints(results[results["arm"] == "Base"])
    for domain, benches in spec.domains.items():
        for size in spec.sizes:
            rows = sft[(sft["train_domain"] == domain) & (sft["size"] == size) & sft["benchmark"].isin(benches)]
            if rows.empty:
                notes.append(f"no training curve for {domain}-SFT size {size}: no evaluated checkpoints")
                continue
            with sns.axes_style("whitegrid"):
                fig, axes = plt.subplots(1, len(benches), figsize=(3.8 * len(benches), 3.3), squeeze=False)
                for ax, bench in zip(axes[0], benches):
                    _curve_panel(ax, rows[rows["benchmark"] == bench], base[(base["size"] == size) &
                                                                            (base["benchmark"] == bench)], spec)
                    ax.set_title(bench)
                axes[0][0].set_ylabel("pass@1 (%)")
                axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
                fig.suptitle(f"{domain}-SFT, size {size} (95% CI)")
                fig.tight_layout()
                paths += _save(fig, figures_dir, f"curves_{domain}_{size}")
    return paths, notes


def _curve_panel(ax, rows: pd.DataFrame, base: pd.DataFrame, spec: ReportSpec) -> None:
    arms = [a for a in spec.arms if a != "Base" and a in set(rows["arm"])]
    steps = sorted(set(rows["step"]))
    dodge = 0.03 * max(steps[-1] - steps[0], 1) if steps else 0  # arms at one step would hide each other's bars
    for i, arm in enumerate(arms):
        line = rows[rows["arm"] == arm].sort_values("step")
        x = line["step"].to_numpy(float) + (i - (len(arms) - 1) / 2) * dodge
        y = 100 * line["pass@1"].to_numpy(float)
        lo, hi = 100 * line["pass@1_lo"].to_numpy(float), 100 * line["pass@1_hi"].to_numpy(float)
        ax.plot(x, y, marker="o", label=ARM_LABELS[arm], color=ARM_COLORS[arm])
        if len(line) > 1:
            ax.fill_between(x, lo, hi, alpha=0.2, color=ARM_COLORS[arm])
        else:  # one checkpoint: a band would be invisible
            ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="none", ecolor=ARM_COLORS[arm], capsize=3)
    if len(base):
        ax.axhline(100 * base["pass@1"].iloc[0], color=ARM_COLORS["Base"], linestyle="--", label=ARM_LABELS["Base"])
    if len(steps) <= 8:
        ax.set_xticks(steps)
    ax.set_xlabel("SFT step")


def plot_gap_closure(gaps: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Gap closure per benchmark with its CI, in the short arm's colour, a marker per size; undefined ones are left
    out (the table says why)."""
    benches = list(dict.fromkeys(gaps["benchmark"]))
    color = ARM_COLORS[gaps["short_arm"].iloc[0]]
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(1.2 * max(len(benches), 3) + 2, 3.3))
        for i, (size, sub) in enumerate(gaps.groupby("size", sort=False)):
            x = np.array([benches.index(b) for b in sub["benchmark"]]) + 0.1 * i
            y = 100 * sub["gap_closure"].astype(float)
            err = np.vstack([y - 100 * sub["gap_lo"].astype(float), 100 * sub["gap_hi"].astype(float) - y])
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="osD^v"[i % 5], capsize=3, color=color,
                        label=f"{ARM_LABELS[gaps['short_arm'].iloc[0]]}, size {size}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.axhline(100, color="gray", lw=0.8, linestyle="--")
        ax.set_xticks(range(len(benches)), benches, rotation=10)
        ax.set_ylabel("gap closed (%), 95% CI")
        ax.legend(fontsize=8)
        return _save(fig, figures_dir, "gap_closure")


# ---------------------------------------------------------------------------------------------- writing


def format_table(table: pd.DataFrame, percent: bool = True) -> pd.DataFrame:
    """Numbers as percent strings with one decimal, NaN as "—"; MultiIndex columns flattened to "col metric". A
    pass@5 column with no value at all is left out (a study sampling fewer than 5 per problem has none)."""
    if isinstance(table.columns, pd.MultiIndex) and len(table):
        empty = [c for c in table.columns if c[-1] == "pass@5" and table[c].isna().all()]
        table = table.drop(columns=empty)
    out = table.map(lambda v: MISSING if pd.isna(v) else (f"{100 * v:.1f}" if percent else f"{v:.3g}"))
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(map(str, c)) for c in out.columns]
    return out.reset_index()


def to_markdown(table: pd.DataFrame, notes: list[str] = (), caption: str = "") -> str:
    """A GitHub-flavoured Markdown table (string cells), the caption under it, the notes as a footnote list."""
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |"
              for row in table.itertuples(index=False)]
    if caption:
        lines += ["", caption]
    if notes:
        lines += ["", f"{MISSING} = not available. Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([%&#_$])", r"\\\1", str(text)).replace(MISSING, "---")


def to_latex(table: pd.DataFrame, notes: list[str] = (), caption: str = "") -> str:
    body = table.map(_latex_escape)
    body.columns = [_latex_escape(c) for c in body.columns]
    tex = body.to_latex(index=False, escape=False)
    extra = ([caption] if caption else []) + list(notes)
    if extra:
        tex += "\\par\\footnotesize " + "; ".join(_latex_escape(n) for n in extra) + "\n"
    return tex


def claims_markdown(summary: pd.DataFrame, spec: ReportSpec) -> str:
    """The claims table as a reader meets it: claim, paper, this run, verdict; then the rule and the benchmarks."""
    shown = summary.assign(claim=[f"{n}. {s}" for n, s in zip(summary["claim"], summary["statement"])],
                           paper=[f"{p} ({s})" for p, s in zip(summary["paper"], summary["source"])],
                           measure=[f"{m}; holds {r}" for m, r in zip(summary["measure"], summary["region"])])
    shown = shown.assign(verdict=[f"**{v}**" for v in shown["verdict"]])
    shown = shown[["claim", "paper", "measure", "this run (95% CI)", "verdict"]]
    benches = [b for bs in spec.domains.values() for b in bs]
    caption = f"Rule: {CLAIM_RULE} " + benchmark_caption(benches)
    return to_markdown(shown, caption=caption.strip())


def _format_cases(cases: pd.DataFrame) -> pd.DataFrame:
    out = cases.copy()
    out["this run (95% CI)"] = [_fmt_ci(v, lo, hi) for v, lo, hi in zip(out["value"], out["lo"], out["hi"])]
    return out[["claim", "case", "this run (95% CI)", "verdict", "note"]].fillna("")


def _format_gates(gates: pd.DataFrame) -> pd.DataFrame:
    out = gates.copy()
    out["value"] = [f"{100 * v:.1f}%" if isinstance(v, float) else v for v in out["value"]]
    out["passed"] = out["passed"].map({True: "yes", False: "**no**"})
    return out


def _format_scale(scale: pd.DataFrame) -> pd.DataFrame:
    out = scale[["size", "domain", "benchmark", "arm", "step"]].copy()
    out["SFT tokens"] = scale["sft_tokens"].map(lambda t: f"{t:,.0f}")
    gap = scale["arm"] == "100%-Pre − 0%-Pre"
    out["pass@1 [95% CI]"] = [_fmt_ci(g, lo, hi) if is_gap else _fmt_ci(100 * p, 100 * pl, 100 * ph)
                              for is_gap, g, lo, hi, p, pl, ph in zip(gap, scale["gap"], scale["gap_lo"],
                                                                      scale["gap_hi"], scale["pass@1"],
                                                                      scale["pass@1_lo"], scale["pass@1_hi"])]
    return out


def _format_gaps(gaps: pd.DataFrame) -> pd.DataFrame:
    """pass@1 of the three arms, the gap 100%-Pre − 0%-Pre and the gap closure, in %, each CI beside its value."""
    pct = lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}"  # noqa: E731
    short = gaps["short_arm"].iloc[0] if len(gaps) else "short"
    return pd.DataFrame({
        "size": gaps["size"], "benchmark": gaps["benchmark"], "0%-Pre": gaps["zero"].map(pct),
        short: gaps["short"].map(pct), "100%-Pre": gaps["full"].map(pct),
        "100%-Pre − 0%-Pre (95% CI)": [_fmt_ci(100 * v, 100 * lo, 100 * hi) for v, lo, hi in
                                       zip(gaps["denominator"], gaps["denominator_lo"], gaps["denominator_hi"])],
        "gap closure % (95% CI)": [_fmt_ci(100 * v, 100 * lo, 100 * hi) for v, lo, hi in
                                   zip(gaps["gap_closure"], gaps["gap_lo"], gaps["gap_hi"])],
        "note": gaps["note"].fillna("")})


def examples_overview(examples: pd.DataFrame) -> pd.DataFrame:
    """The graded examples side by side: one row per problem, one column per arm, the verdict in each cell (the
    responses themselves are in report/examples.md)."""
    if examples.empty:
        return examples
    return (examples.pivot_table(index=["size", "benchmark", "problem_id"], columns="arm", values="verdict",
                                 aggfunc="first", sort=False)
            .reindex(columns=[a for a in ARM_ORDER if a in set(examples["arm"])]).rename_axis(columns=None))


def _examples_markdown(examples: pd.DataFrame) -> str:
    lines = ["# Graded example outputs (first sample, final checkpoints)", ""]
    for (size, bench, pid), group in examples.groupby(["size", "benchmark", "problem_id"], sort=False):
        lines += [f"## {bench} / {pid} (size {size})", "", "> " + group["problem"].iloc[0].replace("\n", "\n> "), ""]
        for r in group.itertuples():
            lines += [f"**{ARM_LABELS[r.arm]}**: {r.verdict}, finish: {r.finish_reason}", "", "```", r.response,
                      "```", ""]
    return "\n".join(lines)


def table_captions(tables, spec: ReportSpec, results) -> dict[str, str]:
    """The sentence under each results table: the paper's benchmarks its columns stand for, and the graders."""
    return {name: benchmark_caption(_table_benchmarks(spec, name), results) for name in tables
            if name.startswith("table")}


def _markdown_pages(tables, notes, captions: dict[str, str], spec: ReportSpec) -> dict[str, str]:
    pages = {"claims": claims_markdown(tables["claims"], spec)}
    for name, table in tables.items():
        if table.empty or name == "claims":
            continue
        if name == "claim_cases":
            pages[name] = to_markdown(_format_cases(table), caption=f"Rule: {CLAIM_RULE}")
        elif name == "gap_closure":  # its notes are its `note` column
            pages[name] = to_markdown(_format_gaps(table))
        elif name == "gates":
            pages[name] = to_markdown(_format_gates(table), caption=(
                "Checked before any comparison is read (docs/miniature.md §8); a claim that needs a failed gate is "
                "reported as 'cannot decide'."))
        elif name == "sft_scale":
            pages[name] = to_markdown(_format_scale(table), caption=(
                "pass@1 (%) per arm and checkpoint against SFT tokens (steps × tokens per step); rows "
                "'100%-Pre − 0%-Pre' give the paired difference in points with its 95% CI."))
        else:
            pages[name] = to_markdown(format_table(table), notes[name], captions[name])
    return pages


def write_report(study=None, *, run_dir: str | Path | None = None, results_csv: str | Path | None = None,
                 figures_dir: str | Path | None = None, sizes: list[str] | None = None,
                 examples_per_arm: int | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Write the claims, every table (Markdown + LaTeX under {run_dir}/report/) and figure (PNG + PDF).

    Pass a StudyParams (its run dir, figures dir, sizes and expected runs are used), or run_dir (+ figures_dir).
    Returns {"tables": {name: DataFrame}, "notes": {name: [str]}, "captions": {table: str}, "markdown": {name: str},
    "examples": DataFrame,
    "files": [Path], "figures": [Path], "manifest": Path}. tables["claims"] is the claims summary,
    tables["claim_cases"] each case it was checked on.
    """
    if study is None and run_dir is None:
        raise ValueError("write_report: give a study or run_dir")
    run_dir = Path(run_dir or study.run_dir)
    figures_dir = Path(figures_dir or (study.report.figures_dir if study else run_dir / "figures"))
    if examples_per_arm is None:
        examples_per_arm = study.report.examples_per_arm if study else 2
    results = load_results(results_csv or results_path(run_dir))
    spec = spec_from(results, study, sizes)
    tables, notes = build_tables(results, spec)
    if results.empty:
        notes = {k: ["no results yet: eval/results.csv is missing or empty"] for k in tables}
    tables["gap_closure"], notes["gap_closure"] = gap_closure(results, spec, run_dir, n_boot, seed)
    tables["sft_scale"] = sft_scale(results, spec, run_dir, n_boot, seed)
    tables["gates"] = check_gates(results, spec, run_dir, study)
    tables["claims"], tables["claim_cases"] = check_claims(results, spec, run_dir, tables["gap_closure"], n_boot,
                                                           seed, gates=tables["gates"])
    examples = example_outputs(results, spec, run_dir, examples_per_arm)
    captions = table_captions(tables, spec, results)
    markdown = _markdown_pages(tables, notes, captions, spec)
    files = _write_tables(run_dir / "report", tables, notes, captions, markdown, examples)
    figures = _write_figures(results, spec, tables, notes, figures_dir)
    manifest = run_dir / "report" / "manifest.json"
    manifest.write_text(json.dumps({
        "claims_table": "report/claims.md", "headline_table": "report/table1.md",
        "gates_table": "report/gates.md" if not tables["gates"].empty else None,
        "sft_scale_figure": _main_scale_figure(figures, run_dir),
        "headline_figure": _relative(figures_dir / "headline.png", run_dir) if figures else None,
        "figures": [_relative(p, run_dir) for p in figures], "tables": [_relative(p, run_dir) for p in files],
        "layout": spec.layout}, indent=1))
    return {"tables": tables, "notes": notes, "captions": captions, "markdown": markdown, "examples": examples,
            "files": files,
            "figures": figures, "manifest": manifest}


def _main_scale_figure(figures: list[Path], run_dir: Path) -> str | None:
    """The math SFT-scale figure the index page shows: a seed group's pooled one where the study has one."""
    scale = [p for p in figures if p.name.startswith("sft_scale_math") and p.suffix == ".png"]
    pooled = [p for p in scale if p.stem.endswith("_seeds")]  # _file_stem of a _pooled_label
    return _relative((pooled or scale)[0], run_dir) if scale else None


def _relative(path: Path, run_dir: Path) -> str:
    """Manifest paths are relative to the run dir (index.html sits there), else to the repository."""
    try:
        return path.resolve().relative_to(run_dir.resolve()).as_posix()
    except ValueError:
        return repo_relative(path)


def _write_tables(report_dir: Path, tables, notes, captions, markdown: dict[str, str], examples) -> list[Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in markdown.items():
        (report_dir / f"{name}.md").write_text(text)
        files.append(report_dir / f"{name}.md")
        if name.startswith("table"):
            (report_dir / f"{name}.tex").write_text(to_latex(format_table(tables[name]), notes[name],
                                                             captions[name]))
            files.append(report_dir / f"{name}.tex")
    if not examples.empty:
        (report_dir / "examples.md").write_text(_examples_markdown(examples))
        files.append(report_dir / "examples.md")
    return files


def _write_figures(results, spec: ReportSpec, tables, notes, figures_dir: Path) -> list[Path]:
    bars = headline_bars(results, spec)
    figures = plot_headline(bars, figures_dir) if len(bars) else []
    curve_paths, notes["curves"] = plot_curves(results, spec, figures_dir)
    figures += curve_paths
    if not tables["sft_scale"].empty:
        figures += plot_sft_scale(tables["sft_scale"], figures_dir)
    gaps = tables["gap_closure"]
    if not gaps.empty and gaps["gap_closure"].notna().any():
        figures += plot_gap_closure(gaps.dropna(subset=["gap_closure"]), figures_dir)
    # A figure an earlier run of this study wrote but this one did not (e.g. gap closure, now undefined) would be
    # read as this run's: remove it (only the report's own figure names; the folder may hold the user's files).
    for pattern in ("headline.*", "gap_closure.*", "curves_*.*", "sft_scale_*.*"):
        for stale in figures_dir.glob(pattern):
            if stale.suffix in (".png", ".pdf") and stale not in figures:
                stale.unlink()
    return figures


def relative_paths(paths) -> list[str]:
    """Paths as outputs show them: relative to the repository (a shared report carries no machine layout)."""
    return [repo_relative(p) for p in paths]
