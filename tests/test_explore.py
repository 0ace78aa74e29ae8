"""posttrain.explore: what notebooks/00_explore_data computes — tokenizer choice, benchmark loading that names what
is unavailable, GSM8K rows, answer types, LiveCodeBench windows.

Run: .venv/bin/python -m pytest tests/test_explore.py -x -q   (CPU, no network, seconds)
"""
import json

import pandas as pd
import pytest
from pathlib import Path

from posttrain import explore
from posttrain.params import REPO_ROOT, load_study

SHARED = REPO_ROOT.parent / "shared" / "data"


def _mini_study(run_dir):
    return load_study(REPO_ROOT / "params" / "smoke.yaml", str(run_dir))


def test_tokenizer_of_the_miniature_is_its_setup(tmp_path):
    study = _mini_study(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no miniature set-up in .*--only mini_setup"):
        explore.tokenizer_path(study)  # the set-up stage has not run: say how to run it, build nothing
    marker = tmp_path / "setup" / "setup.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert explore.tokenizer_path(study) == str(tmp_path / "setup" / "tokenizer")


def test_tokenizer_of_a_hub_study_is_the_first_sft_runs():
    study = load_study(REPO_ROOT / "params" / "paper" / "study.yaml", "/tmp/paper")
    assert explore.tokenizer_path(study) == "Qwen/Qwen2.5-1.5B"
    with pytest.raises(ValueError, match="neither `setup` nor `sft`"):
        explore.tokenizer_path(study.model_copy(update={"sft": []}))


def test_explored_benchmarks_default_to_the_evaluated_ones(tmp_path):
    study = _mini_study(tmp_path)
    assert explore.explored_benchmarks(study) == ["mini_math", "mini_math_competition", "mini_knowledge_probe",
                                                  "mini_knowledge_seen", "mini_code", "mini_code_competition"]
    chosen = study.model_copy(update={"explore": study.explore.model_copy(update={"benchmarks": ["mini_code"]})})
    assert explore.explored_benchmarks(chosen) == ["mini_code"]


def _mini_math_file(data_dir, rows):
    (data_dir / "mini_math_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_load_benchmarks_names_the_unavailable_and_keeps_the_rest(tmp_path):
    _mini_math_file(tmp_path, [{"unique_id": "a", "problem": "1+1?", "answer": "2"},
                               {"unique_id": "b", "problem": "Half of 1?", "answer": "\\frac{1}{2}"}])
    problems, unavailable = explore.load_benchmarks(["mini_math", "math500", "hmmt_nov25"], tmp_path)
    assert list(problems) == ["mini_math"] and len(problems["mini_math"]) == 2
    assert set(unavailable) == {"math500", "hmmt_nov25"}
    assert unavailable["math500"].startswith("FileNotFoundError: benchmark 'math500': local file not found")
    assert "no offline copy" in unavailable["hmmt_nov25"]
    table = explore.benchmark_table(problems)
    assert table.loc["mini_math", "problems"] == 2 and table.loc["mini_math", "domain"] == "math"
    types = explore.answer_type_table(problems)
    assert types.loc["mini_math", "integer"] == 1 and types.loc["mini_math", "fraction"] == 1


def test_load_benchmarks_lets_bugs_through(tmp_path):
    with pytest.raises(KeyError, match="unknown benchmark 'mini_maht'"):  # a typo in the params is no "unavailable"
        explore.load_benchmarks(["mini_maht"], tmp_path)
    (tmp_path / "mini_math_test.jsonl").write_text('{"unique_id": "a", "problem": \n')
    with pytest.raises(ValueError, match="not valid JSON"):
        explore.load_benchmarks(["mini_math"], tmp_path)


def test_answer_type_table_without_math_is_none():
    assert explore.answer_type_table({}) is None


def test_read_gsm8k_questions_streams_and_names_a_bad_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "q1", "answer": "1"}\n\n{"question": "q2"}\n')
    assert list(explore.read_gsm8k_questions(path)) == ["q1", "q2"]
    path.write_text('{"question": "q1"}\n{"prompt": "q2"}\n')
    with pytest.raises(ValueError, match=r"train\.jsonl:2: not a GSM8K row with a `question` \(KeyError"):
        list(explore.read_gsm8k_questions(path))


def test_reference_overlap_absent_data_is_none(tmp_path):
    assert explore.reference_overlap(13, tmp_path) is None


@pytest.mark.skipif(not (SHARED / "gsm8k" / "train.jsonl").is_file(), reason="shared data not present")
def test_reference_overlap_on_the_shared_data():
    per = explore.reference_overlap(13)
    assert set(per["benchmark"]) == {"math500", "aime24", "aime25"} and (per["source"] == "gsm8k_train").all()
    assert (per["max_containment"] < 0.5).all()  # GSM8K's questions do not leak MATH-500/AIME problems


def test_study_sft_sources_one_per_dataset(tmp_path):
    study = _mini_study(tmp_path)
    sources = explore.study_sft_sources(study)
    assert list(sources) == ["math:messages_jsonl", "code:messages_jsonl"]
    assert sources["math:messages_jsonl"].path == str(tmp_path / "setup" / "data" / "math_train.jsonl")


@pytest.mark.parametrize("answer,kind", [
    ("42", "integer"), ("-7", "integer"), ("1,000", "integer"), ("$\\boxed{12}$", "integer"), ("90^\\circ", "integer"),
    ("0.25", "decimal"), ("\\frac{3}{4}", "fraction"), ("-\\dfrac{1}{2}", "fraction"), ("5/8", "fraction"),
    ("(1, 2)", "tuple"), ("[0, 1)", "interval"), ("(-\\infty, 0] \\cup [1, \\infty)", "interval"),
    ("2, 3, 5", "list"), ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "matrix"), ("\\text{Evelyn}", "text"),
    ("odd", "text"), ("2\\sqrt{3}", "expression"), ("x^2 + 1", "expression"), ("\\pi/4", "expression"), ("", "empty"),
])
def test_classify_answer(answer, kind):
    assert explore.classify_answer(answer) == kind


