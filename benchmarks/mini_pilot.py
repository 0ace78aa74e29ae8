"""Pilot for docs/miniature.md: does the 0%-Pre arm (random init + SFT) learn the world's math at a small SFT budget?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mini_pilot.py --examples 2000 --eval 120

A pilot world (seed >= 1000: other towns and problems than the final study's world 0), its tokenizer (vocab
1,024), math SFT examples (the first --examples of the pool, one pass) through TRL's SFTTrainer with per-row packed
rows (posttrain.collate) and the design's recipe (AdamW, peak LR --lr, cosine, 5% warmup). At each of --evals-at
(fractions of the run) it greedily decodes --eval problems of `math_test` (self-contained, levels 1-2) and of the
held-out-town knowledge probe and grades them with posttrain.grading.grade_math, and prints the teacher-forced
accuracy on the reference solutions split into copied digits, computed digits and format tokens (which of the
three the model has not learned). --epochs repeats the pool (reshuffled), --numbers picks the world's level-1/2
number ranges. The learning-floor pilots and their commands: docs/miniature.md §12.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mini_pilot.py --examples 8000 --rows 2 --epochs 3 --numbers small
"""
from __future__ import annotations

import argparse
import math
import re
import tempfile
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

from posttrain.collate import PER_ROW_SFT_CONFIG, PerRowPackedCollator, pack_rows
from posttrain.data import ensure_chat_template, tokenize_sft
from posttrain.grading import grade_math
from posttrain.mini import world as W
from posttrain.models import tiny_qwen2_config
from posttrain.prompts import OMR_MATH_PROMPT, math_sft_messages


def pilot_spec(seed: int, examples: int, numbers: str = "standard", drills: float = 0.0,
               knowledge: float = 0.25) -> W.WorldSpec:
    # The corpus only trains the tokenizer here (0%-Pre never sees it): a smaller one keeps the same vocabulary.
    return W.WorldSpec(seed=seed, exposures_per_fact=60, arithmetic_docs=2000, program_docs=2000, story_docs=500,
                       math_train=max(examples, 1000), code_train=500, math_numbers=numbers,
                       drill_fraction=drills, knowledge_fraction=knowledge)


@torch.no_grad()
def decode_accuracy(model, tokenizer, problems, max_new_tokens: int = 96, batch: int = 40,
                    samples: int = 0, temperature: float = 0.6) -> tuple[float, str]:
    """Greedy accuracy, or (samples > 0) the mean accuracy of that many samples per problem at `temperature`,
    top-p 0.95 — the study's pass@1 protocol, which the greedy pilots overstated (docs/miniature.md §12)."""
    model.eval()
    tokenizer.padding_side = "left"
    correct, sample, by_group = 0, "", {}
    for i in range(0, len(problems), batch):
        chunk = problems[i:i + batch]
        prompts = [tokenizer.apply_chat_template(
            [{"role": "user", "content": OMR_MATH_PROMPT.format(problem=p.problem)}], tokenize=False,
            add_generation_prompt=True) for p in chunk]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        sampling = dict(do_sample=True, temperature=temperature, top_p=0.95, num_return_sequences=samples) \
            if samples else dict(do_sample=False)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id, **sampling)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        per = max(samples, 1)
        for j, p in enumerate(chunk):
            ok = sum(grade_math(t, p.answer) for t in texts[j * per:(j + 1) * per]) / per
            correct += ok
            hits = by_group.setdefault(f"{p.family}{p.level or ''}", [0, 0])
            hits[0], hits[1] = hits[0] + ok, hits[1] + 1
        sample = sample or f"{chunk[0].problem!r} -> {texts[0]!r}"
    model.train()
    groups = " ".join(f"{g}:{c:g}/{n}" for g, (c, n) in sorted(by_group.items()))
    return correct / len(problems), f"[{groups}] {sample}"


NUMBER = re.compile(r"\d+")


@torch.no_grad()
def solution_token_accuracy(model, tokenizer, problems) -> str:
    """Teacher-forced next-token accuracy on the reference solutions, split by what a token is: a digit of a number
    the problem states (a copy), a digit of any other number (a computed result), or anything else (the format).
    Says whether the model fails to copy or fails to compute."""
    model.eval()
    hits = {"copy": [0, 0], "computed": [0, 0], "format": [0, 0]}
    for p in problems:
        text = tokenizer.apply_chat_template(math_sft_messages(p.problem, p.solution), tokenize=False)
        start = text.rindex(p.solution)
        stated = set(NUMBER.findall(p.problem))
        spans = [(m.start() + start, m.end() + start, m.group() in stated) for m in NUMBER.finditer(p.solution)]
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False, return_tensors="pt")
        pred = model(input_ids=enc["input_ids"]).logits[0, :-1].argmax(-1)
        target = enc["input_ids"][0, 1:]
        for i, (a, b) in enumerate(enc["offset_mapping"][0, 1:].tolist()):
            if a < start or a >= start + len(p.solution):
                continue
            kind = next(("copy" if copy else "computed" for s, e, copy in spans if s <= a < e), "format")
            hits[kind][0] += int(pred[i] == target[i])
            hits[kind][1] += 1
    model.train()
    return " ".join(f"{k}={c / max(n, 1):.2f}" for k, (c, n) in hits.items())


