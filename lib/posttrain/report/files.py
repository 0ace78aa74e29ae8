"""The report's files: Markdown/LaTeX tables under {run_dir}/report/, figures under the study's figures dir, and
report/manifest.json (what index.html shows, and which figure files this report wrote)."""
from __future__ import annotations

import json
from pathlib import Path

from posttrain.params import REPO_ROOT, repo_relative
from posttrain.records import results_path
from posttrain.report.claims import check_claims
from posttrain.figstyle import save_figure
from posttrain.report.figures import plot_curves, plot_gap_closure, plot_headline, plot_sft_scale
from posttrain.report.select import ReportSpec, load_results, spec_from
from posttrain.report.stats import example_outputs, gap_closure, headline_bars, sft_scale
from posttrain.report.tables import (examples_markdown, _markdown_pages, build_tables, format_table, table_captions,
                                     to_latex)

def build_report(study=None, *, run_dir: str | Path | None = None, results_csv: str | Path | None = None,
                 sizes: list[str] | None = None, examples_per_arm: int | None = None, n_boot: int = 1000,
                 seed: int = 0) -> dict:
    """Every number of the report, as notebooks/04_report computes it cell by cell: {"results", "spec", "tables",
    "notes", "examples", "figures" ({file stem: Figure})}. tables["claims"] is the claims summary, tables
    ["claim_cases"] each case it was checked on. Pass a StudyParams, or a run_dir."""
    if study is None and run_dir is None:
        raise ValueError("build_report: give a study or run_dir")
    run_dir = Path(run_dir or study.run_dir)
    if examples_per_arm is None:
        examples_per_arm = study.report.examples_per_arm if study else 2
    results = load_results(results_csv or results_path(run_dir))
    spec = spec_from(results, study, sizes)
    tables, notes = build_tables(results, spec)
    if results.empty:
        notes = {k: ["no results yet: eval/results.csv is missing or empty"] for k in tables}
    tables["gap_closure"], notes["gap_closure"] = gap_closure(results, spec, run_dir, n_boot, seed)
    tables["sft_scale"] = sft_scale(results, spec, run_dir, n_boot, seed)
    from posttrain.mini.gates import check_gates  # deferred: mini.gates imports this package

    tables["gates"] = check_gates(results, spec, run_dir, study)
    tables["claims"], tables["claim_cases"] = check_claims(results, spec, run_dir, tables["gap_closure"], n_boot,
                                                           seed, gates=tables["gates"])
    return {"results": results, "spec": spec, "tables": tables, "notes": notes,
            "examples": example_outputs(results, spec, run_dir, examples_per_arm),
            "figures": report_figures(results, spec, tables, notes)}


def report_figures(results, spec: ReportSpec, tables, notes) -> dict:
    """{file stem: Figure}: Table 1's bars, curves over training (their notes go to notes["curves"]), SFT scale,
    and gap closure where it is defined."""
    bars = headline_bars(results, spec)
    figures = {"headline": plot_headline(bars)} if len(bars) else {}
    curves, notes["curves"] = plot_curves(results, spec)
    figures.update(curves)
    if not tables["sft_scale"].empty:
        figures.update(plot_sft_scale(tables["sft_scale"]))
    gaps = tables["gap_closure"]
    if not gaps.empty and gaps["gap_closure"].notna().any():
        figures["gap_closure"] = plot_gap_closure(gaps.dropna(subset=["gap_closure"]))
    return figures


def write_report_files(run_dir: str | Path, figures_dir: str | Path, tables: dict, notes: dict, examples,
                       figures: dict, spec: ReportSpec, results) -> dict:
    """Write the tables (Markdown + LaTeX under {run_dir}/report/), the figures (PNG + PDF, no timestamps), the
    claims as CSV, and report/manifest.json. Figure files that this report's previous manifest listed and this run
    did not draw are removed (e.g. gap closure, now undefined); nothing else in the folder is touched.
    Returns {"files": [Path], "figures": [Path], "manifest": Path, "markdown": {name: str}, "captions": {..}}."""
    run_dir, figures_dir = Path(run_dir), Path(figures_dir)
    captions = table_captions(tables, spec, results)
    markdown = _markdown_pages(tables, notes, captions, spec)
    files = _write_tables(run_dir / "report", tables, notes, captions, markdown, examples)
    tables["claims"].to_csv(run_dir / "report" / "claims.csv", index=False)
    files.append(run_dir / "report" / "claims.csv")
    written = [p for stem, fig in figures.items() for p in save_figure(fig, figures_dir, stem)]
    manifest = run_dir / "report" / "manifest.json"
    for stale in _previous_figures(manifest, run_dir):
        if stale not in written and stale.suffix in (".png", ".pdf"):
            stale.unlink(missing_ok=True)
    manifest.write_text(json.dumps({
        "claims_table": "report/claims.md", "headline_table": "report/table1.md",
        "gates_table": "report/gates.md" if not tables["gates"].empty else None,
        "sft_scale_figure": _main_scale_figure(written, run_dir),
        "headline_figure": _relative(figures_dir / "headline.png", run_dir) if "headline" in figures else None,
        "figures": [_relative(p, run_dir) for p in written], "tables": [_relative(p, run_dir) for p in files],
        "layout": spec.layout}, indent=1))
    return {"files": files, "figures": written, "manifest": manifest, "markdown": markdown, "captions": captions}


def write_report(study=None, *, run_dir: str | Path | None = None, results_csv: str | Path | None = None,
                 figures_dir: str | Path | None = None, sizes: list[str] | None = None,
                 examples_per_arm: int | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """build_report + write_report_files in one call (headless use and tests; the notebook runs them cell by
    cell). Returns build_report's dict plus "files", "figures" (paths written), "manifest", "markdown", "captions"."""
    built = build_report(study, run_dir=run_dir, results_csv=results_csv, sizes=sizes,
                         examples_per_arm=examples_per_arm, n_boot=n_boot, seed=seed)
    run_dir = Path(run_dir or study.run_dir)
    figures_dir = Path(figures_dir or (study.report.figures_dir if study else run_dir / "figures"))
    out = write_report_files(run_dir, figures_dir, built["tables"], built["notes"], built["examples"],
                             built.pop("figures"), built["spec"], built["results"])
    return {**built, **out}


def _previous_figures(manifest: Path, run_dir: Path) -> list[Path]:
    """The figure files this study's last report wrote, by its manifest (none without one)."""
    if not manifest.is_file():
        return []
    found = []
    for entry in json.loads(manifest.read_text()).get("figures", []):
        # _relative wrote it relative to the run dir, or else to the repository
        found += [p for p in (run_dir / entry, REPO_ROOT / entry) if p.is_file()][:1]
    return found


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
        (report_dir / "examples.md").write_text(examples_markdown(examples))
        files.append(report_dir / "examples.md")
    return files


def relative_paths(paths) -> list[str]:
    """Paths as outputs show them: relative to the repository (a shared report carries no machine layout)."""
    return [repo_relative(p) for p in paths]
