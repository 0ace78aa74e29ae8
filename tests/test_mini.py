"""The miniature's inputs: generated tasks are deterministic and correct, splits are disjoint, the setup builds a
loadable tokenizer and tiny Qwen2 config, and the study YAMLs validate.

    .venv/bin/python -m pytest tests/test_mini.py -x -q
"""
import json
import random

import pytest

from posttrain.mini import math_tasks
from posttrain.mini.code_tasks import all_specs, generate_code, is_test_task, lcb_row, render_task
from posttrain.mini.corpus import build_corpus, split_document
from posttrain.mini.math_tasks import check_answer, generate_math
from posttrain.mini.build import (build_mini_setup, build_tasks, require_setup, setup_is_current, setup_paths,
                                  world_spec)
from posttrain.params import REPO_ROOT, MiniSetupParams, load_study

SMALL = MiniSetupParams(seed=1000, num_towns=12, exposures_per_fact=8, arithmetic_docs=100, program_docs=100,
                        story_docs=30, math_train=200, math_test=20, math_competition=20, code_train=200, code_test=20,
                        code_competition=10, knowledge_probe=10, knowledge_seen=10, drill_fraction=0.2,
                        math_numbers="small", vocab_size=600, hidden_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, intermediate_size=128,
                        max_position_embeddings=512)
SETS = {"mini_math": 20, "mini_math_competition": 20, "mini_knowledge_probe": 10, "mini_knowledge_seen": 10,
        "mini_code": 20, "mini_code_competition": 10}


# ---------------------------------------------------------------------------------------------- math


def test_math_deterministic_and_seed_dependent():
    a, b = generate_math(50, 3, (1, 2)), generate_math(50, 3, (1, 2))
    assert a == b
    assert [p.problem for p in generate_math(50, 4, (1, 2))] != [p.problem for p in a]


@pytest.mark.parametrize("levels", [(1,), (2,), (3,)])
def test_math_answers_recomputed_from_the_text(levels):
    problems = generate_math(400, 0, levels)
    assert {p.family for p in problems} == set(math_tasks.FAMILIES)
    bad = [p for p in problems if not check_answer(p)]
    assert not bad, bad[:3]
    assert all(p.solution.endswith(f"\\boxed{{{p.answer}}}.") for p in problems)


def test_check_answer_catches_a_wrong_answer():
    p = generate_math(1, 0, (2,))[0]
    wrong = math_tasks.MathProblem(p.problem, p.solution, p.answer + "1", p.family, p.level)
    assert not check_answer(wrong)


def test_math_solutions_graded_correct_and_wrong_ones_not():
    grading = pytest.importorskip("posttrain.grading.math")
    problems = generate_math(24, 1, (1, 2)) + generate_math(12, 1, (3,))
    for p in problems:
        assert grading.grade_math(p.solution, p.answer), (p.problem, p.solution)
        other = p.solution.replace(f"\\boxed{{{p.answer}}}", "\\boxed{12345}")
        assert not grading.grade_math(other, p.answer)


def test_fraction_answers_format():
    from fractions import Fraction
    assert math_tasks.format_answer(Fraction(-7, 3)) == "-\\frac{7}{3}"
    assert math_tasks.format_answer(Fraction(8, 4)) == "2"


def test_math_exclude_and_bad_levels():
    first = generate_math(30, 0, (1,))
    again = generate_math(30, 0, (1,), exclude={p.problem for p in first})
    assert not {p.problem for p in first} & {p.problem for p in again}
    with pytest.raises(ValueError, match="levels"):
        generate_math(5, 0, (4,))


# ---------------------------------------------------------------------------------------------- code


def test_code_deterministic():
    assert generate_code(40, 0, "train") == generate_code(40, 0, "train")
    assert generate_code(10, 0, "test") == generate_code(10, 0, "test")


