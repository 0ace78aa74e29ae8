"""Tables 1–3 (sizes × arms × benchmark columns) as DataFrames, and the one small renderer: Markdown and LaTeX."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from posttrain.eval_sets import BENCHMARK_DOMAIN, BENCHMARKS, PAPER_COMPETITIONS
from posttrain.records import ARM_ORDER
from posttrain.report.claims import CLAIM_RULE
from posttrain.report.select import (ARM_LABELS, LAYOUTS, METRICS, MISSING, ReportSpec, columns_for, describe_model,
                                     final_checkpoints, fmt_ci, model_rows, unfinished_runs)

def _cell_table(final, spec: ReportSpec, columns: dict[str, list[str]], model_domain_of, arms) -> tuple:
    """Rows (size, arm), columns (column, metric): mean of `metric` over the column's benchmarks, NaN if any
    benchmark is missing. `model_domain_of(column_domain)` picks which SFT model fills a column."""
    data, notes, unplanned = {}, {}, set()  # model description → benchmarks it lacks; runs the study never had
    for size in spec.sizes:
        for arm in arms:
            row = {}
            for col, benches in columns.items():
                model_domain = model_domain_of(BENCHMARK_DOMAIN.get(benches[0], "math"))
                rows = model_rows(final, arm, size, model_domain).set_index("benchmark")
                absent = [b for b in benches if b not in rows.index]
                for metric in METRICS:
                    row[(col, metric)] = np.nan if absent else float(rows.loc[benches, metric].mean())
                if absent and spec.plan_known and arm != "Base" and (arm, size, model_domain) not in spec.expected_sft:
                    unplanned.add((arm, size, model_domain))  # by design (e.g. short-Pre with one seed): no note
                elif absent:
                    notes.setdefault(describe_model(arm, size, model_domain), []).extend(absent)
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


def build_tables(results: pd.DataFrame, spec: ReportSpec) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    final = final_checkpoints(results)
    tables, notes = {}, {}
    in_domain = lambda col_domain: col_domain  # noqa: E731  (SFT arms: the model trained on the column's domain)
    tables["table1"], notes["table1"] = _cell_table(final, spec, columns_for(spec, "headline"), in_domain, spec.arms)
    tables["table2"], notes["table2"] = _cell_table(final, spec, columns_for(spec, "competitions"), in_domain,
                                                    spec.arms)
    if "probes" in LAYOUTS[spec.layout] and (cols := columns_for(spec, "probes")):
        tables["table_probes"], notes["table_probes"] = _cell_table(final, spec, cols, in_domain, spec.arms)
    for model_domain, other in (("math", "code"), ("code", "math")):
        # Only the other domain's sets these models were evaluated on (evaluate.cross_domain may list a subset).
        evaluated = set(final.loc[final["train_domain"] == model_domain, "benchmark"])
        cols = {c: bs for c, bs in columns_for(spec, "headline", other).items() if set(bs) & evaluated}
        if model_domain in spec.domains and cols:
            name = f"table3_{model_domain}_sft_on_{other}"
            tables[name], notes[name] = _cell_table(final, spec, cols, lambda _d, m=model_domain: m, spec.arms)
    flagged = [f"unfinished: {run} (its row is not the run's result)"
               for runs in unfinished_runs(results, spec).values() for run in runs]
    return tables, {name: table_notes + flagged for name, table_notes in notes.items()}


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
        return [b for bs in columns_for(spec, "competitions").values() for b in bs]
    if name == "table_probes":
        return [b for bs in columns_for(spec, "probes").values() for b in bs]
    if name.startswith("table3_"):
        return [b for bs in columns_for(spec, "headline", name.rsplit("_", 1)[1]).values() for b in bs]
    return [b for bs in columns_for(spec, "headline").values() for b in bs]


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


def format_cases(cases: pd.DataFrame) -> pd.DataFrame:
    out = cases.copy()
    out["this run (95% CI)"] = [fmt_ci(v, lo, hi) for v, lo, hi in zip(out["value"], out["lo"], out["hi"])]
    return out[["claim", "case", "this run (95% CI)", "verdict", "note"]].fillna("")


def format_gates(gates: pd.DataFrame) -> pd.DataFrame:
    out = gates.copy()
    out["value"] = [f"{100 * v:.1f}%" if isinstance(v, float) else v for v in out["value"]]
    out["passed"] = out["passed"].map({True: "yes", False: "**no**"})
    return out


def format_scale(scale: pd.DataFrame) -> pd.DataFrame:
    out = scale[["size", "domain", "benchmark", "arm", "step"]].copy()
    out["SFT tokens"] = scale["sft_tokens"].map(lambda t: f"{t:,.0f}")
    gap = scale["arm"] == "100%-Pre − 0%-Pre"
    out["pass@1 [95% CI]"] = [fmt_ci(g, lo, hi) if is_gap else fmt_ci(100 * p, 100 * pl, 100 * ph)
                              for is_gap, g, lo, hi, p, pl, ph in zip(gap, scale["gap"], scale["gap_lo"],
                                                                      scale["gap_hi"], scale["pass@1"],
                                                                      scale["pass@1_lo"], scale["pass@1_hi"])]
    return out


def format_gaps(gaps: pd.DataFrame) -> pd.DataFrame:
    """pass@1 of the three arms, the gap 100%-Pre − 0%-Pre and the gap closure, in %, each CI beside its value."""
    pct = lambda v: MISSING if pd.isna(v) else f"{100 * v:.1f}"  # noqa: E731
    short = gaps["short_arm"].iloc[0] if len(gaps) else "short"
    return pd.DataFrame({
        "size": gaps["size"], "benchmark": gaps["benchmark"], "0%-Pre": gaps["zero"].map(pct),
        short: gaps["short"].map(pct), "100%-Pre": gaps["full"].map(pct),
        "100%-Pre − 0%-Pre (95% CI)": [fmt_ci(100 * v, 100 * lo, 100 * hi) for v, lo, hi in
                                       zip(gaps["denominator"], gaps["denominator_lo"], gaps["denominator_hi"])],
        "gap closure % (95% CI)": [fmt_ci(100 * v, 100 * lo, 100 * hi) for v, lo, hi in
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


def examples_markdown(examples: pd.DataFrame) -> str:
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
            pages[name] = to_markdown(format_cases(table), caption=f"Rule: {CLAIM_RULE}")
        elif name == "gap_closure":  # its notes are its `note` column
            pages[name] = to_markdown(format_gaps(table))
        elif name == "gates":
            pages[name] = to_markdown(format_gates(table), caption=(
                "Checked before any comparison is read (docs/miniature.md §8); a claim that needs a failed gate is "
                "reported as 'cannot decide'."))
        elif name == "sft_scale":
            pages[name] = to_markdown(format_scale(table), caption=(
                "pass@1 (%) per arm and checkpoint against SFT tokens (steps × tokens per step); rows "
                "'100%-Pre − 0%-Pre' give the paired difference in points with its 95% CI."))
        else:
            pages[name] = to_markdown(format_table(table), notes[name], captions[name])
    return pages


def short_number(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:g}"
