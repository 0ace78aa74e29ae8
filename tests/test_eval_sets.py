"""Benchmark registry and loaders: the real files in ../shared/data, an LCB-format fixture, prompt rendering.

Run: .venv/bin/python -m pytest tests/test_eval_sets.py -q
"""
import base64
import json
import pickle
import zlib
from pathlib import Path

import pytest

from posttrain.eval_sets import (ASSERTS_PASSED, BENCHMARKS, SHARED_DATA_DIR, BenchmarkSpec, Problem,
                                 decode_lcb_tests, encode_lcb_tests, grading_item, load_benchmark, prompt_messages,
                                 render_prompt)

FIXTURES = Path(__file__).parent / "fixtures"
shared = pytest.mark.skipif(not SHARED_DATA_DIR.is_dir(), reason="../shared/data not present")


@shared
@pytest.mark.parametrize("name,count,first_id,first_answer", [
    ("math500", 500, "test/precalculus/807.json", r"\left( 3, \frac{\pi}{2} \right)"),
    ("aime24", 30, "aime_2024_I/1", "204"),
    ("aime25", 30, "aime_2025_I/1", "70"),
    ("hmmt_feb25", 30, "hmmt_feb_2025/1", "103"),
    ("gsm8k", 1319, "gsm8k/0", "18"),
])
def test_math_benchmarks_load_from_shared_data(name, count, first_id, first_answer):
    problems = load_benchmark(name, SHARED_DATA_DIR)
    assert len(problems) == count and problems.ungradable == []
    assert (problems[0].id, problems[0].answer) == (first_id, first_answer)
    assert all(p.domain == "math" and p.problem and p.answer for p in problems)
    assert len({p.id for p in problems}) == count


@shared
def test_gsm8k_answer_is_the_final_number_without_commas():
    answers = [p.answer for p in load_benchmark("gsm8k", SHARED_DATA_DIR)]
    assert "70000" in answers[:3] and all("#" not in a and "," not in a for a in answers)


@shared
def test_limit_keeps_the_first_problems():
    assert [p.id for p in load_benchmark("aime25", SHARED_DATA_DIR, limit=2)] == ["aime_2025_I/1", "aime_2025_I/2"]


def test_hmmt_nov25_offline_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="hmmt_nov25.*MathArena/hmmt_nov_2025"):
        load_benchmark("hmmt_nov25", SHARED_DATA_DIR)


def test_unknown_benchmark_names_the_known_ones():
    with pytest.raises(KeyError, match="math500"):
        load_benchmark("math5000", SHARED_DATA_DIR)


def test_missing_local_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="mini_math_test.jsonl"):
        load_benchmark("mini_math", tmp_path)


def test_lcb_windows_select_by_contest_date_and_decode_private_tests():
    v5 = load_benchmark("lcb_v5", FIXTURES)
    v6 = load_benchmark("lcb_v6", FIXTURES)
    assert [p.id for p in v5] == ["abc370_a", "3500"]  # 2023 and 2025-03 rows are outside v5's window
    assert [p.id for p in v6] == ["abc370_a", "3500", "abc395_b"]
    stdin_problem, functional = v5
    assert stdin_problem.tests == [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"},
                                   {"input": "5 7\n", "output": "12\n", "testtype": "stdin"},
                                   {"input": "0 0\n", "output": "0\n", "testtype": "stdin"}]
    assert stdin_problem.fn_name is None and stdin_problem.starter_code == ""
    assert functional.fn_name == "sumList" and functional.starter_code.startswith("class Solution")
    assert [t["testtype"] for t in functional.tests] == ["functional", "functional"]
    assert v6[2].tests[1] == {"input": "9\n", "output": "9 9\n", "testtype": "stdin"}  # plain-JSON private tests


def test_lcb_ungradable_rows_are_reported_not_dropped():
    reasons = {u["id"]: u["reason"] for u in load_benchmark("lcb_v5", FIXTURES).ungradable}
    assert reasons == {"abc380_c": "no test cases", "3600": "functional tests but no metadata.func_name"}


def test_private_test_encoding_round_trips():
    tests = [{"input": "1\n", "output": "2\n", "testtype": "stdin"}]
    assert decode_lcb_tests(encode_lcb_tests(tests)) == tests
    assert decode_lcb_tests(json.dumps(tests)) == tests and decode_lcb_tests("") == []


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_private_tests_refuse_pickled_objects():
    blob = base64.b64encode(zlib.compress(pickle.dumps(_Evil()))).decode()
    with pytest.raises(ValueError, match="refusing to load"):
        decode_lcb_tests(blob, where="row 0")


