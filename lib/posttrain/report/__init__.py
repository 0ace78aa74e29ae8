"""The report, split by product; each function returns numbers (DataFrames, dataclasses), rendering is separate.

    select   what is read and picked: results.csv checked, final checkpoints, per-problem pass@1, ReportSpec
    stats    gap closure, SFT-scale rows, Table 1's bars, graded examples
    claims   the paper's claims (paper_claims.yaml) checked case by case, with verdicts
    tables   Tables 1–3 as DataFrames; the Markdown / LaTeX renderer
    figures  one style, one colour per arm; each plot returns its Figure, save_figure writes PNG + PDF
    files    the files the pipeline needs (report/*.md, *.tex, figures, manifest), written last

notebooks/04_report.ipynb computes and draws each section in its own cell from these; `write_report` does the
same in one call for headless use and tests. The miniature's gates are posttrain.mini.gates (it imports this
package; this package imports it only inside build_report).
"""
from posttrain.metrics import joint_bootstrap_gap, joint_bootstrap_gap_over_seeds  # noqa: F401
from posttrain.records import RESULT_COLUMNS  # noqa: F401
from posttrain.report.claims import (_CLAIM_CASES, CLAIM_RULE, case_verdict, check_claims, claim_verdict,  # noqa: F401
                                     load_claims)
from posttrain.report.figures import (ARM_COLORS, plot_curves, plot_gap_closure, plot_headline, save_figure,  # noqa: F401
                                      plot_sft_scale)
from posttrain.report.files import (_main_scale_figure, build_report, relative_paths, write_report,  # noqa: F401
                                    write_report_files)
from posttrain.report.select import (ARM_LABELS, ReportSpec, check_results, final_checkpoints,  # noqa: F401
                                     load_results, spec_from)
from posttrain.report.stats import example_outputs, gap_closure, headline_bars, sft_scale  # noqa: F401
from posttrain.report.tables import build_tables, examples_overview, format_table, to_latex, to_markdown  # noqa: F401
