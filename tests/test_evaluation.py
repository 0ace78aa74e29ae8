"""Evaluation: planning over checkpoints, resumable records, grading + scoring into results.csv, end to end on a
tiny model (HF in-process; vLLM in its worker, marked slow).

Run: .venv/bin/python -m pytest tests/test_evaluation.py -q   (add -m "not slow" to skip vLLM)
"""
import importlib.util
import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest

import posttrain.generation as generation
from posttrain.eval_sets import encode_lcb_tests
from posttrain.evaluation import (PENDING, EvalJob, competition_average, plan_overview, results_overview, generate_job, generation_hash, grade_job,
                                  graded_examples, load_problems, plan_evaluations, run_evaluation, score_job)
from posttrain.params import StudyParams
from posttrain.records import RESULT_COLUMNS, Record, read_records, write_records

def _graders_available() -> bool:
    try:
        import posttrain.grading.code  # noqa: F401
        import posttrain.grading.math  # noqa: F401
        return True
    except ImportError:
        return False


needs_graders = pytest.mark.skipif(not _graders_available(), reason="posttrain.grading not available yet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fixtures.tiny_model import build_tiny_model
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def _sft_run(name, arm, domain, output_dir):
    return {"name": name, "arm": arm, "size": "mini", "domain": domain, "output_dir": str(output_dir),
            "model": {"name_or_path": "unused", "init": "scratch"}, "data": {"source": "messages_jsonl"},
            "training": {"stage": "sft", "max_steps": 10, "use_cpu": True}}


def _study(run_dir, data_dir, sft=(), base_model=None, **evaluate):
    ev = {"benchmarks": {"math": ["mini_math"], "code": ["mini_code"]}, "data_dir": str(data_dir),
          "base_model": str(base_model) if base_model else None, "engine": "hf",
          "sampling": {"n": 2, "temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 0}, **evaluate}
    return StudyParams.model_validate({"name": "t", "run_dir": str(run_dir), "sft": list(sft), "evaluate": ev})


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    with open(d / "mini_math_test.jsonl", "w") as f:
        for i in range(4):
            f.write(json.dumps({"unique_id": f"m{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n")
    tests = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    with open(d / "mini_code_test.jsonl", "w") as f:
        for i in range(3):
            f.write(json.dumps({"question_id": f"c{i}", "question_content": "Print the sum of two integers.",
                                "contest_date": "2025-01-01T00:00:00", "starter_code": "",
                                "public_test_cases": json.dumps(tests), "private_test_cases": encode_lcb_tests(tests),
                                "metadata": "{}"}) + "\n")
    return d


def _checkpoint(tiny, out: Path, step: int, complete: bool = True):
    shutil.copytree(tiny, out / f"checkpoint-{step}")
    if complete:  # the Trainer writes trainer_state.json last: a checkpoint without it is still being saved
        (out / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")


def test_plan_covers_base_checkpoints_and_cross_domain(tmp_path, tiny, data_dir):
    math_run, code_run = tmp_path / "sft_math", tmp_path / "sft_code"
    for step in (5, 10):
        _checkpoint(tiny, math_run, step)
    _checkpoint(tiny, code_run, 7)
    _checkpoint(tiny, code_run, 9, complete=False)  # being saved: not evaluated
    study = _study(tmp_path / "run", data_dir, base_model=tiny,
                   sft=[_sft_run("math_0pre", "0%-Pre", "math", math_run), _sft_run("code_0pre", "0%-Pre", "code",
                                                                                       code_run)])
    got = [(j.model, j.arm, j.checkpoint, j.step, j.benchmarks) for j in plan_evaluations(study)]
    assert got == [("base", "Base", "final", 0, ["mini_math", "mini_code"]),  # no training output: step 0
                   ("math_0pre", "0%-Pre", "checkpoint-5", 5, ["mini_math"]),  # curve: in-domain only
                   ("math_0pre", "0%-Pre", "checkpoint-10", 10, ["mini_math", "mini_code"]),  # final: + cross
                   ("code_0pre", "0%-Pre", "checkpoint-7", 7, ["mini_code", "mini_math"])]
    no_cross = _study(tmp_path / "run", data_dir, sft=[_sft_run("m", "0%-Pre", "math", math_run)],
                      cross_domain=False, checkpoints="final")
    assert [(j.checkpoint, j.benchmarks) for j in plan_evaluations(no_cross)] == [("checkpoint-10", ["mini_math"])]
    # the miniature's way: cross-domain on a listed subset, curves on the run's own domain's curve benchmarks
    listed = _study(tmp_path / "run", data_dir, sft=[_sft_run("m", "0%-Pre", "math", math_run)],
                    benchmarks={"math": ["mini_math", "mini_knowledge_probe"], "code": ["mini_code",
                                                                                         "mini_code_competition"]},
                    cross_domain=["mini_code", "mini_math"], curve_benchmarks=["mini_knowledge_probe", "mini_code"])
    assert [(j.checkpoint, j.benchmarks) for j in plan_evaluations(listed)] == [
        ("checkpoint-5", ["mini_knowledge_probe"]),
        ("checkpoint-10", ["mini_math", "mini_knowledge_probe", "mini_code"])]
    with pytest.raises(KeyError, match="mini_cod"):
        plan_evaluations(_study(tmp_path / "run", data_dir, sft=[_sft_run("m", "0%-Pre", "math", math_run)],
                                cross_domain=["mini_cod"]))


def test_plan_skips_untrained_runs_by_name_and_rejects_unknown_benchmarks(tmp_path, data_dir, caplog):
    # a half-finished study evaluates what exists; the run left out is named in a warning
    study = _study(tmp_path / "run", data_dir, sft=[_sft_run("math_0pre", "0%-Pre", "math", tmp_path / "nope")])
    with caplog.at_level("WARNING", logger="posttrain.evaluation"):
        assert plan_evaluations(study) == []
    assert "math_0pre" in caplog.text and "does not exist" in caplog.text
    with pytest.raises(KeyError, match="mini_mth"):
        plan_evaluations(_study(tmp_path / "run", data_dir, benchmarks={"math": ["mini_mth"]}))


@pytest.fixture
def spy_generate(monkeypatch):
    """Wraps posttrain.generation.generate, recording which problem ids each call was asked to generate."""
    calls = []
    real = generation.generate

    def spy(reqs, *args, **kwargs):
        for req in reqs if isinstance(reqs, list) else [reqs]:
            calls.append(sorted(p["key"]["problem_id"] for p in req.prompts))
        return real(reqs, *args, **kwargs)
    monkeypatch.setattr(generation, "generate", spy)
    return calls


def test_resume_generates_only_missing_problems(tmp_path, tiny, data_dir, spy_generate):
    study = _study(tmp_path / "run", data_dir, base_model=tiny)
    (job,) = plan_evaluations(study)
    problems = load_problems(job.benchmarks, study.evaluate)
    ckpt = tmp_path / "run" / "eval" / "base" / "final"
    assert generate_job(job, problems, study.evaluate, ckpt, progress=False) == 7
    math_file = ckpt / "mini_math.jsonl"
    full = read_records(math_file)
    assert [r.problem_id for r in full] == ["m0", "m1", "m2", "m3"]
    # Simulate a kill: m2 was generated but still sits in a worker's shard file, m3 was never generated,
    # and the last line of the record file was cut mid-write.
    (ckpt / PENDING).mkdir(exist_ok=True)
    (ckpt / PENDING / "gen.shard0.jsonl").write_text(json.dumps({
        "key": {k: getattr(full[2], k) for k in ("benchmark", "problem_id", "params_hash", "prompt")},
        **{k: getattr(full[2], k) for k in ("responses", "finish_reasons", "num_tokens")}}) + "\n")
    math_file.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in full[:2]) + '{"problem_id": "m3", "resp')
    assert generate_job(job, problems, study.evaluate, ckpt, progress=False) == 1
    assert spy_generate == [["c0", "c1", "c2", "m0", "m1", "m2", "m3"], ["m3"]]
    again = {r.problem_id: r for r in read_records(math_file)}
    assert sorted(again) == ["m0", "m1", "m2", "m3"]
    assert [again[p].responses for p in ("m0", "m1", "m2")] == [r.responses for r in full[:3]]
    assert generate_job(job, problems, study.evaluate, ckpt, progress=False) == 0  # nothing left: no engine


def test_changed_sampling_params_regenerate(tmp_path, tiny, data_dir, spy_generate):
    study = _study(tmp_path / "run", data_dir, base_model=tiny, benchmarks={"math": ["mini_math"]}, limit=2)
    (job,) = plan_evaluations(study)
    ckpt = tmp_path / "run" / "eval" / "base" / "final"
    generate_job(job, load_problems(job.benchmarks, study.evaluate), study.evaluate, ckpt, progress=False)
    changed = _study(tmp_path / "run", data_dir, base_model=tiny, benchmarks={"math": ["mini_math"]}, limit=3,
                     sampling={"n": 2, "temperature": 1.0, "top_p": 1.0, "max_tokens": 6, "seed": 0})
    assert generation_hash(changed.evaluate, "mini_math") != generation_hash(study.evaluate, "mini_math")
    generate_job(job, load_problems(job.benchmarks, changed.evaluate), changed.evaluate, ckpt, progress=False)
    assert spy_generate == [["m0", "m1"], ["m0", "m1", "m2"]]
    rows = read_records(ckpt / "mini_math.jsonl")
    assert len(rows) == 3 and {r.params_hash for r in rows} == {generation_hash(changed.evaluate, "mini_math")}


def test_score_job_from_records(tmp_path, tiny, data_dir):
    study = _study(tmp_path / "run", data_dir, base_model=tiny, benchmarks={"math": ["mini_math"]},
                   sampling={"n": 5, "temperature": 1.0, "top_p": 1.0, "max_tokens": 8, "seed": 0})
    (job,) = plan_evaluations(study)
    problems = load_problems(job.benchmarks, study.evaluate)
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    h = generation_hash(study.evaluate, "mini_math")
    correct = [[True] * 5, [True, False, False, False, False], [False] * 5, [False] * 5]
    with open(ckpt / "mini_math.jsonl", "w") as f:
        for i, c in enumerate(correct):
            f.write(json.dumps({"problem_id": f"m{i}", "benchmark": "mini_math", "prompt": "", "responses": [""] * 5,
                                "finish_reasons": ["stop"] * 4 + ["length"], "num_tokens": [1] * 5,
                                "correct": c, "statuses": ["ok"] * 5, "params_hash": h}) + "\n")
    (row,) = score_job(job, problems, study.evaluate, ckpt, run_dir=tmp_path)
    assert row["pass@1"] == pytest.approx((1 + 0.2) / 4) and row["pass@5"] == pytest.approx(2 / 4)
    assert row["records"] == "ck/mini_math.jsonl" and row["grader"] == "math" and row["path"] == job.path
    assert row["pass@1_lo"] <= row["pass@1"] <= row["pass@1_hi"]
    assert row["truncation_rate"] == pytest.approx(0.2) and row["num_problems"] == 4 and row["n"] == 5


def test_competition_average():
    rows = pd.DataFrame([{"model": "m", "arm": "Base", "size": "1.5B", "train_domain": None, "step": None,
                          "benchmark": b, "pass@1": v, "pass@5": v} for b, v in
                         [("aime24", 0.1), ("aime25", 0.3), ("math500", 0.9)]])
    (avg,) = competition_average(rows).to_dict("records")
    assert avg["pass@1"] == pytest.approx(0.2) and avg["benchmarks"] == "aime24,aime25"


def _check_results(run_dir, table):
    on_disk = pd.read_csv(Path(run_dir) / "eval" / "results.csv")
    assert list(on_disk.columns) == RESULT_COLUMNS and len(on_disk) == len(table) == 2
    for _, row in on_disk.iterrows():
        assert 0 <= row["pass@1"] <= 1 and row["pass@1_lo"] <= row["pass@1"] <= row["pass@1_hi"]
        assert math.isnan(row["pass@5"])  # n = 2 < 5
        assert 0 <= row["truncation_rate"] <= 1 and row["arm"] == "Base"
        assert row["step"] == 0  # a plain model dir (no training step): 0, never empty (the report requires a step)
    assert dict(zip(on_disk["benchmark"], on_disk["num_problems"])) == {"mini_math": 4, "mini_code": 3}
    assert list(on_disk["records"]) == ["eval/base/final/mini_math.jsonl", "eval/base/final/mini_code.jsonl"]
    assert list(on_disk["grader"]) == ["math", "code:lcb"]
    for bench in ("mini_math", "mini_code"):
        records = read_records(Path(run_dir) / "eval" / "base" / "final" / f"{bench}.jsonl")
        assert records and all(r.grader == on_disk.set_index("benchmark").loc[bench, "grader"] for r in records)
        for r in records:
            assert len(r.correct) == len(r.statuses) == 2
            assert all(s == "truncated" for s, f in zip(r.statuses, r.finish_reasons) if f == "length")
            assert not any(c for c, f in zip(r.correct, r.finish_reasons) if f == "length")


@needs_graders
def test_end_to_end_hf(tmp_path, tiny, data_dir):
    study = _study(tmp_path / "run", data_dir, base_model=tiny)
    table = run_evaluation(study, progress=False)
    _check_results(tmp_path / "run", table)
    assert graded_examples(tmp_path / "run", "base", "final", "mini_math", k=2)[0]["problem_id"] == "m0"


@pytest.mark.slow
@needs_graders
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed")
def test_end_to_end_vllm(tmp_path, tiny, data_dir):
    study = _study(tmp_path / "run", data_dir, base_model=tiny, engine="vllm")
    _check_results(tmp_path / "run", run_evaluation(study, progress=False))


def test_grade_job_passes_raw_responses_and_semantics_and_regrades_other_graders(tmp_path, data_dir, monkeypatch):
    """Graders are faked: this checks the wiring (which samples, which semantics, verdicts written back)."""
    import posttrain.grading.code as code_grader
    import posttrain.grading.math as math_grader
    from posttrain.grading.verdict import Verdict
    calls = {}

    def fake_code(items, timeout_s, num_workers=None, progress=False, semantics="lcb"):
        calls.setdefault("code", []).append((semantics, [i["response"] for i in items]))
        return [Verdict("print" in i["response"], "passed" if "print" in i["response"] else "wrong_answer")
                for i in items]

    def fake_math(pairs, timeout_s, num_workers=None, progress=False):
        calls.setdefault("math", []).append(pairs)
        return [Verdict(resp == gold, "correct" if resp == gold else "wrong") for resp, gold in pairs]
    monkeypatch.setattr(code_grader, "grade_code_batch", fake_code)
    monkeypatch.setattr(math_grader, "grade_math_batch", fake_math)
    study = _study(tmp_path / "run", data_dir, limit=1)
    params = study.evaluate
    from posttrain.evaluation import EvalJob
    job = EvalJob("m", "0%-Pre", "mini", "math", "final", 0, "w", "t", ["mini_math", "mini_code"])
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    code_response = "Here:\n```python\nprint(3)\n```"
    write_records(ckpt / "mini_math.jsonl", [Record("m0", "mini_math", "p", ["1", "2"], ["stop", "length"], [1, 1],
                                                    generation_hash(params, "mini_math"))])
    write_records(ckpt / "mini_code.jsonl", [Record("c0", "mini_code", "p", [code_response, "no"], ["stop", "stop"],
                                                    [1, 1], generation_hash(params, "mini_code"),
                                                    correct=[False, False], statuses=["x", "x"],
                                                    grader="code:strict")])
    problems = load_problems(job.benchmarks, params)
    assert grade_job(job, problems, params, ckpt, progress=False) == 3  # the truncated math sample is not graded
    assert calls["code"] == [("lcb", [code_response, "no"])]  # raw responses; graded again: it was code:strict
    assert calls["math"] == [[("1", "1")]]
    (m,), (c,) = read_records(ckpt / "mini_math.jsonl"), read_records(ckpt / "mini_code.jsonl")
    assert (m.correct, m.statuses, m.grader) == ([True, False], ["correct", "truncated"], "math")
    assert (c.correct, c.statuses, c.grader) == ([True, False], ["passed", "wrong_answer"], "code:lcb")
    assert grade_job(job, problems, params, ckpt, progress=False) == 0  # graded by the right grader: kept


def test_records_round_trip_and_bad_lines(tmp_path):
    from posttrain.records import read_jsonl, records_reference
    path = tmp_path / "eval" / "m" / "final" / "b.jsonl"
    path.parent.mkdir(parents=True)
    recs = [Record("p1", "b", "q", ["a", "b"], ["stop", "length"], [3, 9], "h", [True, False], ["correct",
                                                                                               "truncated"], "math"),
            Record("p2", "b", "q", ["c"], ["stop"], [2], "h")]
    write_records(path, recs)
    assert read_records(path) == recs and not read_records(path)[1].graded
    assert "correct" not in path.read_text().splitlines()[1]  # ungraded: no verdict fields at all
    path.write_text(path.read_text() + '{"problem_id": "p3", "resp')  # a kill mid-line
    assert read_records(path) == recs
    with pytest.raises(ValueError, match=r"b.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"problem_id": "p1", "benchmark": "b"}\n')
    with pytest.raises(ValueError, match=r"b.jsonl record 1: record lacks field\(s\) \['prompt'"):
        read_records(path)
    assert records_reference(path, tmp_path) == "eval/m/final/b.jsonl"
    assert records_reference(path, tmp_path / "elsewhere") == str(path)


def test_plan_overview_has_one_row_per_model_and_results_overview_one_column_per_benchmark():
    job = dict(arm="0%-Pre", size="mini", train_domain="math", path="p", tokenizer="t")
    jobs = [EvalJob(model="m", checkpoint="checkpoint-60", step=60, benchmarks=["mini_math"], **job),
            EvalJob(model="m", checkpoint="checkpoint-120", step=120, benchmarks=["mini_math", "mini_code"], **job)]
    (row,) = plan_overview(jobs).to_dict("records")
    assert (row["steps"], row["benchmarks"]) == ("60, 120", "mini_math, mini_code")
    results = pd.DataFrame([{"model": "m", "arm": "0%-Pre", "step": 120, "benchmark": b, "pass@1": v,
                             "pass@1_lo": v / 2, "pass@1_hi": 2 * v} for b, v in (("mini_math", 0.05), ("mini_code", 0.1))])
    table = results_overview(results)
    assert list(table.columns) == ["mini_math", "mini_code"]
    assert table.loc[("m", "0%-Pre", 120), "mini_code"] == "10.0 [5.0, 20.0]"
    earlier = results.assign(step=60, **{"pass@1": 0.0})
    both = pd.concat([earlier, results])
    assert len(results_overview(both)) == 2
    assert list(results_overview(both, final_only=True).index) == [("m", "0%-Pre", 120)]