def test_code_split_by_task_and_text():
    specs = all_specs()
    held = [s for s in specs if is_test_task(s.key, 0)]
    assert 0.1 < len(held) / len(specs) < 0.3
    train, test = generate_code(400, 0, "train"), generate_code(60, 0, "test")
    assert not {t.key for t in train} & {t.key for t in test}
    assert not {t.question for t in train} & {t.question for t in test}
    assert {t.mode for t in test} == {"stdin", "functional"}


def test_reference_outputs_follow_the_statement():
    spec = next(s for s in all_specs() if s.key == "list/above/5/sum/stdin")
    task = render_task(spec, random.Random(0))
    for t in task.tests:
        nums = list(map(int, t["input"].split("\n")[1].split()))
        assert t["output"].strip() == str(sum(x for x in nums if x > 5))


def test_string_inputs_are_lowercase_letters_as_stated():
    tasks = [t for t in generate_code(300, 0, "train") if t.key.startswith("str/")]
    assert tasks
    for t in tasks:
        for test in t.tests:
            text = test["input"].strip() if t.mode == "stdin" else json.loads(test["input"])
            assert text.isalpha() and text.islower(), (t.key, test)


def _one_per_family(split: str, count: int) -> list:
    tasks = generate_code(count, 0, split)
    by_family: dict = {}
    for t in tasks:
        by_family.setdefault((t.key.split("/")[0], t.key.split("/")[1], t.mode), t)
    return list(by_family.values())


@pytest.mark.parametrize("split, count", [("train", 300), ("test", 74)])
def test_reference_programs_pass_their_tests_in_the_sandbox(split, count):
    grading = pytest.importorskip("posttrain.grading.code")
    sample = _one_per_family(split, count)
    assert len(sample) >= 10
    items = [{"response": t.solution, "tests": t.tests, "fn_name": t.func_name} for t in sample]
    verdicts = grading.grade_code_batch(items)
    failed = [(t.key, v) for t, v in zip(sample, verdicts) if not v.correct]
    assert not failed, failed[:3]


def test_a_wrong_program_fails_in_the_sandbox():
    grading = pytest.importorskip("posttrain.grading.code")
    task = next(t for t in generate_code(50, 0, "train") if t.key.startswith("list/") and "/sum/" in t.key)
    wrong = task.solution.replace("sum(vals)", "sum(vals) + 1")
    assert not grading.grade_code(wrong, task.tests, task.func_name)


def test_lcb_row_schema():
    task = next(t for t in generate_code(30, 0, "test") if t.mode == "functional")
    row = lcb_row(task, 7)
    assert row["question_id"] == "mini_code_0007" and row["platform"] == "mini"
    assert json.loads(row["metadata"]) == {"func_name": task.func_name}
    tests = json.loads(row["public_test_cases"]) + json.loads(row["private_test_cases"])
    assert tests == task.tests and all(t["testtype"] == "functional" for t in tests)
    assert row["starter_code"].startswith("class Solution:\n    def ")
    stdin = next(t for t in generate_code(30, 0, "test") if t.mode == "stdin")
    assert lcb_row(stdin, 0)["starter_code"] == "" and lcb_row(stdin, 0)["metadata"] == "{}"


def test_code_generation_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split"):
        generate_code(5, 0, "dev")


def test_math_generation_reports_when_it_runs_out():
    with pytest.raises(ValueError, match="could only generate"):
        # same seed and levels: the first 50 tries repeat the excluded problems exactly
        generate_math(50, 0, (1,), exclude={p.problem for p in generate_math(50, 0, (1,))}, max_tries_factor=1)


# ---------------------------------------------------------------------------------------------- corpus


def test_split_document_respects_the_cap():
    text = "".join(f"line {i}\n" for i in range(500)) + "x" * 250 + "\n"
    pieces = list(split_document(text, 100))
    assert all(len(p) <= 100 for p in pieces) and "".join(pieces) == text


