"""The generated world of the new miniature (posttrain.mini.world, design in docs/miniature.md): deterministic by seed,
answers that check out, evaluation items disjoint from SFT and from the pre-training corpus, a corpus that never
holds the SFT format, and a world-sized tokenizer.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_mini_world.py -x -q
"""
import re
from collections import Counter

import pytest

from posttrain.mini import world as W

# A small world with the evaluation sets at their planned sizes (the size rules are what the tests check).
SMALL = W.WorldSpec(seed=0, num_towns=12, exposures_per_fact=20, arithmetic_docs=300, program_docs=300,
                    story_docs=100, math_train=800, code_train=400, math_test=200, math_competition=100,
                    code_test=200, code_competition=100, knowledge_probe=40, knowledge_seen=40, drill_fraction=0.1)


@pytest.fixture(scope="module")
def built():
    world = W.make_world(SMALL)
    return world, W.build_world_corpus(world, SMALL), W.build_world_tasks(world, SMALL)


def eval_math(tasks):
    return tasks.math_test + tasks.math_competition + tasks.knowledge_probe + tasks.knowledge_seen


# ---------------------------------------------------------------------------------------------- world


def test_same_seed_same_world_other_seed_other_world(built):
    world, corpus, tasks = built
    again = W.make_world(SMALL)
    assert again == world
    assert W.build_world_corpus(again, SMALL) == corpus
    assert W.build_world_tasks(again, SMALL).math_test == tasks.math_test
    other = W.WorldSpec(**{**SMALL.__dict__, "seed": 1})
    other_world = W.make_world(other)
    assert [t.name for t in other_world.towns] != [t.name for t in world.towns]
    assert W.build_world_tasks(other_world, other).math_test != tasks.math_test


def test_towns_split_in_two_halves(built):
    world, _, _ = built
    names = {t.name for t in world.towns}
    assert len(names) == SMALL.num_towns
    assert set(world.seen) | set(world.held_out) == names
    assert not set(world.seen) & set(world.held_out)
    assert len(world.seen) == len(world.held_out) == SMALL.num_towns // 2


# ---------------------------------------------------------------------------------------------- sets


def test_set_sizes_meet_the_power_rule(built):
    _, _, tasks = built
    assert len(tasks.math_test) >= 200 and len(tasks.code_test) >= 200
    assert len(tasks.math_competition) >= 100 and len(tasks.code_competition) >= 100
    assert len(tasks.math_train) == SMALL.math_train and len(tasks.code_train) == SMALL.code_train
    assert len(tasks.fill_in) == SMALL.num_towns * len(W.ATTRIBUTES)


def test_math_answers_recomputed_from_the_text(built):
    world, _, tasks = built
    problems = tasks.math_train + eval_math(tasks)
    bad = [p for p in problems if not W.check_math_answer(world, p)]
    assert not bad, bad[:3]
    assert all(p.solution.endswith(f"\\boxed{{{p.answer}}}.") for p in problems)
    assert {p.family for p in tasks.math_test} == set(W.SELF_CONTAINED)
    drills = [p for p in tasks.math_train if p.family == "drill"]
    assert len(drills) == 80 and {p.problem.split()[3] for p in drills if len(p.problem.split()) == 5} >= {"*", "/"}
    assert {p.level for p in tasks.math_test} == {1, 2} and {p.level for p in tasks.math_competition} == {3}


def stated_numbers(problems) -> list[int]:
    return [int(n) for p in problems for n in re.findall(r"\d+", p.problem)]


def test_small_and_tiny_numbers_shrink_levels_1_2_only(built):
    _, _, standard = built
    sets = {"standard": standard}
    for numbers in ("small", "tiny"):
        spec = W.WorldSpec(**{**SMALL.__dict__, "math_numbers": numbers, "drill_fraction": 0.3})
        world = W.make_world(spec)
        sets[numbers] = W.build_world_tasks(world, spec)
        assert all(W.check_math_answer(world, p) for p in sets[numbers].math_train + sets[numbers].math_test)
        assert sets[numbers].math_competition == standard.math_competition  # the harder set does not move
    small, tiny = sets["small"], sets["tiny"]
    assert max(stated_numbers(small.math_test)) < max(stated_numbers(standard.math_test))
    assert sum(stated_numbers(small.math_test)) < 0.6 * sum(stated_numbers(standard.math_test))
    assert max(stated_numbers(tiny.math_test)) < max(stated_numbers(small.math_test))
    assert sum(stated_numbers(tiny.math_test)) < 0.7 * sum(stated_numbers(small.math_test))
    # the drills follow the world's numbers: a tiny drill states at most a 9 x 8 dividend (its exact quotients)
    drills = [p for p in tiny.math_train if p.family == "drill"]
    assert drills and max(stated_numbers(drills)) <= 9 * (5 + 3)
    with pytest.raises(ValueError, match="math_numbers='huge'"):
        W.build_world_tasks(world, W.WorldSpec(**{**spec.__dict__, "math_numbers": "huge"}))


def test_params_offer_exactly_the_worlds_number_ranges():
    from typing import get_args

    from posttrain.params import MiniSetupParams
    assert set(get_args(MiniSetupParams.model_fields["math_numbers"].annotation)) == set(W.NUMBER_RANGES)


