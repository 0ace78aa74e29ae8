"""posttrain.overlap: known overlaps are found, disjoint texts show none, SFT rows stream from a generator.

Run: .venv/bin/python -m pytest tests/test_overlap.py -x -q
"""
import json

import numpy as np
import pytest

from posttrain.overlap import OverlapIndex, normalize_tokens, summarize_overlap
from posttrain.params import REPO_ROOT

DATA = REPO_ROOT.parent / "shared" / "data"
LEAKED = ("Let $f(x) = 3x^2 - 5x + 2$ and let $g$ be the inverse of the function obtained by restricting $f$ "
          "to the interval where it is increasing. Compute $g(10)$.")
CLEAN = ("A bag holds seven red marbles and four blue marbles. Two marbles are drawn without replacement; "
         "what is the probability that both are blue?")


def _words(rng, k):
    vocab = [f"w{i}" for i in range(5000)]
    return " ".join(rng.choice(vocab, size=k))


def _sft_rows(rng, num_rows, leak_at):
    """A generator, so the scan must stream: row `leak_at` quotes the leaked problem inside other text."""
    for i in range(num_rows):
        text = _words(rng, 60)
        if i == leak_at:
            text = f"{_words(rng, 20)} {LEAKED.replace('$', '')} {_words(rng, 20)}"
        yield {"id": f"row{i}", "problem": text}


def test_known_overlap_found_and_disjoint_clean():
    index = OverlapIndex([("bench", "leaked", LEAKED), ("bench", "clean", CLEAN), ("short", "s1", "Compute 37 + 45.")])
    rows = list(_sft_rows(np.random.default_rng(0), 3000, leak_at=1234)) + [{"id": "q", "problem": "so: compute 37 - 45."}]
    per = index.scan(iter(rows), "synthetic", text_key="problem", id_key="id", batch_size=256,
                     progress=False).set_index("problem_id")
    assert per.loc["leaked", "max_containment"] == 1.0 and per.loc["leaked", "containment_row"] == "row1234"
    assert per.loc["leaked", "rows_sharing_ngram"] == 1
    assert per.loc["leaked", "nn_row"] == "row1234" and per.loc["leaked", "nn_similarity"] > 0.3
    assert per.loc["clean", "rows_sharing_ngram"] == 0 and per.loc["clean", "max_containment"] == 0
    assert per.loc["clean", "nn_similarity"] == 0
    # the short problem is one whole-text gram; "37 - 45" differs from "37 + 45" (operators are tokens)
    assert per.loc["s1", "rows_sharing_ngram"] == 0
    summary = summarize_overlap(per.reset_index()).set_index("benchmark")
    assert summary.loc["bench", "frac_any_ngram"] == 0.5 and summary.loc["bench", "num_problems"] == 2


def test_short_problem_found_verbatim_and_latex_formatting_ignored():
    index = OverlapIndex([("b", "p", "Compute $37 + 45$.")])
    per = index.scan(["no", "Then compute 37+45. Next", "\\(compute 37 + 45\\)."], "s", progress=False)
    assert per.loc[0, "rows_sharing_ngram"] == 2 and per.loc[0, "max_containment"] == 1.0
    assert normalize_tokens("$\\frac{1}{2}$ + X") == ["frac", "1", "2", "+", "x"]


def test_partial_containment_is_a_fraction():
    problem = " ".join(f"t{i}" for i in range(40))  # 28 distinct 13-grams
    half = " ".join(f"t{i}" for i in range(20))  # shares t0..t19: 8 of them
    per = OverlapIndex([("b", "p", problem)]).scan([half], "s", progress=False)
    assert per.loc[0, "num_ngrams"] == 28
    assert per.loc[0, "max_containment"] == pytest.approx(8 / 28)


def test_real_data_math500_vs_gsm8k_train_runs_without_false_overlap():
    if not (DATA / "math500" / "test.jsonl").is_file():
        pytest.skip("shared data not present")
    problems = [("math500", r["unique_id"], r["problem"])
                for r in map(json.loads, open(DATA / "math500" / "test.jsonl"))][:100]
    rows = (json.loads(line)["question"] for line in open(DATA / "gsm8k" / "train.jsonl"))
    per = OverlapIndex(problems).scan(rows, "gsm8k_train", max_rows=2000, progress=False)
    assert len(per) == 100 and (per["max_containment"] < 0.5).all()
    # and a problem copied into the stream is found
    per = OverlapIndex(problems).scan([problems[7][2]], "copy", progress=False)
    assert per.loc[7, "max_containment"] == 1.0 and per.loc[7, "nn_similarity"] == 1.0


def test_bad_rows_are_named():
    index = OverlapIndex([("b", "p", "some problem text")])
    with pytest.raises(ValueError, match="SFT row 1: field 'text' missing"):
        index.scan([{"text": "ok"}, {"prompt": "x"}], "s", progress=False)
    with pytest.raises(ValueError, match="benchmark problem #0: missing field"):
        OverlapIndex([{"benchmark": "b", "text": "x"}])


def test_sft_rows_strip_prompt_boilerplate_and_skip():
    from posttrain.overlap import sft_rows
    from posttrain.prompts import code_sft_messages, math_sft_messages

    rows = [{"messages": math_sft_messages("What is 2 + 3?", "5"), "skip": False},
            {"messages": [], "skip": True},
            {"messages": code_sft_messages("Reverse a string.", "print(input()[::-1])", "cpp"), "skip": False}]
    out = list(sft_rows(rows))
    assert [r["index"] for r in out] == [0, 2]
    assert out[0]["problem"] == "What is 2 + 3?" and out[1]["problem"] == "Reverse a string."
    with pytest.raises(ValueError, match="SFT row 0: no user turn"):
        list(sft_rows([{"messages": [{"role": "assistant", "content": "x"}]}]))