def test_lcb_windows_counts():
    problems = pd.DataFrame({"contest_date_est": ["2024-07-31", "2024-08-01", "2025-01-15", "2025-04-01"],
                             "difficulty": ["easy", "hard", "easy", "medium"]})
    table = explore.lcb_windows(problems, {"v5": ("2024-08-01", "2025-02-01"), "v6": ("2024-08-01", "2025-05-01")})
    assert table.loc["v5", "total"] == 2 and table.loc["v6", "medium"] == 1 and table.loc["v5", "easy"] == 1
    with pytest.raises(ValueError, match="need columns contest_date"):
        explore.lcb_windows(problems.drop(columns="difficulty"), {"v5": ("2024-08-01", "2025-02-01")})


def test_plot_histograms_writes_png_and_pdf(tmp_path):
    fig = explore.plot_histograms({"a": [1, 2, 3], "b": [5, 6]}, tmp_path / "h", "tokens", cut=2.5)
    paths = [tmp_path / "h.png", tmp_path / "h.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2


def test_many_histograms_wrap_to_rows_a_page_can_show():
    """Six series were once one 24-inch row, squeezed to 993x120 px in JupyterLab: three panels to a row now."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        fig = explore.plot_histograms({str(i): [1, 2, 3] for i in range(6)}, Path(d) / "h", "tokens")
    width, height = fig.get_size_inches()
    assert width <= 10 and height >= 0.5 * width


def test_sft_sources_table_shows_repo_relative_paths():
    study = _mini_study(REPO_ROOT / "runs" / "x")
    sources = explore.study_sft_sources(study)
    table = explore.sft_sources_table(sources, {name: [{}] * 3 for name in sources})
    assert table.loc["math:messages_jsonl", "path"] == "runs/x/setup/data/math_train.jsonl"
    assert (table["rows"] == 3).all()


def test_sft_overlap_finds_a_benchmark_problem_copied_into_sft_data():
    from posttrain.eval_sets import Problem
    text = "A train leaves the station at noon and travels sixty miles per hour for three hours; how far does it go"
    problems = {"mini_math": [Problem(id="p1", benchmark="mini_math", domain="math", problem=text, answer="180")]}
    rows = [{"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "180"}]},
            {"messages": [{"role": "user", "content": "Compute 1 + 1."}, {"role": "assistant", "content": "2"}]}]
    overlap = explore.sft_overlap(problems, {"sft": rows}, ngram=8, max_rows=None)
    assert set(overlap["source"]) == {"sft"}
    assert overlap["max_containment"].max() == pytest.approx(1.0)
