"""Measures with less noise than pass@1 for the miniature (issue 23; docs/miniature.md "v3"), not yet in the
report's tables:

- `answer_likelihood`: the teacher-forced log-likelihood of each problem's reference solution under a checkpoint
  (sum and mean over its tokens), with next-token accuracy over all of them and over the digits of numbers the
  prompt does not state (the computed results; the learning pilots' "computed digits"). Continuous per problem, so
  an arm difference needs fewer problems, samples and SFT tokens to show than in pass@1.
- `code_task_clusters`: each code problem's task (a task key repeats over problems with other inputs), for
  `posttrain.metrics.bootstrap_stat_clustered`.

    chats = reference_chats(study.setup, "mini_math")                 # {problem_id: messages}
    rows = checkpoint_likelihood("runs/mini/sft/math_0pre/checkpoint-2352", chats)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from posttrain.mini import build as B
from posttrain.params import MiniSetupParams
from posttrain.prompts import code_sft_messages, math_sft_messages, question_with_starter

NUMBER = re.compile(r"\d+")


def reference_chats(setup: MiniSetupParams, benchmark: str) -> dict[str, list[dict]]:
    """Each problem of a miniature benchmark (keyed by the id its file gives it) as the chat its reference solution
    completes, in the SFT datasets' prompt (the miniature evaluates in that format). Regenerated from the setup's
    world (the benchmark files hold answers, not solutions)."""
    _, _, tasks = B.build_tasks(setup)
    if benchmark in B.MATH_SETS:
        return {f"{benchmark}_{i:04d}": math_sft_messages(p.problem, p.solution)
                for i, p in enumerate(getattr(tasks, B.MATH_SETS[benchmark][0]))}
    if benchmark in B.CODE_SETS:
        return {B._code_row(benchmark, i, t)["question_id"]: code_sft_messages(
            question_with_starter(t.question, t.starter_code), t.solution)
                for i, t in enumerate(getattr(tasks, B.CODE_SETS[benchmark][0]))}
    raise ValueError(f"benchmark {benchmark!r}: expected one of {sorted({**B.MATH_SETS, **B.CODE_SETS})}")


def answer_likelihood(model, tokenizer, chats: dict[str, list[dict]]) -> list[dict]:
    """Per problem: the reference answer (the last message) teacher-forced after its prompt -> {problem_id, tokens,
    logprob (sum, nats), mean_logprob, token_accuracy (argmax = next token), computed_digits, computed_accuracy
    (over digits of numbers the prompt does not state; None when there are none)}."""
    import torch

    rows = []
    model.eval()
    with torch.no_grad():
        for pid, messages in chats.items():
            answer, prompt = messages[-1]["content"], " ".join(m["content"] for m in messages[:-1])
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            start = text.rindex(answer)
            stated = set(NUMBER.findall(prompt))
            computed = [(m.start() + start, m.end() + start) for m in NUMBER.finditer(answer)
                        if m.group() not in stated]
            enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, return_tensors="pt")
            ids = enc["input_ids"].to(model.device)
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
            target = ids[0, 1:]
            picked = logprobs.gather(1, target[:, None])[:, 0]
            hit = logprobs.argmax(-1) == target
            offsets = enc["offset_mapping"][0, 1:].tolist()
            span = [i for i, (a, _) in enumerate(offsets) if start <= a < start + len(answer)]
            digits = [i for i in span if any(s <= offsets[i][0] < e for s, e in computed)]
            total = float(picked[span].sum())
            rows.append({"problem_id": pid, "tokens": len(span), "logprob": total, "mean_logprob": total / len(span),
                         "token_accuracy": float(hit[span].float().mean()), "computed_digits": len(digits),
                         "computed_accuracy": float(hit[digits].float().mean()) if digits else None})
    return rows


def checkpoint_likelihood(checkpoint: str | Path, chats: dict[str, list[dict]], tokenizer: str | Path | None = None,
                          ) -> list[dict]:
    """answer_likelihood for a saved checkpoint (fp32 on the CPU; its own tokenizer unless one is named)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    return answer_likelihood(model, AutoTokenizer.from_pretrained(str(tokenizer or checkpoint)), chats)


def digit_copy_clozes(seed: int, count: int = 200) -> list[dict]:
    """The digit-copy probe of issue 23's base gate: fresh program prose in the corpus' register (new numbers:
    `world.program_document`) whose prose states a parameter that the snippet must repeat, cut just before the code
    repeats it ("This short program counts the numbers above 7: ... if x >" -> " 7"; the multiples kind gives
    two clozes, its bound and its divisor). Rows in the fill-in probe's shape, so `mini.probes.fill_in_accuracy`
    scores them (greedy; its "all" share; chance for a one-digit divisor is 1 in 8)."""
    import random

    from posttrain.mini.world import program_document

    rng, rows = random.Random(f"mini-digit-copy:{seed}"), []
    while len(rows) < count:
        doc = program_document(rng)
        if m := re.search(r"counts the numbers above (\d+)", doc):
            cuts = [(f"x > {m[1]}]", "x >", m[1])]
        elif m := re.search(r"adds the multiples of (\d+) up to (\d+)", doc):
            cuts = [(f"range(1, {m[2]} +", "range(1,", m[2]), (f"i % {m[1]} ==", "i %", m[1])]
        else:
            continue
        for code, stem, value in cuts[:count - len(rows)]:
            at = doc.index(code) + len(stem)
            rows.append({"prompt": doc[:at], "answer": f" {value}", "held_out": False})
    return rows


def code_task_clusters(benchmark_file: str | Path) -> dict[str, str]:
    """{question_id: task key} of a miniature code benchmark file (LiveCodeBench rows; the key is the title)."""
    with open(benchmark_file) as f:
        return {row["question_id"]: row["question_title"] for row in map(json.loads, filter(str.strip, f))}
