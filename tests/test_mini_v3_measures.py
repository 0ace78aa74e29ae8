"""Measures with less noise (issue 23): the task-clustered bootstrap (posttrain.metrics) and the teacher-forced
log-likelihood of reference answers (posttrain.mini.measures), on a tiny model.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_mini_v3_measures.py -x -q
"""
import json
import re

import numpy as np
import pytest
import torch

from posttrain.metrics import bootstrap_stat, bootstrap_stat_clustered, difference_stat
from posttrain.mini import build as B
from posttrain.mini import measures as M
from posttrain.params import MiniSetupParams

SETUP = MiniSetupParams(seed=1000, num_towns=8, exposures_per_fact=4, arithmetic_docs=40, program_docs=40,
                        story_docs=10, math_train=60, code_train=40, math_test=6, math_competition=4, code_test=60,
                        code_competition=4, knowledge_probe=4, knowledge_seen=4, math_numbers="tiny",
                        drill_fraction=0.2, knowledge_fraction=0.15, vocab_size=400, hidden_size=64,
                        num_attention_heads=2, num_key_value_heads=1, intermediate_size=128)


# ---------------------------------------------------------------------------------------------- clustered bootstrap


def test_one_problem_per_cluster_is_the_plain_bootstrap():
    rng = np.random.default_rng(1)
    a, b = rng.random(50), rng.random(50)
    assert bootstrap_stat_clustered([a, b], difference_stat, np.arange(50), n_boot=300) == bootstrap_stat(
        [a, b], difference_stat, n_boot=300)


def test_repeated_tasks_widen_the_interval():
    # 30 tasks x 7 problems, each task solved all-or-nothing by each arm (as the miniature's code sets are)
    rng = np.random.default_rng(0)
    tasks = np.repeat(np.arange(30), 7)
    a = np.repeat(rng.random(30) < 0.7, 7).astype(float)
    b = np.repeat(rng.random(30) < 0.4, 7).astype(float)
    point, lo, hi = bootstrap_stat([a, b], difference_stat, n_boot=2000)
    c_point, c_lo, c_hi = bootstrap_stat_clustered([a, b], difference_stat, tasks, n_boot=2000)
    assert c_point == point
    assert (c_hi - c_lo) > 2 * (hi - lo)  # ~sqrt(7) wider: 30 independent units, not 210
    # labels may be any hashable values in any order; the clusters, not their names, matter
    names = np.array([f"task-{t}" for t in tasks])
    perm = rng.permutation(len(tasks))
    shuffled = bootstrap_stat_clustered([a[perm], b[perm]], difference_stat, names[perm], n_boot=2000)
    assert shuffled[1] == pytest.approx(c_lo, abs=0.05) and shuffled[2] == pytest.approx(c_hi, abs=0.05)


def test_clustered_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="3 cluster labels for 4 problems"):
        bootstrap_stat_clustered([np.ones(4)], np.mean, [0, 0, 1])
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_stat_clustered([np.ones(4), np.ones(3)], difference_stat, [0, 0, 1, 1])
    assert all(np.isnan(bootstrap_stat_clustered([[]], np.mean, [])))


def test_code_task_clusters_read_the_benchmark_file(tmp_path):
    _, _, tasks = B.build_tasks(SETUP)
    path = tmp_path / "mini_code_test.jsonl"
    path.write_text("".join(json.dumps(B._code_row("mini_code", i, t)) + "\n" for i, t in enumerate(tasks.code_test)))
    clusters = M.code_task_clusters(path)
    assert list(clusters) == [f"mini_code_{i:04d}" for i in range(len(tasks.code_test))]
    assert list(clusters.values()) == [t.key for t in tasks.code_test]
    assert len(set(clusters.values())) < len(clusters)  # tasks repeat: the reason to cluster


# ---------------------------------------------------------------------------------------------- likelihood


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from posttrain.mini import world as W
    from transformers import AutoModelForCausalLM

    world, corpus, tasks = B.build_tasks(SETUP)
    tok = W.train_world_tokenizer(corpus, tasks, SETUP.vocab_size)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(B.mini_config(SETUP, tok))
    path = tmp_path_factory.mktemp("ll") / "ckpt"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok, path


def test_reference_chats_follow_the_benchmark_files_ids():
    math = M.reference_chats(SETUP, "mini_math")
    _, _, tasks = B.build_tasks(SETUP)
    assert list(math) == [B._math_row("mini_math", i, p)["unique_id"] for i, p in enumerate(tasks.math_test)]
    first = tasks.math_test[0]
    assert math["mini_math_0000"][-1] == {"role": "assistant", "content": first.solution}
    code = M.reference_chats(SETUP, "mini_code")
    assert list(code)[0] == "mini_code_0000" and code["mini_code_0000"][-1]["content"] == tasks.code_test[0].solution
    with pytest.raises(ValueError, match="benchmark 'aime24'"):
        M.reference_chats(SETUP, "aime24")


def test_answer_likelihood_is_the_teacher_forced_loss_of_the_answer(tiny):
    model, tok, path = tiny
    chats = M.reference_chats(SETUP, "mini_math")
    rows = M.answer_likelihood(model, tok, chats)
    assert [r["problem_id"] for r in rows] == list(chats)
    for r, messages in zip(rows, chats.values()):
        # the same number from transformers' own loss with every label outside the answer masked
        text = tok.apply_chat_template(messages, tokenize=False)
        answer = messages[-1]["content"]
        start = text.rindex(answer)
        enc = tok(text, return_offsets_mapping=True, add_special_tokens=False, return_tensors="pt")
        labels = enc["input_ids"].clone()
        inside = torch.tensor([start <= a < start + len(answer) for a, _ in enc["offset_mapping"][0].tolist()])
        labels[0, ~inside] = -100
        with torch.no_grad():
            loss = model(input_ids=enc["input_ids"], labels=labels).loss.item()
        assert r["tokens"] == int(inside.sum()) and r["mean_logprob"] == pytest.approx(-loss, rel=1e-4)
        assert r["logprob"] == pytest.approx(-loss * r["tokens"], rel=1e-4)
        assert 0 <= r["token_accuracy"] <= 1 and 0 < r["computed_digits"] < r["tokens"]
    again = M.checkpoint_likelihood(path, dict(list(chats.items())[:2]))
    assert [a["logprob"] for a in again] == pytest.approx([r["logprob"] for r in rows[:2]], rel=1e-5)


def test_digit_copy_clozes_stop_where_the_code_repeats_a_stated_parameter():
    rows = M.digit_copy_clozes(1000, 50)
    assert len(rows) == 50 and rows == M.digit_copy_clozes(1000, 50) and rows != M.digit_copy_clozes(1001, 50)
    for r in rows:
        value = r["answer"].strip()
        assert value.isdigit() and r["prompt"].endswith((" >", "range(1,", " %"))
        # the prose states the value before the code: a copy, not a computation
        prose = r["prompt"].split("\n\n")[0]
        assert re.search(rf"\b{value}\b", prose), r
    assert any(r["prompt"].endswith(" %") for r in rows) and any(r["prompt"].endswith(" >") for r in rows)
