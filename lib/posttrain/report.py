"""Tables and figures of the study, from eval/results.csv and the generation records only.

Table 1: sizes × arms, in-domain final checkpoints, MATH-500 / competition average / LCB. Table 2: each competition.
Table 3: cross-domain (math-SFT models on code, code-SFT models on math, next to Base). Training curves, gap closure
of the short pre-training ((short − 0%) / (100% − 0%), joint per-problem bootstrap) and graded examples.
Runs not evaluated yet are gaps ("—") with a note listing them, so a half-finished study still renders.
The benchmark → column mapping is data (LAYOUTS): the miniature's tables have the paper's shape.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ARM_ORDER = ["Base", "0%-Pre", "0.1%-Pre", "short-Pre", "100%-Pre"]
SHORT_ARMS = ("0.1%-Pre", "short-Pre")
METRICS = ("pass@1", "pass@5")
RESULT_COLUMNS = ["model", "arm", "size", "train_domain", "step", "benchmark", "domain", "n", "num_problems",
                  "num_ungradable", "pass@1", "pass@1_lo", "pass@1_hi", "pass@5", "pass@5_lo", "pass@5_hi",
                  "truncation_rate", "path"]
BENCHMARK_DOMAIN = {"math500": "math", "aime24": "math", "aime25": "math", "hmmt_feb25": "math",
                    "hmmt_nov25": "math", "lcb_v5": "code", "lcb_v6": "code",
                    "mini_math": "math", "mini_math_competition": "math", "mini_code": "code"}
# Table column → the benchmarks it averages. "headline" is Table 1 (and 3), "competitions" is Table 2.
LAYOUTS = {
    "paper": {
        "headline": {"MATH-500": ["math500"], "Competition avg": ["aime24", "aime25", "hmmt_feb25", "hmmt_nov25"],
                     "LCB v5": ["lcb_v5"], "LCB v6": ["lcb_v6"]},
        "competitions": {"AIME24": ["aime24"], "AIME25": ["aime25"], "HMMT Feb25": ["hmmt_feb25"],
                         "HMMT Nov25": ["hmmt_nov25"]},
    },
    "miniature": {
        "headline": {"MATH-500": ["mini_math"], "Competition avg": ["mini_math_competition"], "LCB": ["mini_code"]},
        "competitions": {"Competition": ["mini_math_competition"]},
    },
}
MISSING = "—"
ARM_COLORS = {"Base": "tab:gray", "0%-Pre": "tab:orange", "0.1%-Pre": "tab:green", "short-Pre": "tab:green",
              "100%-Pre": "tab:blue"}  # the same arm has the same colour in every figure


# ---------------------------------------------------------------------------------------------- inputs


def load_results(path: str | Path) -> pd.DataFrame:
    """Read and check eval/results.csv; an empty frame with the right columns when the file does not exist yet."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    df = pd.read_csv(path, dtype={"size": str, "model": str, "train_domain": str, "path": str})
    return check_results(df, str(path))


