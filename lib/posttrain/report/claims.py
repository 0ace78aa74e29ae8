"""The paper's claims checked on a run: per claim the cases it is checked on (size × benchmark, or × arm), each with
a paired 95% CI, a verdict per case by CLAIM_RULE and one per claim; a claim whose gates failed cannot be decided.
The claims are data: posttrain/paper_claims.yaml."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from posttrain.metrics import bootstrap_over_seeds, bootstrap_stat, difference_stat
from posttrain.report.select import (MISSING, ReportSpec, arm_checkpoints, final_checkpoints, fmt_ci, model_row,
                                     paired_arrays, seed_group_arrays, sft_tokens, unfinished_runs)

CLAIMS_FILE = Path(__file__).parent.parent / "paper_claims.yaml"


CLAIM_RULE = ("A case holds when its whole 95% CI lies inside the claim's region, does not hold when its whole CI "
              "lies outside it, and is undetermined (CI too wide) when the CI straddles a bound. A claim holds when "
              "every case holds, does not hold when any case does not, and is undetermined otherwise. Differences "
              "between arms are paired: each bootstrap resample draws the same problems for every arm.")


def load_claims(path: str | Path = CLAIMS_FILE) -> list[dict]:
    """The paper's claims (id, claim, measure, reference, source, holds_if, why), checked for their fields."""
    data = yaml.safe_load(Path(path).read_text())
    claims = data.get("claims") if isinstance(data, dict) else None
    if not claims:
        raise ValueError(f"{path}: needs a `claims:` list")
    needed = {"id", "claim", "measure", "reference", "source", "holds_if", "why", "needs_gates"}
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
    a = model_row(final, arm_a, size, domain, bench)
    b = model_row(final, arm_b, size, domain, bench)
    if a is None or b is None:
        return None
    arrays = paired_arrays([a, b], run_dir)
    if arrays is None:
        return {"value": 100 * (a["pass@1"] - b["pass@1"]), "lo": np.nan, "hi": np.nan,
                "note": "no per-problem records: no paired CI"}
    value, lo, hi = bootstrap_stat(arrays, difference_stat, n_boot=n_boot, seed=seed)
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
                arrays = seed_group_arrays(final, run_dir, members, domain, bench, (arm_a, arm_b))
                if arrays is None:
                    continue
                value, lo, hi = bootstrap_over_seeds(arrays, difference_stat, *ctx["boot"])
                cases.append({"case": f"{bench} ({group}, {len(members)} seeds)", "value": 100 * value,
                              "lo": 100 * lo, "hi": 100 * hi, "_group": group, "_bench": bench,
                              "note": _seeds_note(members, arrays, difference_stat)})
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
                    row = model_row(final, arm, size, model_domain, bench)
                    if row is None:
                        continue
                    arrays = paired_arrays([row], run_dir)
                    value, lo, hi = (bootstrap_stat(arrays, np.mean, *ctx["boot"]) if arrays else
                                     (row["pass@1"], row["pass@1_lo"], row["pass@1_hi"]))
                    cases.append({"case": f"{arm} {model_domain}-SFT on {bench} ({size})", "value": 100 * value,
                                  "lo": 100 * lo, "hi": 100 * hi, "note": "", "_size": size})
    return cases


def _narrowing(f1, z1, fl, zl):
    return (f1.mean() - z1.mean()) - (fl.mean() - zl.mean())


def _cases_gap_narrows(ctx) -> list[dict]:
    """gap(first step) − gap(last step), 100%-Pre − 0%-Pre in points, on the same problems at both steps; per size,
    and pooled over each seed group."""
    results, run_dir, spec, cases = ctx["results"], ctx["run_dir"], ctx["spec"], []

    def picked_for(size, domain, bench):
        _, zero, full, steps, at = arm_checkpoints(results, size, domain, bench)
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
            x1, xl = (sft_tokens(rows[i], spec) for i in (0, 2))
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


_CLAIM_CASES = {"scratch_sft_beats_base": _cases_scratch_vs_base, "pretraining_leads_modestly": _cases_full_vs_scratch,
                "short_pretraining_closes_part": _cases_gap_closure, "no_cross_domain_transfer": _cases_cross_domain,
                "gap_narrows_with_sft_scale": _cases_gap_narrows}


GATE_COLUMNS = ["gate", "size", "what", "value", "threshold", "passed", "needed by"]


def _set_aside_unfinished(found: list[dict], unfinished: dict[str, list[str]], spec: ReportSpec) -> None:
    """A case resting on a run that has not reached its planned final step is shown, flagged "step k of N", and
    does not decide its claim."""
    for c in found:
        sizes = spec.seed_groups.get(c["_group"], []) if "_group" in c else [c.get("_size")]
        runs = [r for size in sizes for r in unfinished.get(size, [])]
        if runs:
            c["verdict"] = "unfinished run (does not decide): " + "; ".join(runs)


def _gate_verdict(claim: dict, gates: pd.DataFrame) -> str | None:
    """'cannot decide (...)' when a gate this claim needs failed, else None."""
    if gates.empty:
        return None
    failed = sorted(set(gates[(~gates["passed"].astype(bool)) & gates["gate"].isin(claim["needs_gates"])]
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
    summary, cases, unfinished = [], [], unfinished_runs(results, spec)
    for number, claim in enumerate(claims, 1):
        found = _CLAIM_CASES[claim["id"]](ctx)
        _superseded_by_pools(found, spec)
        _set_aside_unfinished(found, unfinished, spec)
        for c in found:
            c.setdefault("verdict", case_verdict(c["lo"], c["hi"], claim["holds_if"]))
            cases.append({"claim": number, **c})
        deciding = [c for c in found if not c["verdict"].startswith(("one seed of", "unfinished run"))]
        if found and not deciding and any(c["verdict"].startswith("unfinished run") for c in found):
            summary.append({"claim": number, "statement": claim["claim"], "paper": claim["reference"],
                            "source": claim["source"], "measure": claim["measure"],
                            "region": region_text(claim["holds_if"]), "this run (95% CI)": MISSING,
                            "verdict": "cannot decide (its runs are unfinished: see the cases)"})
            continue
        summary.append({"claim": number, "statement": claim["claim"], "paper": claim["reference"],
                        "source": claim["source"], "measure": claim["measure"],
                        "region": region_text(claim["holds_if"]), "this run (95% CI)": _run_figure(deciding),
                        "verdict": (_gate_verdict(claim, gates) if deciding else None)
                        or claim_verdict([c["verdict"] for c in deciding])})
    case_cols = ["claim", "case", "value", "lo", "hi", "verdict", "note"]
    return pd.DataFrame(summary), pd.DataFrame(cases).reindex(columns=case_cols)


def region_text(region: dict) -> str:
    above, below = region.get("above"), region.get("below")
    if above is not None and below is not None:
        return f"between {above:g} and {below:g}"
    return f"above {above:g}" if above is not None else f"below {below:g}"


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
    return "; ".join(f"{c['case']}: {fmt_ci(c['value'], c['lo'], c['hi'])}" for c in shown) + suffix
