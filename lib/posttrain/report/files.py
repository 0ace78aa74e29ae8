"""The report's files: Markdown/LaTeX tables under {run_dir}/report/, figures under the study's figures dir, and
report/manifest.json (what index.html shows, and which figure files this report wrote)."""
from __future__ import annotations

import json
from pathlib import Path

from posttrain.mini.gates import check_gates
from posttrain.params import repo_relative
from posttrain.records import results_path
from posttrain.report.claims import check_claims
from posttrain.report.figures import plot_curves, plot_gap_closure, plot_headline, plot_sft_scale
from posttrain.report.select import ReportSpec, load_results, spec_from
from posttrain.report.stats import example_outputs, gap_closure, headline_bars, sft_scale
from posttrain.report.tables import (_examples_markdown, _markdown_pages, build_tables, format_table, table_captions,
                                     to_latex)

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
    pooled = [p for p in scale if p.stem.endswith("_seeds")]  # file_stem of a pooled_label
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
