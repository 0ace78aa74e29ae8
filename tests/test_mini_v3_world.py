"""The v3 corpus options of the miniature's world (issue 23; docs/miniature.md "v3"): off by default, and then the
world is byte-identical to v2's; on, each does what it says.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_mini_v3_world.py -x -q
"""
import contextlib
import dataclasses
import hashlib
import io
import json
import random
import re

import pytest

from posttrain.mini import build as B
from posttrain.mini import world as W
from posttrain.params import MiniSetupParams, load_study
from posttrain.prompts import code_sft_messages, math_sft_messages, question_with_starter

# The digests of everything the set-up writes but the tokenizer (corpus, SFT pools, benchmark files, clozes, world),
# computed with HEAD adec5b3's generators before the v3 options existed.
V2_DIGESTS = {"params/smoke.yaml": "79012985ea3dfc72", "params/mini.yaml": "d7a8094b85df3aaf",
              "params/mini_large.yaml": "3a6c5642c127f59c"}

SMALL = W.WorldSpec(seed=1000, num_towns=12, exposures_per_fact=20, arithmetic_docs=300, program_docs=300,
                    story_docs=100, math_train=800, code_train=400, math_test=200, math_competition=100,
                    code_test=200, code_competition=100, knowledge_probe=40, knowledge_seen=40, drill_fraction=0.1)
V3 = dataclasses.replace(SMALL, fact_templates="value_last", qa_fraction=0.3, boxed_fraction=0.2,
                         fenced_program_fraction=0.3, arithmetic_scenery="none")


def world_digest(setup: MiniSetupParams) -> str:
    """What posttrain.mini.build writes under setup/data, hashed row by row (the same row functions)."""
    world, corpus, tasks = B.build_tasks(setup)
    h = hashlib.sha256()

    def put(name, rows):
        h.update(name.encode())
        for r in rows:
            h.update(json.dumps(r).encode() + b"\n")
    put("corpus", ({"text": d} for d in corpus))
    put("math_train", ({"messages": math_sft_messages(p.problem, p.solution)} for p in tasks.math_train))
    put("code_train", ({"messages": code_sft_messages(question_with_starter(t.question, t.starter_code),
                                                      t.solution)} for t in tasks.code_train))
    for name, (field, _) in B.MATH_SETS.items():
        put(name, (B._math_row(name, i, p) for i, p in enumerate(getattr(tasks, field))))
    for name, (field, _) in B.CODE_SETS.items():
        put(name, (B._code_row(name, i, t) for i, t in enumerate(getattr(tasks, field))))
    put("fill_in", tasks.fill_in)
    put("world", [{"seed": world.seed, "seen": list(world.seen), "held_out": list(world.held_out),
                   "facts": {t.name: t.facts for t in world.towns}}])
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def built():
    world = W.make_world(V3)
    return world, W.build_world_corpus(world, V3), W.build_world_tasks(world, V3)


# ---------------------------------------------------------------------------------------------- off by default


@pytest.mark.parametrize("path", sorted(V2_DIGESTS))
def test_default_options_reproduce_the_v2_world_byte_for_byte(path):
    setup = load_study(path).setup
    assert world_digest(setup) == V2_DIGESTS[path]
    # and the params hash does not see the new fields at their defaults (finished runs keep their hashes)
    assert not {"fact_templates", "qa_fraction", "boxed_fraction", "fenced_program_fraction",
                "arithmetic_scenery", "code_split"} & set(setup.model_dump())


def test_an_option_changes_the_world_and_the_hash():
    setup = load_study("params/smoke.yaml").setup
    on = setup.model_copy(update={"qa_fraction": 0.5})
    assert on.model_dump()["qa_fraction"] == 0.5
    assert world_digest(on) != V2_DIGESTS["params/smoke.yaml"]
    assert B.setup_hash(on) != B.setup_hash(setup)