def test_mini_benchmarks_read_the_miniature_files(tmp_path):
    (tmp_path / "mini_math_test.jsonl").write_text(
        json.dumps({"unique_id": "m0", "problem": "1+1?", "answer": "2"}) + "\n" +
        json.dumps({"unique_id": "m1", "problem": "no answer", "answer": ""}) + "\n")
    fixture = (FIXTURES / "livecodebench/code_generation_lite/test6.jsonl").read_text()
    (tmp_path / "mini_code_test.jsonl").write_text(fixture)
    math = load_benchmark("mini_math", tmp_path)
    assert [(p.id, p.answer) for p in math] == [("m0", "2")]
    assert math.ungradable == [{"row": 1, "id": "m1", "reason": "no answer"}]
    code = load_benchmark("mini_code", tmp_path)  # no date window: every gradable row
    assert [p.id for p in code] == ["abc370_a", "3500", "abc395_b", "abc300_a"] and len(code.ungradable) == 2


@shared
def test_humaneval_and_mbpp_become_assert_programs():
    he = load_benchmark("humaneval", SHARED_DATA_DIR)[0]
    assert he.fn_name == "has_close_elements" and he.test_program.rstrip().endswith("check(has_close_elements)")
    mbpp = load_benchmark("mbpp", SHARED_DATA_DIR)
    assert len(mbpp) == 974 and "assert min_cost" in mbpp[0].test_program and "assert min_cost" in mbpp[0].problem


def test_grading_item_passes_the_raw_response_and_the_asserts_apart():
    response = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    item = grading_item(Problem("t", "mbpp", "code", "add", test_program="assert add(1, 2) == 3\n"), response)
    assert item["response"] == response  # the grader extracts the program, by its semantics
    assert item["tests"] == [{"input": "", "output": ASSERTS_PASSED, "testtype": "stdin"}]
    assert item["test_program"].startswith("assert add(1, 2) == 3") and ASSERTS_PASSED in item["test_program"]
    lcb = grading_item(Problem("c", "mini_code", "code", "sum", tests=[{"input": "1\n", "output": "1\n",
                                                                         "testtype": "stdin"}]), response)
    assert lcb["response"] == response and "test_program" not in lcb


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_assert_programs_grade_through_the_code_grader(semantics):
    from posttrain.grading.code import grade_code_batch
    problem = Problem("t", "mbpp", "code", "add", test_program="assert add(1, 2) == 3\nassert add(0, 0) == 0\n")
    right = "Sure.\n```python\ndef add(a, b):\n    return a + b\n```"
    wrong = "```python\ndef add(a, b):\n    return a - b\n```"
    verdicts = grade_code_batch([grading_item(problem, r) for r in (right, wrong, "no code")], 6.0, num_workers=2,
                                semantics=semantics)
    assert [v.correct for v in verdicts] == [True, False, False]
    assert verdicts[2].status == "no_code"


def test_every_spec_has_a_source_and_a_grader():
    for spec in BENCHMARKS.values():
        assert spec.local_path or spec.hub_id, spec.name
        assert spec.grader == ("math" if spec.domain == "math" else "code"), spec.name
        assert spec.grader_label in ("math", "code:lcb", "code:strict"), spec.name
    assert BENCHMARKS["lcb_v5"].grader_label == BENCHMARKS["mini_code"].grader_label == "code:lcb"
    assert all(BENCHMARKS[b].stands_in_for for b in ("mini_math", "mini_math_competition", "mini_code"))
    with pytest.raises(ValueError, match="'x'.*needs semantics"):
        BenchmarkSpec("x", "code", "lcb", "x.jsonl", grader="code")


def test_unreadable_benchmark_line_is_named(tmp_path):
    (tmp_path / "mini_math_test.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n{"problem": \n')
    with pytest.raises(ValueError, match="mini_math_test.jsonl:2: not valid JSON"):
        load_benchmark("mini_math", tmp_path)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from fixtures.tiny_model import build_tiny_model
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def test_prompts_render_through_the_chat_template(tokenizer):
    math = Problem("m", "mini_math", "math", "What is 1+1?", answer="2")
    text = render_prompt(math, tokenizer)
    assert text.startswith("<|im_start|>user\nWhat is 1+1?\nPlease reason step by step")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    stdin_p, fn_p = load_benchmark("lcb_v5", FIXTURES)
    assert "Read the inputs from stdin" in render_prompt(stdin_p, tokenizer)
    with_starter = render_prompt(fn_p, tokenizer)
    assert "following starter code" in with_starter and "def sumList" in with_starter
    assert prompt_messages(fn_p)[0]["role"] == "user"


def test_tokenizer_without_chat_template_is_refused(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        render_prompt(Problem("m", "x", "math", "q", answer="1"), tokenizer)
