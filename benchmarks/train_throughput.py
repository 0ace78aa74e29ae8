"""Training tokens/s: the miniature's real training path next to a plain PyTorch loop (CPU), or one architecture's
plain-loop throughput and MFU (GPU).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_throughput.py                 # miniature, SFT, per-row
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_throughput.py --stage pretrain --batch 16
    .venv/bin/python benchmarks/train_throughput.py --model Qwen/Qwen2.5-1.5B --seq-len 32768 --batch 1 \
        --gradient-checkpointing --peak-flops 989e12                                 # one H100, bf16

Miniature (no --model): a world generated with a benchmark-only seed (posttrain.mini.world), its tokenizer
(--vocab-size), the miniature's 2-layer, 128-wide Qwen2 (scratch, depth-scaled init, fp32, sdpa), and math SFT
examples with assistant-only labels (or the world corpus for --stage pretrain), written to a temporary dir as a run's
files. Two paths, each --steps steps timed after --warmup steps, on --batch rows of --seq-len tokens:
- trl: posttrain.trainer.build_trainer on a RunParams with training.batching per_row — the code
  `python -m posttrain.trainer` runs (TRL's SFTTrainer, data loading, collation, logging every 10 steps);
  TRL's padding-free path (batching padding_free) is timed by benchmarks/mini_throughput.py --padding-free;
- plain: forward, backward, clip, AdamW on the same model (same init) over the first batches of that Trainer's own
  data loader, collated beforehand; timed before and after the trl path and averaged, so a load change on the
  shared CPU shows as a spread between the two plain runs.
Tokens/s counts positions (batch × seq-len per step; the fill of the packed rows is printed). Prints the ratio
trl / plain (issue 13 asks for >= 0.7).

Architecture (--model NAME, "tiny" for the miniature's config): the plain loop alone on random packed rows flattened
padding-free; MFU = 6·N·tokens/s / peak, N = all parameters (attention-score FLOPs not counted: a lower bound).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PrinterCallback, ProgressCallback, TrainerCallback

from posttrain.models import select_attn_implementation, tiny_qwen2_config
from posttrain.params import ModelParams, TrainingParams


# ------------------------------------------------------------------------------------------------ miniature


class StepClock(TrainerCallback):
    """Wall time from the end of the warmup steps to the end of the last step."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def write_mini_run_files(root: Path, stage: str, vocab_size: int) -> tuple[Path, Path]:
    """A world's tokenizer + the miniature's model config (root/base) and its training data as JSONL."""
    from posttrain.mini import world as W
    from posttrain.prompts import math_sft_messages

    spec = W.WorldSpec(seed=1001, exposures_per_fact=40, arithmetic_docs=1500, program_docs=1500, story_docs=500,
                       math_train=4000, code_train=200, math_test=200, math_competition=100, code_test=200,
                       code_competition=100)  # a seed no study uses; sizes as in benchmarks/mini_throughput.py
    world = W.make_world(spec)
    corpus = W.build_world_corpus(world, spec)
    tasks = W.build_world_tasks(world, spec)
    tokenizer = W.train_world_tokenizer(corpus, tasks, vocab_size)
    base = root / "base"
    tokenizer.save_pretrained(base)
    tiny_qwen2_config(max(vocab_size, len(tokenizer)), hidden_size=128, layers=2, heads=4, kv_heads=2,
                      intermediate=512, max_pos=1024).save_pretrained(base)
    rows = ([{"messages": math_sft_messages(p.problem, p.solution)} for p in tasks.math_train] if stage == "sft"
            else [{"text": text} for text in corpus])
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return base, data