def check_results(df: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
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


def read_records(path: str | Path) -> dict[str, list[bool]]:
    """problem_id → per-sample correctness, from one generation-records JSONL."""
    out = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({e})") from None
            if "problem_id" not in rec or not isinstance(rec.get("correct"), list):
                raise ValueError(f"{path}:{line_no}: need fields problem_id and correct (a list)")
            out[str(rec["problem_id"])] = [bool(c) for c in rec["correct"]]
    return out


def find_records(run_dir: str | Path, row: pd.Series) -> Path | None:
    """The records file of one results row: its `path` when that is a .jsonl, else eval/<model>/<ckpt>/<bench>.jsonl
    (the checkpoint dir whose trailing number is the row's step, or the only one)."""
    run_dir = Path(run_dir)
    given = row.get("path")
    if isinstance(given, str) and given.endswith(".jsonl"):
        for candidate in (Path(given), run_dir / given):
            if candidate.is_file():
                return candidate
    found = sorted((run_dir / "eval" / str(row["model"])).glob(f"*/{row['benchmark']}.jsonl"))
    if len(found) == 1:
        return found[0]
    for candidate in found:
        digits = re.search(r"(\d+)$", candidate.parent.name)
        if digits and int(digits.group(1)) == int(row["step"]):
            return candidate
    return None


@dataclass
class ReportSpec:
    """What the study should contain, so missing runs show as gaps: sizes, arms, in-domain benchmarks per domain."""
    sizes: list[str]
    arms: list[str]
    domains: dict[str, list[str]]
    layout: str
    expected_sft: set[tuple[str, str, str]] = field(default_factory=set)  # (arm, size, domain)


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
        d = BENCHMARK_DOMAIN.get(b) or _domain_in_results(results, b)
        if b not in domains.setdefault(d, []):
            domains[d].append(b)
    domains = {d: domains[d] for d in sorted(domains, key=lambda d: (d != "math", d != "code", d))}
    layout = layout or ("miniature" if any(b.startswith("mini_") for b in benches) else "paper")
    return ReportSpec(sizes=list(sizes or found_sizes), arms=[a for a in ARM_ORDER if a in arms],
                      domains=domains, layout=layout, expected_sft=expected)


def _domain_in_results(results: pd.DataFrame, benchmark: str) -> str:
    domains = set(results.loc[results["benchmark"] == benchmark, "domain"])
    if len(domains) != 1:
        raise ValueError(f"benchmark {benchmark!r}: unknown domain (not in BENCHMARK_DOMAIN, results say {domains})")
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


def _describe(arm: str, size: str, model_domain: str) -> str:
    return f"{arm} {size}" if arm == "Base" else f"{arm} {size} {model_domain}-SFT"


def _cell_table(final, spec: ReportSpec, columns: dict[str, list[str]], model_domain_of, arms) -> tuple:
    """Rows (size, arm), columns (column, metric): mean of `metric` over the column's benchmarks, NaN if any
    benchmark is missing. `model_domain_of(column_domain)` picks which SFT model fills a column."""
    data, notes = {}, {}  # model description → benchmarks it lacks
    for size in spec.sizes:
        for arm in arms:
            row = {}
            for col, benches in columns.items():
                col_domain = BENCHMARK_DOMAIN.get(benches[0], "math")
                model_domain = model_domain_of(col_domain)
                rows = _model_rows(final, arm, size, model_domain).set_index("benchmark")
                absent = [b for b in benches if b not in rows.index]
                for metric in METRICS:
                    row[(col, metric)] = np.nan if absent else float(rows.loc[benches, metric].mean())
                if absent:
                    notes.setdefault(_describe(arm, size, model_domain), []).extend(absent)
            data[(size, arm)] = row
    if not data or not columns:
        return pd.DataFrame(), []
    table = pd.DataFrame.from_dict(data, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["size", "arm"])
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["benchmark", "metric"])
    return table, [f"missing: {model} on {', '.join(dict.fromkeys(benches))}" for model, benches in notes.items()]


def _columns_for(spec: ReportSpec, which: str, domain: str | None = None) -> dict[str, list[str]]:
    """The layout's columns whose benchmarks the study has (in `domain` when given)."""
    present = {b for bs in spec.domains.values() for b in bs}
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
    for model_domain, other in (("math", "code"), ("code", "math")):
        cols = _columns_for(spec, "headline", other)
        if model_domain in spec.domains and cols:
            name = f"table3_{model_domain}_sft_on_{other}"
            tables[name], notes[name] = _cell_table(final, spec, cols, lambda _d, m=model_domain: m, spec.arms)
    return tables, notes


# ---------------------------------------------------------------------------------------------- gap closure