def test_corpus_cap_determinism_and_dclm(tmp_path):
    dclm = tmp_path / "dclm"
    dclm.mkdir()
    (dclm / "a.jsonl").write_text("".join(json.dumps({"text": f"web page {i} " * 20}) + "\n" for i in range(50)))
    docs = build_corpus(40_000, seed=0, max_doc_chars=2000, dclm_dir=dclm)
    assert docs == build_corpus(40_000, seed=0, max_doc_chars=2000, dclm_dir=dclm)
    assert 30_000 < sum(map(len, docs)) <= 40_000 and max(map(len, docs)) <= 2000
    assert any(d.startswith("web page") for d in docs) and any("def " in d for d in docs)
    (dclm / "b.jsonl").write_text('{"txt": "no text field"}\n')
    with pytest.raises(ValueError, match="b.jsonl row 0"):
        build_corpus(40_000, dclm_dir=dclm)


# ---------------------------------------------------------------------------------------------- setup


def test_tasks_train_test_disjoint():
    world, corpus, tasks = build_tasks(SMALL)
    train = {p.problem for p in tasks.math_train}
    assert not train & {p.problem for p in tasks.math_test + tasks.math_competition + tasks.knowledge_probe}
    assert {p.level for p in tasks.math_competition} == {3}
    assert not {t.key for t in tasks.code_train} & {t.key for t in tasks.code_test}
    assert sum(p.family == "drill" for p in tasks.math_train) == 40  # drill_fraction 0.2 of 200
    assert not any(p.family == "drill" for p in tasks.math_test) and len(world.towns) == 12 and corpus


def test_setup_params_are_the_world_spec():
    spec = world_spec(SMALL)
    assert (spec.seed, spec.num_towns, spec.drill_fraction, spec.math_numbers) == (1000, 12, 0.2, "small")
    with pytest.raises(ValueError, match="knowledge_fraction \\+ drill_fraction must be <= 1"):
        MiniSetupParams(knowledge_fraction=0.6, drill_fraction=0.5)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("mini")
    return run_dir, build_mini_setup(SMALL, run_dir)


def test_setup_writes_every_file(built):
    run_dir, paths = built
    for key in ("math_train", "code_train", "corpus", "fill_in", *SETS):
        assert sum(1 for _ in open(paths[key])) > 0, key
    world = json.loads(open(paths["world"]).read())
    assert len(world["seen"]) == len(world["held_out"]) == 6 and len(world["facts"]) == 12
    cloze = json.loads(open(paths["fill_in"]).readline())
    assert cloze["prompt"].startswith("The number of ") and cloze["answer"].strip().isdigit()
    row = json.loads(open(paths["math_train"]).readline())
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert "\\boxed{}" in row["messages"][0]["content"]
    code = json.loads(open(paths["code_train"]).readline())["messages"][1]["content"]
    assert "```python\n" in code
    bench = json.loads(open(paths["mini_math"]).readline())
    assert set(bench) >= {"unique_id", "problem", "answer"}


def test_setup_is_idempotent(built, capsys):
    run_dir, paths = built
    before = open(paths["mini_code"]).read()
    build_mini_setup(SMALL, run_dir)
    assert "skipped" in capsys.readouterr().out and open(paths["mini_code"]).read() == before


def test_setup_stage_of_the_pipeline_skips_a_current_build(built, capsys):
    from posttrain.pipeline import STAGES, run_setup_stage
    run_dir, paths = built
    assert STAGES[0] == "mini_setup"  # before every notebook: 00 measures with its tokenizer, 01 trains on its corpus
    study = load_study(REPO_ROOT / "params" / "smoke.yaml", str(run_dir)).model_copy(update={"setup": SMALL})
    assert setup_is_current(SMALL, run_dir) and str(require_setup(run_dir)["tokenizer"]) == paths["tokenizer"]
    assert run_setup_stage(study) is None and "mini_setup: done for these params, skipped" in capsys.readouterr().out
    assert not setup_is_current(SMALL.model_copy(update={"seed": 1}), run_dir)  # other params: rebuilt


def test_setup_cli_refuses_a_study_without_setup(capsys):
    from posttrain.mini.build import main
    assert main([str(REPO_ROOT / "params" / "paper" / "study.yaml"), "--run-dir", "/tmp/none"]) == 1
    assert "no `setup` section" in capsys.readouterr().err