def mini_run_params(root: Path, base: Path, data: Path, args) -> "RunParams":
    from posttrain.params import RunParams

    sft = args.stage == "sft"
    return RunParams.model_validate({
        "name": "throughput", "arm": "0%-Pre", "size": "mini", "domain": "math" if sft else None,
        "output_dir": str(root / "run"),
        "model": {"name_or_path": str(base), "init": "scratch", "dtype": "float32"},
        "data": {"source": "messages_jsonl" if sft else "text_jsonl", "path": str(data), "streaming": False},
        "training": {"stage": args.stage, "max_length": args.seq_len, "per_device_batch_size": args.batch,
                     "tokens_per_step": args.batch * args.seq_len, "max_steps": args.warmup + args.steps,
                     "warmup_steps": 1, "learning_rate": 1e-3, "bf16": False, "gradient_checkpointing": False,
                     "use_liger": "off", "packing": True, "batching": "per_row", "assistant_only_loss": sft,
                     "save_steps": 10**6, "logging_steps": 10, "use_cpu": True}})


def time_plain(model, batches: list[dict], warmup: int) -> float:
    """Seconds for the batches after the first `warmup`: forward, backward, clip, AdamW, nothing else."""
    import copy

    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = None
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        model(**batch, use_cache=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def build_timed_trainer(params, warmup: int):
    """posttrain.trainer's Trainer for `params` (what train_in_process trains), with a StepClock and no progress
    output → (trainer, clock)."""
    from transformers import set_seed

    from posttrain.runs import resolve_schedule
    from posttrain.trainer import build_trainer

    set_seed(params.training.seed)  # as train_in_process does before building
    clock = StepClock(warmup)
    trainer, _ = build_trainer(params, resolve_schedule(params, 1), extra_callbacks=(clock,))
    for quiet in (ProgressCallback, PrinterCallback):  # the run's own progress bar and log lines: noise here
        trainer.remove_callback(quiet)
    return trainer, clock


def compare_mini(args) -> None:
    import datasets
    import transformers

    from posttrain.collate import REAL_TOKENS
    from posttrain.models import build_model

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    n = args.warmup + args.steps
    positions = args.steps * args.batch * args.seq_len
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base, data = write_mini_run_files(root, args.stage, args.vocab_size)
        params = mini_run_params(root, base, data, args)
        trainer, clock = build_timed_trainer(params, args.warmup)
        plain_model = build_model(params.model, dtype=torch.float32)  # same init as the Trainer's model
        plain_model.config.use_cache = False
        batches, real = [], 0
        for batch in trainer.get_train_dataloader():
            if len(batches) == n:
                break
            real += int(batch.pop(REAL_TOKENS))
            batches.append(batch)
        if len(batches) < n:
            raise SystemExit(f"the data gives {len(batches)} batches, fewer than --warmup + --steps = {n}")
        print(f"torch={torch.__version__} transformers={transformers.__version__} threads={args.threads} "
              f"load_avg={os.getloadavg()[0]:.1f}")
        print(f"stage={args.stage} batching=per_row vocab={len(trainer.processing_class)} "
              f"params={sum(p.numel() for p in plain_model.parameters()) / 1e6:.2f}M "
              f"batch={args.batch}x{args.seq_len} fill={real / (n * args.batch * args.seq_len):.2f} "
              f"steps={args.steps} (+{args.warmup} warmup) transformers_loss={trainer.transformers_loss} "
              f"setup={time.perf_counter() - t0:.0f}s", flush=True)
        plain_a = positions / time_plain(plain_model, batches, args.warmup)
        trainer.train()
        trl = positions / (clock.end - clock.start)
        fused = None
        if args.trl_loss:  # the same path with TRL's fused LM head (what trainer.py uses on GPU)
            del trainer
            fused_trainer, fused_clock = build_timed_trainer(
                params.model_copy(update={"output_dir": str(root / "run-trl-loss")}), args.warmup)
            fused_trainer.transformers_loss = False
            fused_trainer.train()
            fused = positions / (fused_clock.end - fused_clock.start)
        plain_b = positions / time_plain(plain_model, batches, args.warmup)
    plain = (plain_a + plain_b) / 2
    print(f"plain={plain:,.0f} tok/s (runs {plain_a:,.0f}, {plain_b:,.0f})  trl-per-row={trl:,.0f} tok/s  "
          f"ratio={trl / plain:.2f}" + (f"  trl-per-row-fused-loss={fused:,.0f} tok/s ({fused / plain:.2f})"
                                        if fused else "") + f"  load_avg={os.getloadavg()[0]:.1f}")


# ------------------------------------------------------------------------------------------------ architecture


def packed_batch(batch: int, seq_len: int, vocab: int, mean_doc: int, gen: torch.Generator) -> dict:
    position_ids = []
    for _ in range(batch):
        pos, left = [], seq_len
        while left:
            n = min(left, int(torch.randint(mean_doc // 2, mean_doc * 3 // 2 + 1, (1,), generator=gen)))
            pos.append(torch.arange(n))
            left -= n
        position_ids.append(torch.cat(pos))
    ids = torch.randint(0, vocab, (1, batch * seq_len), generator=gen)  # padding-free: rows flattened into one
    return {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.cat(position_ids)[None]}


def architecture_throughput(args) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    cfg = tiny_qwen2_config(2048) if args.model == "tiny" else AutoConfig.from_pretrained(args.model)
    # The trainer's choice for packed rows of this length (a GPU without a document-masked kernel is refused).
    cfg._attn_implementation = select_attn_implementation(
        ModelParams(name_or_path=args.model, init="scratch", attn_implementation=args.attn),
        TrainingParams(stage="pretrain", max_length=args.seq_len, assistant_only_loss=False), device == "cuda")
    model = AutoModelForCausalLM.from_config(cfg, dtype=dtype).to(device)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(0)
    batch = {k: v.to(device) for k, v in packed_batch(args.batch, args.seq_len, cfg.vocab_size,
                                                      args.mean_doc or max(args.seq_len // 4, 2), gen).items()}
    tokens_per_step = args.batch * args.seq_len

    def step():
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tps = tokens_per_step * args.steps / seconds
    peak = args.peak_flops or (989e12 if device == "cuda" else None)
    print(f"model={args.model} params={n_params / 1e6:.2f}M device={device} dtype={str(dtype).split('.')[-1]} "
          f"attn={cfg._attn_implementation} seq_len={args.seq_len} batch={args.batch} threads={torch.get_num_threads()}")
    print(f"tokens/s={tps:,.0f}  step_s={seconds / args.steps:.3f}  model_TFLOP/s={6 * n_params * tps / 1e12:.3f}"
          + (f"  MFU={6 * n_params * tps / peak:.1%} (peak {peak:.3g})" if peak else ""))
    if device == "cuda":
        print(f"peak_memory_GiB={torch.cuda.max_memory_allocated() / 2**30:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None,
                    help="architecture mode: 'tiny' or a hub id / config dir; default: the miniature comparison")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="packed rows per step")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--stage", choices=["sft", "pretrain"], default="sft", help="miniature: SFT rows or the corpus")
    ap.add_argument("--vocab-size", type=int, default=1024, help="miniature: the world tokenizer's vocabulary")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="miniature: torch threads")
    ap.add_argument("--trl-loss", action="store_true",
                    help="miniature: also time the trl path with TRL's fused LM-head loss (trainer.py's GPU choice)")
    ap.add_argument("--mean-doc", type=int, default=0, help="architecture: mean document length (0: seq-len/4)")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default=None,
                    help="architecture: default bf16 on GPU, fp32 on CPU")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--attn", default=None, help="architecture: model.attn_implementation (default: the trainer's choice)")
    ap.add_argument("--peak-flops", type=float, default=None,
                    help="architecture: peak FLOP/s for MFU (H100 SXM dense bf16: 989e12); default 989e12 on GPU")
    args = ap.parse_args()
    if args.model is None:
        compare_mini(args)
    else:
        architecture_throughput(args)


if __name__ == "__main__":
    main()