def test_the_checker_rejects_a_wrong_answer(built):
    world, _, tasks = built
    for p in tasks.math_test[:8] + tasks.knowledge_probe[:4]:
        wrong = W.MathProblem(p.problem, p.solution, str(int(p.answer) + 1), p.family, p.level)
        assert not W.check_math_answer(world, wrong), p.problem


def test_knowledge_questions_ask_about_the_right_towns(built):
    world, _, tasks = built

    def towns_in(problems):
        return {w for p in problems for w in re.findall(r"\w+", p.problem) if w in set(world.seen + world.held_out)}

    assert towns_in([p for p in tasks.math_train if p.family == "knowledge"]) <= set(world.seen)
    assert towns_in(tasks.knowledge_seen) <= set(world.seen)
    assert towns_in(tasks.knowledge_probe) <= set(world.held_out)
    share = sum(p.family == "knowledge" for p in tasks.math_train) / len(tasks.math_train)
    assert share == pytest.approx(SMALL.knowledge_fraction, abs=0.01)


def test_eval_items_are_not_sft_items(built):
    _, _, tasks = built
    train_texts = {p.problem for p in tasks.math_train}
    assert not train_texts & {p.problem for p in eval_math(tasks)}
    train_keys = {t.key for t in tasks.code_train}
    assert not train_keys & {t.key for t in tasks.code_test}
    assert not train_keys & {t.key for t in tasks.code_competition}
    assert all(t.key.startswith("hard-") for t in tasks.code_competition)


def test_eval_items_share_no_8gram_with_the_corpus(built):
    _, corpus, tasks = built
    items = [p.problem for p in eval_math(tasks)] + [t.question for t in tasks.code_test + tasks.code_competition]
    assert not W.contaminated(items, corpus)[:3]
    sft = [p.problem for p in tasks.math_train] + [t.question for t in tasks.code_train]
    assert not W.contaminated(sft, corpus)[:3]
    # Control: an item pasted into a document (lower-cased, with text around it) is caught. (Items of the same
    # template sharing its town and first numbers are caught too, hence `in`.)
    leaked = corpus[:50] + [f"Some travellers said: {tasks.math_test[3].problem.lower()} Nobody knew."]
    assert tasks.math_test[3].problem in W.contaminated(items, leaked)
    assert not W.contaminated(items, corpus[:50])


# ---------------------------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("marker", ["<|im_start|>", "<|im_end|>", "\\boxed", "```", "Solve the following math",
                                    "The answer is", "input()", "Example\nInput:"])
def test_corpus_never_holds_the_sft_format(built, marker):
    _, corpus, _ = built
    assert not [d for d in corpus if marker in d][:1]


def test_every_fact_is_stated_often_enough(built):
    world, corpus, _ = built
    counts = Counter()
    for doc in corpus:
        for sentence in re.split(r"(?<=\.) ", doc):
            for town in world.towns:
                if town.name in sentence:
                    for attr, n in town.facts.items():
                        things = W.ATTRIBUTES[attr][1]
                        if re.search(rf"\b{n} {things}\b|number of {things} in {town.name} is {n}\b", sentence):
                            counts[town.name, attr] += 1
    assert len(counts) == SMALL.num_towns * len(W.ATTRIBUTES)
    assert min(counts.values()) >= SMALL.exposures_per_fact


def test_program_prose_states_what_the_snippet_prints():
    import contextlib
    import io
    import random

    rng = random.Random(3)
    for _ in range(30):
        doc = W.program_document(rng)
        code = "\n".join(line[4:] for line in doc.splitlines() if line.startswith("    "))
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, {})
        assert doc.endswith(f"Running it prints {out.getvalue().strip()}."), doc


# ---------------------------------------------------------------------------------------------- tokenizer


def test_world_tokenizer_roundtrips_and_knows_the_towns(built):
    world, corpus, tasks = built
    tok = W.train_world_tokenizer(corpus, tasks, 700)
    assert len(tok) <= 700
    text = tasks.math_competition[0].problem
    assert tok.decode(tok(text)["input_ids"]) == text
    single = [t.name for t in world.towns if len(tok.tokenize(" " + t.name)) == 1]
    assert len(single) >= len(world.towns) // 2  # frequent names are whole tokens at a world-sized vocabulary


# ---------------------------------------------------------------------------------------------- code


def test_code_expected_outputs_follow_the_statement():
    spec = next(s for s in W.list_specs() if s.key == "list/even/0/sum")
    assert W.run_reference(spec, {"nums": [1, 2, 3, 4], "n": 4}) == 6
    hard = next(s for s in W.hard_specs() if s.key == "hard-multdiff/3/2")
    assert W.run_reference(hard, {"n": 10}) == (3 + 6 + 9) - 5


@pytest.mark.slow
def test_reference_programs_pass_their_tests_in_the_grader(built):
    from posttrain import grading

    _, _, tasks = built
    one_per_task = {t.key: t for t in tasks.code_train[:60] + tasks.code_test + tasks.code_competition}
    items = [{"response": t.solution, "tests": t.tests, "fn_name": None} for t in one_per_task.values()]
    verdicts = grading.grade_code_batch(items)
    failed = [(k, v.reason) for k, v in zip(one_per_task, verdicts) if not v.correct]
    assert not failed, failed[:3]
    wrong = tasks.code_test[0].solution.replace("print(result)", "print(result + 1)")
    assert not grading.grade_code(wrong, tasks.code_test[0].tests)