class EvalAt(TrainerCallback):
    def __init__(self, steps: set[int], run_eval):
        self.steps, self.run_eval = steps, run_eval

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.steps:
            self.run_eval(model, state.global_step)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world-seed", type=int, default=1000)
    ap.add_argument("--examples", type=int, default=2000, help="math SFT examples (one pass)")
    ap.add_argument("--eval", type=int, default=120, help="problems per evaluation set")
    ap.add_argument("--evals-at", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="cosine", choices=["cosine", "constant_with_warmup"],
                    help="LR schedule after the warmup")
    ap.add_argument("--warmup", type=int, default=None, help="warmup steps (default: 5%% of the run)")
    ap.add_argument("--rows", type=int, default=4, help="packed rows per step")
    ap.add_argument("--epochs", type=float, default=1.0, help="passes over the SFT pool (reshuffled each pass)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0, help="init and data-order seed")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--numbers", default="standard", choices=sorted(W.NUMBER_RANGES),
                    help="number ranges of levels 1-2 (WorldSpec.math_numbers)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--drills", type=float, default=0.0, help="share of arithmetic drills (WorldSpec.drill_fraction)")
    ap.add_argument("--knowledge", type=float, default=0.25, help="share of knowledge questions (knowledge_fraction)")
    ap.add_argument("--samples", type=int, default=0,
                    help="also score --samples samples per problem at T=0.6, top-p 0.95 (the study's pass@1)")
    args = ap.parse_args()
    if args.world_seed < 1000:
        raise SystemExit("--world-seed must be >= 1000: pilots never touch the final study's world (seed 0)")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    t0 = time.perf_counter()
    spec = pilot_spec(args.world_seed, args.examples, args.numbers, args.drills, args.knowledge)
    world = W.make_world(spec)
    tasks = W.build_world_tasks(world, spec)
    tokenizer = ensure_chat_template(W.train_world_tokenizer(W.build_world_corpus(world, spec), tasks, 1024))
    rows = Dataset.from_list([{"messages": math_sft_messages(p.problem, p.solution)}
                              for p in tasks.math_train[:args.examples]])
    tokenized, _ = tokenize_sft(rows, tokenizer, args.seq_len, assistant_only_loss=True)
    packed = pack_rows(tokenized, args.seq_len, "bfd")
    steps = math.ceil(len(packed) * args.epochs / args.rows)
    sft_tokens = round(sum(len(ids) for ids in tokenized["input_ids"]) * args.epochs)  # tokens trained on
    cfg = tiny_qwen2_config(len(tokenizer), hidden_size=args.hidden, layers=args.layers, heads=4, kv_heads=2,
                            intermediate=4 * args.hidden,
                            max_pos=1024, bos_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                            pad_token_id=tokenizer.pad_token_id)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(cfg)
    print(f"params={sum(p.numel() for p in model.parameters()) / 1e6:.2f}M world_seed={args.world_seed} "
          f"examples={args.examples} numbers={args.numbers} drills={args.drills} knowledge={args.knowledge} epochs={args.epochs} schedule={args.schedule} layers={args.layers} hidden={args.hidden} sft_tokens={sft_tokens} rows={len(packed)} "
          f"steps={steps} lr={args.lr} threads={torch.get_num_threads()} setup={time.perf_counter() - t0:.0f}s",
          flush=True)
    test, probe = tasks.math_test[:args.eval], tasks.knowledge_probe[:args.eval]
    train_start = time.perf_counter()

    def run_eval(m, step):
        t = time.perf_counter()
        acc, sample = decode_accuracy(m, tokenizer, test)
        probe_acc, _ = decode_accuracy(m, tokenizer, probe)
        if args.samples:
            sampled, groups = decode_accuracy(m, tokenizer, test, batch=max(1, 40 // args.samples),
                                              samples=args.samples)
            print(f"step={step}/{steps} math_test sampled pass@1={sampled:.3f} (n={len(test)} x {args.samples}, "
                  f"T=0.6) {groups.split(']')[0]}]", flush=True)
        token_acc = solution_token_accuracy(m, tokenizer, test)
        print(f"step={step}/{steps} sft_tokens~{sft_tokens * step // steps} math_test={acc:.3f} (n={len(test)}) "
              f"knowledge_probe={probe_acc:.3f} (n={len(probe)}) train_s={t - train_start:.0f} "
              f"eval_s={time.perf_counter() - t:.0f}\n  teacher-forced solution tokens: {token_acc}\n  {sample[:400]}", flush=True)

    eval_steps = {max(1, round(f * steps)) for f in args.evals_at}
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=args.rows,
                           learning_rate=args.lr, lr_scheduler_type=args.schedule, warmup_steps=args.warmup or max(1, steps // 20),
                           weight_decay=0.0, max_length=args.seq_len, report_to="none", use_cpu=True,
                           save_strategy="no", logging_steps=max(1, steps // 5), disable_tqdm=True,
                           dataloader_num_workers=0, seed=args.seed, data_seed=args.seed, **PER_ROW_SFT_CONFIG)
        trainer = SFTTrainer(model=model, args=config, train_dataset=packed, processing_class=tokenizer,
                             data_collator=PerRowPackedCollator(tokenizer.pad_token_id, args.seq_len),
                             callbacks=[EvalAt(eval_steps, run_eval)])
        trainer.train()


if __name__ == "__main__":
    main()