def test_options_are_validated():
    with pytest.raises(ValueError, match="fact_templates='first'"):
        W.WorldSpec(fact_templates="first")
    with pytest.raises(ValueError, match="qa_fraction=1.5"):
        W.WorldSpec(qa_fraction=1.5)
    with pytest.raises(ValueError, match="arithmetic_scenery"):
        W.WorldSpec(arithmetic_scenery="cities")
    with pytest.raises(ValueError, match="boxed_fraction"):
        MiniSetupParams(boxed_fraction=-0.1)
    with pytest.raises(ValueError, match="fact_templates"):
        MiniSetupParams(fact_templates="first")
    assert B.world_spec(MiniSetupParams(fact_templates="value_last")).fact_templates == "value_last"


# ---------------------------------------------------------------------------------------------- options on


def fact_lines(corpus):
    return [s for d in corpus for s in re.split(r"(?<=\.)[ \n]", d) if not s.startswith(("Q:", "Question:"))]


def test_value_last_templates_put_town_and_attribute_before_the_value(built):
    world, _, tasks = built
    rng = random.Random(0)
    sentences = W.fact_sentences(world, rng, 5, "value_last")
    assert len(sentences) == len(world.towns) * len(W.ATTRIBUTES) * 5
    for t, (town, attr, n) in zip(sentences, [(t.name, a, n) for t in world.towns for a, n in t.facts.items()
                                              for _ in range(5)]):
        things = W.ATTRIBUTES[attr][1]
        assert t.endswith(f" {n}."), t
        assert max(t.index(town), t.index(things)) < t.rindex(f" {n}."), t
    # the storage gate's cloze is one of the wordings, cut before the value
    cloze = tasks.fill_in[0]
    assert any(tpl.format(town=cloze["town"], things=W.ATTRIBUTES[cloze["attribute"]][1], n="").rstrip(" .")
               == cloze["prompt"] for tpl in W.VALUE_LAST_TEMPLATES)


def test_every_fact_is_stated_value_last_and_asked_only_for_seen_towns(built):
    world, corpus, _ = built
    text = "\n".join(corpus)
    qa_total = round(V3.qa_fraction * V3.exposures_per_fact)
    for town in world.towns:
        for attr, n in town.facts.items():
            things = W.ATTRIBUTES[attr][1]
            qa = len(re.findall(rf"(?:Q|Question): [^?]*\b{things}\b[^?]*\b{town.name}\b[^?]*\? (?:A|Answer): {n}\.",
                                text))
            assert qa == (qa_total if town.name in world.seen else 0), (town.name, attr)
            stated = sum(1 for s in fact_lines(corpus) if town.name in s and things in s and s.endswith(f" {n}."))
            assert stated >= V3.exposures_per_fact - qa, (town.name, attr, stated)


def test_numeric_prose_names_no_town_and_boxed_solutions_check_out(built):
    world, corpus, _ = built
    names = {t.name for t in world.towns}
    boxed = [d for d in corpus if "\\boxed{" in d]
    assert len(boxed) == round(V3.boxed_fraction * V3.arithmetic_docs)
    for doc in boxed:
        lines = doc.split("\n")
        value = int(re.fullmatch(r"The answer is \\boxed\{(\d+)\}\.", lines[-1]).group(1))
        assert re.fullmatch(rf".* = {value}\.", lines[-2]), doc
        assert not names & set(re.findall(r"\w+", doc))
    # the only numbers in a sentence that names a town are that town's facts
    for doc in corpus:
        for sentence in re.split(r"(?<=[.?])\s", doc):
            towns = names & set(re.findall(r"\w+", sentence))
            numbers = {int(x) for x in re.findall(r"\d+", sentence)}
            assert not towns or numbers <= {n for t in towns for n in world.town(t).facts.values()}, sentence
    rng = random.Random(1)
    assert all(not names & set(re.findall(r"\w+", W.arithmetic_document(world, rng, "none"))) for _ in range(200))


