"""What notebooks/00_explore_data computes, as functions a test can reach: the SFT sets and their token lengths, the
benchmarks (counts, ungradable rows, answer types), LiveCodeBench's date windows, and the real-data reference
overlap (MATH-500/AIME vs GSM8K train). The overlap measure itself is posttrain.overlap.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from posttrain.eval_sets import BENCHMARKS, SHARED_DATA_DIR, ProblemSet, load_benchmark
from posttrain.params import StudyParams, repo_relative

# What load_benchmark raises when a benchmark cannot be had here: no offline copy (FileNotFoundError) or the hub
# unreachable (RuntimeError, see eval_sets.read_rows). An unknown name (KeyError) or a malformed file (ValueError)
# is a bug in the params or the data and must stop the notebook.
BENCHMARK_UNAVAILABLE = (FileNotFoundError, RuntimeError)
GSM8K_TRAIN = SHARED_DATA_DIR / "gsm8k" / "train.jsonl"
LCB_PROBLEM_LIST = SHARED_DATA_DIR / "livecodebench" / "lcb_problem_list_release_v6.jsonl"
REFERENCE_BENCHMARKS = ("math500", "aime24", "aime25")


# ---------------------------------------------------------------------------------------------- SFT sets


def study_sft_sources(study: StudyParams) -> dict[str, object]:
    """name → DataParams of the SFT sets to explore: explore.sft_sources, or else the data of the study's SFT runs
    (one entry per distinct dataset, named after the first run that uses it)."""
    if study.explore.sft_sources:
        return {f"{d.source}:{Path(d.path).name if d.path else 'hub'}": d for d in study.explore.sft_sources}
    sources = {}
    for run in study.sft:
        if run.data not in sources.values():
            sources[f"{run.domain}:{run.data.source}"] = run.data
    return sources


def sft_sources_table(sources: Mapping[str, object], datasets: Mapping[str, object]) -> pd.DataFrame:
    """One row per SFT set: its loader, path and row count ("streaming" for hub sets read lazily)."""
    return pd.DataFrame({name: {"source": d.source, "path": repo_relative(d.path) if d.path else "hub",
                                "rows": len(datasets[name]) if hasattr(datasets[name], "__len__") else "streaming"}
                         for name, d in sources.items()}).T


def tokenizer_path(study: StudyParams) -> str:
    """The tokenizer the study trains with: the miniature's own (built by the mini_setup stage), else the first SFT
    run's `model.tokenizer` or `model.name_or_path`."""
    if study.setup is not None:
        from posttrain.mini.build import require_setup
        return str(require_setup(study.run_dir)["tokenizer"])
    if not study.sft:
        raise ValueError(f"study {study.name!r} has neither `setup` nor `sft` runs: no tokenizer to measure "
                         "lengths with")
    model = study.sft[0].model
    return model.tokenizer or model.name_or_path


def chat_token_lengths(tokenizer, rows_by_set: Mapping[str, list[dict]]) -> dict[str, list[int]]:
    """Tokens per chat (rendered through the chat template, as SFT sees it), per SFT set."""
    return {name: [len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False))["input_ids"])
                   for r in rows] for name, rows in rows_by_set.items()}


# ---------------------------------------------------------------------------------------------- benchmarks


def explored_benchmarks(study: StudyParams) -> list[str]:
    """explore.benchmarks, or else every benchmark the study evaluates."""
    return study.explore.benchmarks or [b for bs in study.evaluate.benchmarks.values() for b in bs]


def load_benchmarks(names: list[str], data_dir: str | Path | None) -> tuple[dict[str, ProblemSet], dict[str, str]]:
    """(problems per benchmark, why each unavailable one is missing): one benchmark without an offline copy must not
    hide the others."""
    problems, unavailable = {}, {}
    for name in names:
        try:
            problems[name] = load_benchmark(name, data_dir)
        except BENCHMARK_UNAVAILABLE as e:
            unavailable[name] = f"{type(e).__name__}: {e}"
    return problems, unavailable


def benchmark_table(problems: Mapping[str, ProblemSet]) -> pd.DataFrame:
    return pd.DataFrame({n: {"domain": BENCHMARKS[n].domain, "problems": len(p), "ungradable": len(p.ungradable)}
                         for n, p in problems.items()}).T


def answer_type_table(problems: Mapping[str, ProblemSet]) -> pd.DataFrame | None:
    """Counts of gold-answer types per benchmark (math only: code problems have tests, not answers); None if no
    benchmark has answers."""
    types = pd.DataFrame([{"benchmark": n, "type": classify_answer(p.answer)}
                          for n, ps in problems.items() for p in ps if p.answer is not None])
    return pd.crosstab(types["benchmark"], types["type"]) if len(types) else None


_FRACTION_RE = re.compile(r"^-?(\\[dt]?frac\{-?\d+\}\{\d+\}|\d+/\d+)$")
_TEXT_RE = re.compile(r"^(\\text\{[^{}]*\}|\\mathrm\{[^{}]*\}|[A-Za-z][A-Za-z ]+)$")


def _strip_answer(answer: str) -> str:
    s = answer.strip().strip("$").strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", s)
    s = boxed.group(1) if boxed else s
    s = re.sub(r"\\[,!;: ]|\\left|\\right", "", s)
    s = re.sub(r"\^\\circ|\^\{\\circ\}|\\%|%", "", s)  # degrees and percent do not change the type
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # thousands separators: 1,000 → 1000
    return s.replace(" ", "").rstrip(".")