def joint_bootstrap_gap(zero: np.ndarray, short: np.ndarray, full: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> dict:
    """Gap closure (short − zero) / (full − zero) of per-problem pass@1 arrays aligned on the same problems, with
    percentile CIs from resampling problems jointly (the three arms answer the same problems, so they co-vary)."""
    zero, short, full = (np.asarray(a, float) for a in (zero, short, full))
    if not (len(zero) == len(short) == len(full)) or len(zero) == 0:
        raise ValueError(f"joint_bootstrap_gap: need equal non-empty arrays, got {len(zero)}, {len(short)}, "
                         f"{len(full)}")
    idx = np.random.default_rng(seed).integers(0, len(zero), size=(n_boot, len(zero)))
    z, s, f = zero[idx].mean(1), short[idx].mean(1), full[idx].mean(1)
    denom = f - z
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = np.where(denom != 0, (s - z) / denom, np.nan)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    d_lo, d_hi = np.percentile(denom, q)
    point_denom = full.mean() - zero.mean()
    defined = not (d_lo <= 0 <= d_hi) and point_denom != 0
    g_lo, g_hi = np.nanpercentile(gaps, q) if defined else (np.nan, np.nan)
    return {"zero": zero.mean(), "short": short.mean(), "full": full.mean(), "denominator": point_denom,
            "denominator_lo": d_lo, "denominator_hi": d_hi,
            "gap_closure": (short.mean() - zero.mean()) / point_denom if defined else np.nan,
            "gap_lo": g_lo, "gap_hi": g_hi, "defined": defined}


def gap_closure(results: pd.DataFrame, spec: ReportSpec, run_dir: str | Path, n_boot: int = 1000,
                seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Per size × in-domain benchmark: gap closure of the short pre-training arm, CI from the records."""
    final = final_checkpoints(results)
    short_arm = next((a for a in spec.arms if a in SHORT_ARMS), None)
    rows, notes = [], []
    if short_arm is None or "0%-Pre" not in spec.arms or "100%-Pre" not in spec.arms:
        return pd.DataFrame(), ["gap closure needs the 0%-Pre, short pre-training and 100%-Pre arms"]
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches:
                picked = {}
                for key, arm in (("zero", "0%-Pre"), ("short", short_arm), ("full", "100%-Pre")):
                    r = _model_rows(final, arm, size, domain)
                    r = r[r["benchmark"] == bench]
                    picked[key] = r.iloc[0] if len(r) else None
                out = {"size": size, "domain": domain, "benchmark": bench, "short_arm": short_arm, "note": ""}
                absent = [k for k, r in picked.items() if r is None]
                if absent:
                    out["note"] = f"missing runs: {', '.join(absent)}"
                    notes.append(f"{size} {bench}: {out['note']}")
                    rows.append(out)
                    continue
                per_problem = _aligned_pass1(picked, run_dir)
                if per_problem is None:
                    z, s, f = (picked[k]["pass@1"] for k in ("zero", "short", "full"))
                    denom = f - z
                    out.update(zero=z, short=s, full=f, denominator=denom,
                               gap_closure=(s - z) / denom if denom != 0 else np.nan,
                               note="no records: point estimate from results.csv, no CI")
                else:
                    stats = joint_bootstrap_gap(*per_problem, n_boot=n_boot, seed=seed)
                    defined = stats.pop("defined")
                    out.update(stats)
                    if not defined:
                        out["note"] = "undefined: the CI of 100%−0% includes 0"
                if out["note"]:
                    notes.append(f"{size} {bench}: {out['note']}")
                rows.append(out)
    cols = ["size", "domain", "benchmark", "short_arm", "zero", "short", "full", "denominator", "denominator_lo",
            "denominator_hi", "gap_closure", "gap_lo", "gap_hi", "note"]
    return pd.DataFrame(rows).reindex(columns=cols), notes


def _aligned_pass1(picked: dict, run_dir) -> tuple[np.ndarray, ...] | None:
    paths = {k: find_records(run_dir, r) for k, r in picked.items()}
    if any(p is None for p in paths.values()):
        return None
    records = {k: read_records(p) for k, p in paths.items()}
    common = [pid for pid in records["zero"] if pid in records["short"] and pid in records["full"]]
    if not common:
        return None
    return tuple(np.array([np.mean(records[k][pid]) for pid in common]) for k in ("zero", "short", "full"))


# ---------------------------------------------------------------------------------------------- examples


def graded_examples(results: pd.DataFrame, spec: ReportSpec, run_dir, per_arm: int = 2) -> pd.DataFrame:
    """A few graded outputs per arm: the first `per_arm` problems (shared by all arms) of each domain's first
    benchmark with records, final checkpoints; the response excerpt is its end, where the answer is."""
    final, out = final_checkpoints(results), []
    if per_arm == 0:
        return pd.DataFrame()
    for size in spec.sizes:
        for domain, benches in spec.domains.items():
            for bench in benches:
                files = {}
                for arm in spec.arms:
                    r = _model_rows(final, arm, size, domain)
                    r = r[r["benchmark"] == bench]
                    path = find_records(run_dir, r.iloc[0]) if len(r) else None
                    if path is not None:
                        files[arm] = {rec["problem_id"]: rec for rec in map(json.loads, open(path)) if rec}
                if not files:
                    continue
                shared = [p for p in next(iter(files.values())) if all(p in f for f in files.values())][:per_arm]
                for arm, recs in files.items():
                    for pid in shared:
                        rec = recs[pid]
                        correct = bool(rec["correct"][0]) if rec.get("correct") else False
                        status = (rec.get("statuses") or [""])[0]
                        out.append({"size": size, "domain": domain, "benchmark": bench, "arm": arm,
                                    "problem_id": pid, "problem": _excerpt(rec.get("prompt", ""), 300, head=True),
                                    "response": _excerpt((rec.get("responses") or [""])[0], 400, head=False),
                                    "verdict": ("correct" if correct else "wrong") + (f" ({status})" if status else ""),
                                    "finish_reason": (rec.get("finish_reasons") or [""])[0]})
                break  # one benchmark per domain
    return pd.DataFrame(out)


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


def plot_headline(table1: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Grouped bars of Table 1's pass@1: a panel per size, a bar group per column, a bar per arm."""
    sizes = list(table1.index.get_level_values("size").unique())
    cols = list(table1.columns.get_level_values("benchmark").unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 + 2 * len(cols) * len(sizes), 3.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sub = table1.xs(size, level="size")
        width = 0.8 / max(len(sub), 1)
        for i, arm in enumerate(sub.index):
            values = [100 * sub.loc[arm, (c, "pass@1")] for c in cols]
            ax.bar(np.arange(len(cols)) + i * width, values, width, label=arm, color=ARM_COLORS[arm])
        ax.set_xticks(np.arange(len(cols)) + width * (len(sub) - 1) / 2, cols)
        ax.set_title(f"size {size}")
        ax.set_ylabel("pass@1 (%)")
    axes[0][-1].legend(fontsize=8)
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
            fig, axes = plt.subplots(1, len(benches), figsize=(3.6 * len(benches), 3.2), squeeze=False)
            for ax, bench in zip(axes[0], benches):
                for arm in spec.arms[1:] if spec.arms[0] == "Base" else spec.arms:
                    line = rows[(rows["arm"] == arm) & (rows["benchmark"] == bench)].sort_values("step")
                    if line.empty:
                        continue
                    ax.plot(line["step"], 100 * line["pass@1"], marker="o", label=arm, color=ARM_COLORS[arm])
                    ax.fill_between(line["step"], 100 * line["pass@1_lo"], 100 * line["pass@1_hi"], alpha=0.2,
                                    color=ARM_COLORS[arm])
                b = base[(base["size"] == size) & (base["benchmark"] == bench)]
                if len(b):
                    ax.axhline(100 * b["pass@1"].iloc[0], color="gray", linestyle="--", label="Base")
                ax.set_title(bench)
                ax.set_xlabel("SFT step")
            axes[0][0].set_ylabel("pass@1 (%)")
            axes[0][-1].legend(fontsize=8)
            fig.suptitle(f"{domain}-SFT, size {size} (band: 95% CI)")
            fig.tight_layout()
            paths += _save(fig, figures_dir, f"curves_{domain}_{size}")
    return paths, notes


def plot_gap_closure(gaps: pd.DataFrame, figures_dir: Path) -> list[Path]:
    """Gap closure per benchmark with its CI, a marker series per size; undefined ones are left out."""
    fig, ax = plt.subplots(figsize=(1.2 * max(gaps["benchmark"].nunique(), 3) + 2, 3.2))
    benches = list(dict.fromkeys(gaps["benchmark"]))
    for i, (size, sub) in enumerate(gaps.groupby("size", sort=False)):
        x = np.array([benches.index(b) for b in sub["benchmark"]]) + 0.1 * i
        y = 100 * sub["gap_closure"].astype(float)
        err = np.vstack([y - 100 * sub["gap_lo"].astype(float), 100 * sub["gap_hi"].astype(float) - y])
        ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="o", capsize=3, label=f"size {size}")
    ax.axhline(0, color="gray", lw=0.8)
    ax.axhline(100, color="gray", lw=0.8, linestyle="--")
    ax.set_xticks(range(len(benches)), benches, rotation=20)
    ax.set_ylabel("gap closed by short pre-training (%)")
    ax.legend(fontsize=8)
    return _save(fig, figures_dir, "gap_closure")


# ---------------------------------------------------------------------------------------------- writing


def format_table(table: pd.DataFrame, percent: bool = True) -> pd.DataFrame:
    """Numbers as percent strings with one decimal, NaN as "—"; MultiIndex columns flattened to "col metric"."""
    out = table.map(lambda v: MISSING if pd.isna(v) else (f"{100 * v:.1f}" if percent else f"{v:.3g}"))
    if isinstance(out.columns, pd.MultiIndex):
        out.columns = [" ".join(map(str, c)) for c in out.columns]
    return out.reset_index()


def to_markdown(table: pd.DataFrame, notes: list[str] = ()) -> str:
    """A GitHub-flavoured Markdown table (string cells), with the notes as a footnote list."""
    header = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |"
              for row in table.itertuples(index=False)]
    if notes:
        lines += ["", f"{MISSING} = not available. Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    return re.sub(r"([%&#_$])", r"\\\1", str(text)).replace(MISSING, "---")


def to_latex(table: pd.DataFrame, notes: list[str] = ()) -> str:
    body = table.map(_latex_escape)
    body.columns = [_latex_escape(c) for c in body.columns]
    tex = body.to_latex(index=False, escape=False)
    if notes:
        tex += "\\par\\footnotesize " + "; ".join(_latex_escape(n) for n in notes) + "\n"
    return tex


def write_report(study=None, *, run_dir: str | Path | None = None, results_csv: str | Path | None = None,
                 figures_dir: str | Path | None = None, sizes: list[str] | None = None,
                 examples_per_arm: int | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Write every table (Markdown + LaTeX under {run_dir}/report/) and figure (PNG + PDF under figures_dir).

    Pass a StudyParams (its run dir, figures dir, sizes and expected runs are used), or run_dir (+ figures_dir).
    Returns {"tables": {name: DataFrame}, "notes": {name: [str]}, "examples": DataFrame, "files": [Path],
    "figures": [Path], "manifest": Path}.
    """
    if study is None and run_dir is None:
        raise ValueError("write_report: give a study or run_dir")
    run_dir = Path(run_dir or study.run_dir)
    figures_dir = Path(figures_dir or (study.report.figures_dir if study else run_dir / "figures"))
    if examples_per_arm is None:
        examples_per_arm = study.report.examples_per_arm if study else 2
    results = load_results(results_csv or run_dir / "eval" / "results.csv")
    spec = spec_from(results, study, sizes)
    tables, notes = build_tables(results, spec)
    if results.empty:
        notes = {k: ["no results yet: eval/results.csv is missing or empty"] for k in tables}
    tables["gap_closure"], notes["gap_closure"] = gap_closure(results, spec, run_dir, n_boot, seed)
    examples = graded_examples(results, spec, run_dir, examples_per_arm)

    report_dir = run_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in tables.items():
        if table.empty:
            continue
        shown = format_table(table) if name != "gap_closure" else _format_gaps(table)
        (report_dir / f"{name}.md").write_text(to_markdown(shown, notes[name]))
        (report_dir / f"{name}.tex").write_text(to_latex(shown, notes[name]))
        files += [report_dir / f"{name}.md", report_dir / f"{name}.tex"]
    if not examples.empty:
        (report_dir / "examples.md").write_text(_examples_markdown(examples))
        files.append(report_dir / "examples.md")

    figures = plot_headline(tables["table1"], figures_dir) if not tables["table1"].empty else []
    curve_paths, notes["curves"] = plot_curves(results, spec, figures_dir)
    figures += curve_paths
    if not tables["gap_closure"].empty and tables["gap_closure"]["gap_closure"].notna().any():
        figures += plot_gap_closure(tables["gap_closure"].dropna(subset=["gap_closure"]), figures_dir)
    manifest = report_dir / "manifest.json"
    manifest.write_text(json.dumps({
        "headline_table": str(report_dir / "table1.md"),
        "headline_figure": str(figures_dir / "headline.png") if figures else None,
        "figures": [str(p) for p in figures], "tables": [str(p) for p in files], "layout": spec.layout}, indent=1))
    return {"tables": tables, "notes": notes, "examples": examples, "files": files, "figures": figures,
            "manifest": manifest}


def _format_gaps(gaps: pd.DataFrame) -> pd.DataFrame:
    out = gaps.copy()
    for col in ["zero", "short", "full", "denominator", "denominator_lo", "denominator_hi", "gap_closure", "gap_lo",
                "gap_hi"]:
        out[col] = out[col].map(lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}")
    return out.fillna("")


def _examples_markdown(examples: pd.DataFrame) -> str:
    lines = ["# Graded example outputs (first sample, final checkpoints)", ""]
    for (size, bench, pid), group in examples.groupby(["size", "benchmark", "problem_id"], sort=False):
        lines += [f"## {bench} / {pid} (size {size})", "", "> " + group["problem"].iloc[0].replace("\n", "\n> "), ""]
        for r in group.itertuples():
            lines += [f"**{r.arm}**: {r.verdict}, finish: {r.finish_reason}", "", "```", r.response, "```", ""]
    return "\n".join(lines)
