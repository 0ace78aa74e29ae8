"""Training tokens/s of the miniature's TRL path next to a plain PyTorch loop on the same model and batches.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/mini_throughput.py                    # threads 1 and 2, SFT rows
    .venv/bin/python benchmarks/mini_throughput.py --stage pretrain --batch 16 --threads 1

Data: the generated world (posttrain.mini.world, a benchmark-only seed), its tokenizer (world-sized vocabulary),
math SFT examples through the chat template with assistant-only labels (or the corpus for --stage pretrain), packed
into rows of --seq-len by TRL's packer. Model: the miniature's 2-layer, 128-wide Qwen2, sdpa, fp32, same init for
every path. Paths, each timed over --steps steps after --warmup steps, for each thread count:
- plain: a hand-written loop (forward, backward, AdamW) over pre-collated per-row batches (posttrain.collate);
- trl-per-row: TRL's SFTTrainer with posttrain.collate (per-row packed rows, documents masked from each other);
- trl-per-row-hf-loss (--hf-loss): the same with transformers' loss in place of TRL's fused LM head;
- trl-padding-free (--padding-free): TRL's own packing=True path (today's trainer.py), the whole batch flattened.
These paths are built here by hand; benchmarks/train_throughput.py times the trainer's own code (training.batching
per_row, which uses transformers' loss on CPU like --hf-loss). Tokens counted per step = batch × seq-len (rows are padded to seq-len; the fill of packed rows is printed). The
plain loop is timed before and after the TRL path and averaged, so a load change on a shared CPU shows as a spread.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, Trainer
from trl import SFTConfig, SFTTrainer

from posttrain.collate import PER_ROW_SFT_CONFIG, PerRowPackedCollator, pack_rows
from posttrain.data import tokenize_pretrain, tokenize_sft
from posttrain.mini import world as W
from posttrain.models import tiny_qwen2_config
from posttrain.prompts import math_sft_messages
from train_throughput import StepClock, time_plain  # benchmarks/ is on sys.path when run as a script

BENCH_SPEC = W.WorldSpec(seed=1001, exposures_per_fact=40, arithmetic_docs=1500, program_docs=1500, story_docs=500,
                         math_train=4000, code_train=200, math_test=200, math_competition=100, code_test=200,
                         code_competition=100)


def build_data(stage: str, seq_len: int, vocab_size: int):
    world = W.make_world(BENCH_SPEC)
    corpus = W.build_world_corpus(world, BENCH_SPEC)
    tasks = W.build_world_tasks(world, BENCH_SPEC)
    tokenizer = W.train_world_tokenizer(corpus, tasks, vocab_size)
    if stage == "sft":
        rows = Dataset.from_list([{"messages": math_sft_messages(p.problem, p.solution)} for p in tasks.math_train])
        tokenized, _ = tokenize_sft(rows, tokenizer, seq_len, assistant_only_loss=True)
        return tokenizer, tokenized, pack_rows(tokenized, seq_len, "bfd")
    tokenized = tokenize_pretrain(Dataset.from_dict({"text": corpus}), tokenizer)
    return tokenizer, tokenized, pack_rows(tokenized, seq_len, "bfd_split")


def build_model(vocab_size: int):
    cfg = tiny_qwen2_config(vocab_size, hidden_size=128, layers=2, heads=4, kv_heads=2, intermediate=512,
                            max_pos=1024)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.config.use_cache = False
    return model


class HFLossSFTTrainer(SFTTrainer):
    """SFTTrainer with transformers' own loss (full logits, cross-entropy) instead of TRL's fused, tiled LM head and
    its per-step entropy/accuracy metrics."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


def time_trl(model, tokenizer, dataset, batch: int, seq_len: int, steps: int, warmup: int, per_row: bool,
             hf_loss: bool = False) -> float:
    clock = StepClock(warmup)
    with tempfile.TemporaryDirectory() as out:
        common = dict(output_dir=out, max_steps=warmup + steps, per_device_train_batch_size=batch, learning_rate=1e-3,
                      max_length=seq_len, report_to="none", use_cpu=True, save_strategy="no", logging_steps=1000,
                      dataloader_num_workers=0, disable_tqdm=True, seed=0)
        if per_row:
            config = SFTConfig(**common, **PER_ROW_SFT_CONFIG)
            collator = PerRowPackedCollator(tokenizer.pad_token_id, pad_to=seq_len)
        else:  # today's trainer.py: TRL packs and flattens the batch (padding-free)
            config = SFTConfig(**common, packing=True, packing_strategy="bfd", padding_free=True,
                               assistant_only_loss=False, completion_only_loss=False)
            collator = None
        trainer = (HFLossSFTTrainer if hf_loss else SFTTrainer)(model=copy.deepcopy(model), args=config, train_dataset=dataset,
                             processing_class=tokenizer, data_collator=collator, callbacks=[clock])
        trainer.train()
    return clock.end - clock.start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=["sft", "pretrain"], default="sft")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="packed rows per step")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--vocab-size", type=int, default=1024)
    ap.add_argument("--padding-free", action="store_true", help="also time TRL's padding-free packing (today's path)")
    ap.add_argument("--hf-loss", action="store_true",
                    help="also time the per-row path with transformers' loss instead of TRL's fused LM head")
    args = ap.parse_args()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()

    t0 = time.perf_counter()
    tokenizer, tokenized, packed = build_data(args.stage, args.seq_len, args.vocab_size)
    model = build_model(max(args.vocab_size, len(tokenizer)))
    collate = PerRowPackedCollator(tokenizer.pad_token_id, pad_to=args.seq_len)
    n = args.warmup + args.steps
    batches = [collate([packed[j] for j in range(i * args.batch, (i + 1) * args.batch)]) for i in range(n)]
    fill = sum(sum(packed[j]["seq_lengths"]) for j in range(n * args.batch)) / (n * args.batch * args.seq_len)
    params = sum(p.numel() for p in model.parameters())
    print(f"torch={torch.__version__} transformers={transformers.__version__} load_avg={os.getloadavg()[0]:.1f}")
    print(f"stage={args.stage} rows={len(packed)} fill={fill:.2f} vocab={len(tokenizer)} params={params / 1e6:.2f}M "
          f"batch={args.batch}x{args.seq_len} steps={args.steps} (+{args.warmup} warmup) "
          f"setup={time.perf_counter() - t0:.0f}s")
    tokens = args.steps * args.batch * args.seq_len
    for threads in args.threads:
        torch.set_num_threads(threads)
        plain_a = tokens / time_plain(model, batches, args.warmup)
        trl = tokens / time_trl(model, tokenizer, packed, args.batch, args.seq_len, args.steps, args.warmup, True)
        plain_b = tokens / time_plain(model, batches, args.warmup)
        plain = (plain_a + plain_b) / 2
        line = (f"threads={threads}  plain={plain:,.0f} tok/s (runs {plain_a:,.0f}, {plain_b:,.0f})  "
                f"trl-per-row={trl:,.0f} tok/s  ratio={trl / plain:.2f}")
        if args.hf_loss:
            hf = tokens / time_trl(model, tokenizer, packed, args.batch, args.seq_len, args.steps, args.warmup, True,
                                   hf_loss=True)
            line += f"  trl-per-row-hf-loss={hf:,.0f} tok/s ({hf / plain:.2f})"
        if args.padding_free:
            flat = tokens / time_trl(model, tokenizer, tokenized, args.batch, args.seq_len, args.steps, args.warmup,
                                     False)
            line += f"  trl-padding-free={flat:,.0f} tok/s ({flat / plain:.2f})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