def test_web_programs_print_what_they_say_and_are_no_task():
    rng = random.Random(5)
    specs = W.web_code_specs()
    task_programs = {W.render_code_task(s, random.Random(0)).code
                     for s in W.list_specs() + W.formula_specs() + W.loop_specs() + W.hard_specs()}
    assert not {W.render_code_task(s, random.Random(0)).code for s in specs} & task_programs
    for _ in range(40):
        doc = W.web_program_document(rng, specs)
        program, stdin = re.findall(r"```(?:python)?\n(.*?)```", doc, re.S)
        out = io.StringIO()
        feed = iter(stdin.splitlines())
        with contextlib.redirect_stdout(out):
            exec(program, {"input": lambda: next(feed)})
        assert doc.endswith(f"it prints {out.getvalue().strip()}."), doc


def test_eval_items_share_no_8gram_with_the_v3_corpus(built):
    _, corpus, tasks = built
    items = ([p.problem for p in tasks.math_test + tasks.math_competition + tasks.knowledge_probe
              + tasks.knowledge_seen] + [t.question for t in tasks.code_test + tasks.code_competition])
    assert not W.contaminated(items, corpus)[:3]
    sft = [p.problem for p in tasks.math_train] + [t.question for t in tasks.code_train]
    assert not W.contaminated(sft, corpus)[:3]
    assert not [d for d in corpus if "<|im_start|>" in d or "Solve the following" in d][:1]


def sft_answers(tasks):
    return [p.solution for p in tasks.math_train] + [t.solution for t in tasks.code_train]


def missing_answer_tokens(tok, corpus, tasks) -> set[str]:
    in_corpus = {i for ids in tok(corpus, add_special_tokens=False)["input_ids"] for i in ids}
    in_answers = {i for ids in tok(sft_answers(tasks), add_special_tokens=False)["input_ids"] for i in ids}
    return {tok.convert_ids_to_tokens(i) for i in in_answers - in_corpus}


def test_every_sft_answer_token_occurs_in_the_v3_corpus(built):
    # (The chat markers are special tokens: <|im_end|>, the answers' last token, ends every pre-training document.)
    world, corpus, tasks = built
    tok = W.train_world_tokenizer(corpus, tasks, 700)
    assert not missing_answer_tokens(tok, corpus, tasks)
    # control: the v2 corpus of the same world lacks the fences, input(), \boxed, ...
    v2 = dataclasses.replace(V3, fact_templates="mixed", qa_fraction=0.0, boxed_fraction=0.0,
                             fenced_program_fraction=0.0, arithmetic_scenery="towns")
    v2_corpus = W.build_world_corpus(world, v2)
    v2_tok = W.train_world_tokenizer(v2_corpus, tasks, 700)
    missing = missing_answer_tokens(v2_tok, v2_corpus, tasks)
    assert {"```", "boxed"} <= missing and len(missing) >= 10, missing


def test_covered_split_drops_only_test_tasks_with_untrained_operations():
    assert W.code_operations("list/above/5/min") == {"filter above", "reduce min"}
    assert W.code_operations("pair/3/4") == {"pair"} and W.code_operations("word/count/a") == {"word/count/a"}
    spec = dataclasses.replace(SMALL, code_test=200)
    world = W.make_world(spec)
    hashed = W.build_world_tasks(world, spec)
    covered = W.build_world_tasks(world, dataclasses.replace(spec, code_split="covered"))
    trained = set().union(*(W.code_operations(t.key) for t in hashed.code_train))
    dropped = {t.key for t in hashed.code_test} - {t.key for t in covered.code_test}
    assert dropped and all(not W.code_operations(k) <= trained for k in dropped)
    assert all(W.code_operations(t.key) <= trained for t in covered.code_test)
    assert covered.code_train == hashed.code_train and len(covered.code_test) == spec.code_test
    assert covered.math_test == hashed.math_test and covered.code_competition == hashed.code_competition
    with pytest.raises(ValueError, match="code_split='random'"):
        W.WorldSpec(code_split="random")