def test_benchmark_files_load_through_posttrain_eval_sets(built):
    benchmarks = pytest.importorskip("posttrain.eval_sets")
    run_dir, paths = built
    for name, size in SETS.items():
        problems = benchmarks.load_benchmark(name, data_dir=paths["data_dir"])
        assert len(problems) == size and not problems.ungradable, name


def test_tokenizer_and_config_load(built):
    from transformers import AutoConfig, AutoTokenizer
    run_dir, paths = built
    config = AutoConfig.from_pretrained(paths["base_config"])
    assert config.model_type == "qwen2" and config.tie_word_embeddings
    assert config.hidden_size // config.num_attention_heads >= 32
    for source in (paths["tokenizer"], paths["base_config"]):
        tok = AutoTokenizer.from_pretrained(source)
        assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
        assert len(tok) <= config.vocab_size
        text = "Solve for x: 12x - 8 = 12.\n    def f(self):  # héllo"
        assert tok.decode(tok(text)["input_ids"]) == text
        assert tok.tokenize("2024") == ["2", "0", "2", "4"]  # digits one by one, as in Qwen2
        messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]
        assert "{% generation %}" in tok.chat_template
        rendered = tok.apply_chat_template(messages, tokenize=False)
        assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n"
        enc = tok.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
        masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
        assert tok.decode(masked) == "ok<|im_end|>"
    # both loaders tokenize identically (AutoTokenizer on a qwen2 config dir rebuilds Qwen2's pre-tokenizer)
    a, b = AutoTokenizer.from_pretrained(paths["tokenizer"]), AutoTokenizer.from_pretrained(paths["base_config"])
    sample = open(paths["code_train"]).readline() + open(paths["corpus"]).readline()
    assert a(sample)["input_ids"] == b(sample)["input_ids"]


def test_setup_paths_match_the_study_yamls():
    for name in ("mini", "smoke", "mini_large"):
        study = load_study(REPO_ROOT / "params" / f"{name}.yaml", "/tmp/run")
        paths = setup_paths(study.run_dir)
        assert study.evaluate.data_dir == str(paths["data_dir"])
        for run in study.pretrain + study.sft:
            assert run.data.path in (str(paths["corpus"]), str(paths["math_train"]), str(paths["code_train"]))


# ---------------------------------------------------------------------------------------------- study YAMLs


@pytest.mark.parametrize("name", ["mini", "smoke", "mini_large"])
def test_study_yaml_validates(name):
    study = load_study(REPO_ROOT / "params" / f"{name}.yaml", f"/tmp/{name}")
    assert study.name == name and study.setup is not None
    arms = {(r.domain, r.arm) for r in study.sft}
    assert arms == {(d, a) for d in ("math", "code") for a in ("0%-Pre", "short-Pre", "100%-Pre")}
    full, short = (next(r for r in study.pretrain if r.name == n) for n in ("pretrain_full", "pretrain_short"))
    assert short.training.max_steps <= 0.1 * full.training.max_steps
    assert short.training.lr_scheduler == "constant_with_warmup"
    # The demo samples 4 per problem (pass@1 only: its time budget); the others 5+ so pass@5 exists.
    assert study.evaluate.sampling.n >= (4 if name == "mini" else 5)
    if name != "smoke":  # the power rule: >= 200 in-domain problems, >= 100 harder / cross-domain
        assert (study.setup.math_test, study.setup.code_test) >= (200, 200)
        assert min(study.setup.math_competition, study.setup.code_competition) >= 100
        assert study.setup.seed == 0  # the final study's world; pilots use seeds >= 1000
    for run in study.pretrain + study.sft:
        t = run.training
        assert t.use_cpu and not t.bf16 and not t.gradient_checkpointing and t.packing
        assert t.tokens_per_step % (t.per_device_batch_size * t.max_length) == 0, run.name
        assert "{run_dir}" not in run.output_dir and run.output_dir.startswith(f"/tmp/{name}/")