def classify_answer(answer: str) -> str:
    """Answer type of a gold answer: empty, integer, decimal, fraction, tuple, interval, list, matrix, text or
    expression (radicals, π, variables, anything symbolic)."""
    s = _strip_answer(str(answer))
    if not s:
        return "empty"
    if "matrix" in s:
        return "matrix"
    if re.fullmatch(r"[+-]?\d+", s):
        return "integer"
    if re.fullmatch(r"[+-]?\d*\.\d+", s):
        return "decimal"
    if _FRACTION_RE.fullmatch(s):
        return "fraction"
    if s[0] in "([" and s[-1] in ")]" and "," in s:
        # (a, b) is a point/tuple; [a, b], (a, b] and unions are intervals
        return "tuple" if s[0] == "(" and s[-1] == ")" and "\\cup" not in s else "interval"
    if "\\cup" in s or "\\infty" in s:
        return "interval"
    if "," in s:
        return "list"
    if _TEXT_RE.fullmatch(answer.strip().strip("$")):
        return "text"
    return "expression"


def lcb_windows(problems: pd.DataFrame, windows: Mapping[str, tuple[str, str]]) -> pd.DataFrame:
    """Counts of LiveCodeBench problems per date window and difficulty.

    `problems` has `contest_date` (or `contest_date_est`) and `difficulty` columns; `windows` maps a name to a
    half-open [start, end) ISO-date pair, as posttrain.eval_sets defines them, e.g. {"v5": ("2024-08-01",
    "2025-02-01")}.
    """
    date_col = "contest_date" if "contest_date" in problems else "contest_date_est"
    if date_col not in problems or "difficulty" not in problems:
        raise ValueError(f"lcb_windows: need columns contest_date (or contest_date_est) and difficulty, "
                         f"got {list(problems.columns)}")
    dates = pd.to_datetime(problems[date_col]).dt.tz_localize(None)
    out = {}
    for name, (start, end) in windows.items():
        inside = problems[(dates >= pd.Timestamp(start)) & (dates < pd.Timestamp(end))]
        out[name] = inside["difficulty"].value_counts()
    table = pd.DataFrame(out).T.fillna(0).astype(int)
    table["total"] = table.sum(axis=1)
    return table


def read_lcb_problem_list(path: Path = LCB_PROBLEM_LIST) -> pd.DataFrame | None:
    """LiveCodeBench's problem list (dates, platforms, difficulties; no statements), or None where absent."""
    return pd.read_json(path, lines=True) if path.is_file() else None


# ---------------------------------------------------------------------------------------------- reference overlap


def read_gsm8k_questions(path: Path = GSM8K_TRAIN) -> Iterator[str]:
    """The `question` of each row of GSM8K's train JSONL, streamed; a bad row is named by its line."""
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                question = json.loads(line)["question"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{line_no}: not a GSM8K row with a `question` "
                                 f"({type(e).__name__}: {e})") from None
            yield question


def sft_overlap(problems: Mapping[str, ProblemSet], datasets: Mapping[str, object], ngram: int,
                max_rows: int | None) -> pd.DataFrame:
    """n-gram overlap of each SFT set (its first `max_rows` rows) with every benchmark problem, one table."""
    from posttrain.overlap import OverlapIndex, sft_rows

    index = OverlapIndex([(n, p.id, p.problem) for n, ps in problems.items() for p in ps], ngram=ngram)
    return pd.concat([index.scan(sft_rows(ds, max_rows), name, text_key="problem", id_key="index")
                      for name, ds in datasets.items()], ignore_index=True)


def reference_overlap(ngram: int, data_dir: Path = SHARED_DATA_DIR) -> pd.DataFrame | None:
    """Overlap of GSM8K's train questions with MATH-500 and AIME 2024/2025, from the shared real data; None where
    that data is absent."""
    from posttrain.overlap import OverlapIndex

    gsm8k = data_dir / "gsm8k" / "train.jsonl"
    if not gsm8k.is_file():
        return None
    index = OverlapIndex([(n, p.id, p.problem) for n in REFERENCE_BENCHMARKS for p in load_benchmark(n, data_dir)],
                         ngram=ngram)
    return index.scan(read_gsm8k_questions(gsm8k), "gsm8k_train")


# ---------------------------------------------------------------------------------------------- figures


def plot_histograms(values: Mapping[str, list[float]], path_stem: str | Path, xlabel: str,
                    cut: float | None = None, cut_label: str = "max_length"):
    """One histogram panel per named series (three to a row), an optional vertical cut line; saved as PNG and PDF
    at `path_stem` and returned (a notebook shows it by returning it)."""
    from posttrain.figstyle import figure_style, new_figure, save_figure

    ncols = min(3, len(values))
    fig, axes = new_figure(-(-len(values) // ncols), ncols, panel=(3.4, 2.6))
    with figure_style():
        for ax, (name, vals) in zip(axes.flat, values.items()):
            ax.hist(vals, bins=40, color="tab:blue", alpha=0.8)
            if cut is not None:
                over = float(np.mean(np.asarray(vals) > cut)) if len(vals) else 0.0
                ax.axvline(cut, color="tab:red", linestyle="--", label=f"{cut_label} {cut:g} ({100 * over:.1f}% over)")
                ax.legend(fontsize=8)
            ax.set_title(f"{name} (n={len(vals)})")
            ax.set_xlabel(xlabel)
        for ax in list(axes.flat)[len(values):]:
            ax.set_visible(False)
    stem = Path(path_stem)
    save_figure(fig, stem.parent, stem.name)
    return fig
