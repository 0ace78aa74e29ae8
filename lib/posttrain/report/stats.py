"""The numbers the report compares: gap closure of the short pre-training, SFT-scale rows, Table 1's bars with CIs,
and graded examples. DataFrames in, DataFrames out; intervals from posttrain.metrics' bootstraps."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from posttrain.eval_sets import BENCHMARK_DOMAIN
from posttrain.metrics import (bootstrap_over_seeds, bootstrap_stat, difference_stat, joint_bootstrap_gap,
                               joint_bootstrap_gap_over_seeds)
from posttrain.records import ARM_ORDER, example_row, read_records, resolve_records
from posttrain.report.select import (ReportSpec, arm_checkpoints, columns_for, final_checkpoints, model_row,
                                     paired_arrays, pooled_label, seed_group_arrays, sft_tokens)

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
                picked = {key: model_row(final, arm, size, domain, bench)
                          for key, arm in (("zero", "0%-Pre"), ("short", short_arm), ("full", "100%-Pre"))}
                out = {"size": size, "domain": domain, "benchmark": bench, "short_arm": short_arm,
                       **_gap_row(picked, run_dir, n_boot, seed)}
                if out["note"]:
                    notes.append(f"{size} {bench}: {out['note']}")
                rows.append(out)
    for group, members in spec.seed_groups.items():
        for domain, benches in spec.domains.items():
            for bench in benches:
                arrays = seed_group_arrays(final, run_dir, members, domain, bench, ("0%-Pre", short_arm, "100%-Pre"))
                if arrays is None:
                    continue
                stats = joint_bootstrap_gap_over_seeds(arrays, n_boot=n_boot, seed=seed)
                stats.pop("defined")
                stats["note"] = stats.pop("reason")
                rows.append({"size": pooled_label(group, members), "domain": domain, "benchmark": bench,
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


SCALE_COLUMNS = ["size", "domain", "benchmark", "arm", "step", "sft_tokens", "pass@1", "pass@1_lo", "pass@1_hi",
                 "gap", "gap_lo", "gap_hi", "problems"]


def sft_scale(results: pd.DataFrame, spec: ReportSpec, run_dir, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """pass@1 against SFT tokens for every arm and evaluated checkpoint, on each domain's first in-domain benchmark
    (and the probes, for math): the paper's title as a figure. Rows with arm "100%-Pre − 0%-Pre" carry the
    paired difference (gap, in points) with its CI at each step both arms were evaluated at."""
    out = []
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches[:1] + (spec.probes if domain == "math" else []):
                rows, zero, full, steps, at = arm_checkpoints(results, size, domain, bench)
                for _, r in rows.sort_values("step").iterrows():
                    out.append({"size": size, "domain": domain, "benchmark": bench, "arm": r["arm"],
                                "step": int(r["step"]), "sft_tokens": sft_tokens(r, spec), "pass@1": r["pass@1"],
                                "pass@1_lo": r["pass@1_lo"], "pass@1_hi": r["pass@1_hi"]})
                for step in steps:
                    a, b = at(full, step), at(zero, step)
                    arrays = paired_arrays([a, b], run_dir)
                    gap = (bootstrap_stat(arrays, difference_stat, n_boot=n_boot, seed=seed) if arrays
                           else (a["pass@1"] - b["pass@1"], np.nan, np.nan))
                    out.append({"size": size, "domain": domain, "benchmark": bench, "arm": "100%-Pre − 0%-Pre",
                                "step": int(step), "sft_tokens": sft_tokens(a, spec),
                                **dict(zip(("gap", "gap_lo", "gap_hi"), (100 * g for g in gap))),
                                "problems": len(arrays[0]) if arrays else np.nan})
    out += _pooled_scale_rows(results, spec, run_dir, n_boot, seed)
    return pd.DataFrame(out, columns=SCALE_COLUMNS)


def _pooled_scale_rows(results, spec: ReportSpec, run_dir, n_boot: int, seed: int) -> list[dict]:
    """sft_scale rows pooled over each seed group (size "<group> (k seeds)"): per arm run by every seed, pass@1 at
    each step all seeds were evaluated at, and the paired gap, with CIs over seeds and problems."""
    out = []
    for group, members in spec.seed_groups.items():
        label = pooled_label(group, members)
        for domain, benches in spec.domains.items():
            for bench in benches[:1] + (spec.probes if domain == "math" else []):
                per_seed = [arm_checkpoints(results, m, domain, bench) for m in members]
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
                        out.append({**base, "arm": arm, "step": int(step), "sft_tokens": sft_tokens(picked[0], spec),
                                    "pass@1": value, "pass@1_lo": lo, "pass@1_hi": hi})
                for step in sorted(set.intersection(*(set(steps) for _, _, _, steps, _ in per_seed))):
                    pairs = [[at(full, step), at(zero, step)] for _, zero, full, _, _ in per_seed]
                    arrays = [paired_arrays(p, run_dir) for p in pairs]
                    if any(a is None for a in arrays):
                        continue
                    gap = bootstrap_over_seeds(arrays, difference_stat, n_boot=n_boot, seed=seed)
                    out.append({**base, "arm": "100%-Pre − 0%-Pre", "step": int(step),
                                "sft_tokens": sft_tokens(pairs[0][0], spec),
                                **dict(zip(("gap", "gap_lo", "gap_hi"), (100 * g for g in gap))),
                                "problems": sum(len(a[0]) for a in arrays)})
    return out


def headline_bars(results: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """Table 1's pass@1 in long form with its 95% CI: (size, arm, column, pass@1, lo, hi). An average column has
    no CI (intervals of different benchmarks do not add up), so lo/hi are NaN there."""
    final, rows = final_checkpoints(results), []
    for col, benches in columns_for(spec, "headline").items():
        domain = BENCHMARK_DOMAIN.get(benches[0], "math")
        for size in spec.sizes:
            for arm in spec.arms:
                picked = [model_row(final, arm, size, domain, b) for b in benches]
                if any(r is None for r in picked):
                    continue
                one = len(picked) == 1
                rows.append({"size": size, "arm": arm, "column": col,
                             "pass@1": float(np.mean([r["pass@1"] for r in picked])),
                             "lo": picked[0]["pass@1_lo"] if one else np.nan,
                             "hi": picked[0]["pass@1_hi"] if one else np.nan})
    return pd.DataFrame(rows, columns=["size", "arm", "column", "pass@1", "lo", "hi"])


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
                    row = model_row(final, arm, size, domain, bench)
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


def problem_pairs(results: pd.DataFrame, spec: ReportSpec, run_dir, arm_a: str = "100%-Pre",
                  arm_b: str = "0%-Pre") -> tuple[dict, pd.DataFrame]:
    """Per size × each domain's first in-domain benchmark, both arms' per-problem accuracy on the problems both
    answered (final checkpoints): ({(size, bench): (a, b)}, counts of problems where arm_a is better / worse / tied
    / both at 0). A pair missing an arm or its records is left out."""
    final, arrays, counts = final_checkpoints(results), {}, []
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            rows = [model_row(final, arm, size, domain, benches[0]) for arm in (arm_a, arm_b)]
            pair = None if any(r is None for r in rows) else paired_arrays(rows, run_dir)
            if pair is None:
                continue
            a, b = pair
            arrays[(size, benches[0])] = (a, b)
            counts.append({"size": size, "benchmark": benches[0], "problems": len(a), f"{arm_a} better": int((a > b).sum()),
                           f"{arm_b} better": int((a < b).sum()), "tied": int((a == b).sum()),
                           "both at 0": int(((a == 0) & (b == 0)).sum())})
    return arrays, pd.DataFrame(counts)
