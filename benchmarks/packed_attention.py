"""Do packed rows keep their documents apart under an attention implementation? A tiny Qwen2 on a per_row batch
(two rows of 32 positions, 3 + 2 documents, position_ids restarting per document, no attention_mask) against each
document run alone; prints the largest logit difference and the wall time (torch.compile included for flex).

    .venv/bin/python benchmarks/packed_attention.py [--attn sdpa flex_attention]   (docs/training.md, "Attention")
"""
from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM

from posttrain.models import tiny_qwen2_config


def max_difference(attn: str, rows: list[list[int]], seed: int = 0) -> float:
    torch.manual_seed(seed)
    cfg = tiny_qwen2_config(200, hidden_size=64, heads=2, kv_heads=1, intermediate=128, layers=2)
    cfg._attn_implementation = attn
    model = AutoModelForCausalLM.from_config(cfg).eval()
    docs = [[torch.randint(0, 200, (n,)) for n in row] for row in rows]
    with torch.no_grad():
        alone = [torch.cat([model(input_ids=d[None], use_cache=False).logits[0] for d in row]) for row in docs]
        ids = torch.stack([torch.cat(row) for row in docs])
        pos = torch.stack([torch.cat([torch.arange(len(d)) for d in row]) for row in docs])
        packed = model(input_ids=ids, position_ids=pos, use_cache=False).logits
    return max((packed[i] - alone[i]).abs().max().item() for i in range(len(docs)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attn", nargs="+", default=["sdpa", "flex_attention"])
    args = ap.parse_args()
    for attn in args.attn:
        start = time.monotonic()
        diff = max_difference(attn, [[7, 12, 13], [5, 27]])
        print(f"{attn}: max |packed - alone| = {diff:.2e} ({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()
