"""Training throughput (tokens/s) and MFU for an architecture with random weights on packed, padding-free batches.

    python benchmarks/train_throughput.py --model tiny --seq-len 512 --batch 8           # CPU, the miniature
    python benchmarks/train_throughput.py --model Qwen/Qwen2.5-1.5B --seq-len 32768 --batch 1 \
        --gradient-checkpointing --peak-flops 989e12                                     # one H100, bf16

One step = forward + backward + AdamW update on `batch` rows of `seq-len` tokens, each row packed with documents of
random length (position_ids restart per document, as TRL's bfd packing feeds the model). MFU = 6·N·tokens/s / peak,
N = all parameters (attention-score FLOPs are not counted, so MFU is a lower bound at long sequence lengths).
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from posttrain.models import default_attn_implementation, tiny_qwen2_config


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="'tiny' (the miniature's Qwen2), a hub id or a local config dir")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="packed rows per step")
    ap.add_argument("--mean-doc", type=int, default=0, help="mean document length in a packed row (0: seq-len/4)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--peak-flops", type=float, default=None,
                    help="peak FLOP/s for MFU (H100 SXM dense bf16: 989e12); default: 989e12 on GPU, none on CPU")
    args = ap.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    cfg = tiny_qwen2_config(2048) if args.model == "tiny" else AutoConfig.from_pretrained(args.model)
    cfg._attn_implementation = default_attn_implementation()
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


if __name__ == "__main__":
    main()
