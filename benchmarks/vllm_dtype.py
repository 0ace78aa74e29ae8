"""vLLM decode speed per engine dtype on a warm engine: why the miniature sets `evaluate.dtype: float32`.

`dtype: auto` makes vLLM run an fp32 checkpoint in bf16; CPUs without AVX-512 BF16 emulate it. For each dtype a
fresh process builds the engine (in-process core, as posttrain.generation does on CPU), runs one warm-up request,
then times the same batch (fixed length: ignore_eos) `--repeats` times. Model: benchmarks/generation.py's tiny
random Qwen2. Run: `.venv/bin/python benchmarks/vllm_dtype.py [--prompts 24 --n 5 --max-tokens 96]`.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from generation import build_model  # benchmarks/generation.py (this script's directory is on sys.path)


def worker(model: str, dtype: str, args) -> dict:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams
    llm = LLM(model=model, dtype=dtype, max_model_len=512, enforce_eager=True, seed=0)
    prompts = [f"<|im_start|>user\nProblem {i}: compute {i} * {i + 3}.<|im_end|>\n<|im_start|>assistant\n"
               for i in range(args.prompts)]
    sampling = SamplingParams(n=args.n, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, ignore_eos=True)
    llm.generate(prompts[:1], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    times, tokens = [], 0
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = llm.generate(prompts, sampling, use_tqdm=False)
        times.append(time.perf_counter() - t)
        tokens = sum(len(o.token_ids) for r in out for o in r.outputs)
    return {"dtype": dtype, "tokens": tokens, "seconds": [round(s, 2) for s in times],
            "tok_per_s": [round(tokens / s) for s in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(*args.worker, args)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        build_model(Path(tmp), args.hidden, args.layers, heads=args.hidden // 32, vocab=2048)
        print(f"model: hidden {args.hidden}, {args.layers} layers; {args.prompts} prompts x n={args.n} x "
              f"{args.max_tokens} tokens (ignore_eos), {os.cpu_count()} CPU cores")
        for dtype in args.dtypes.split(","):
            cmd = [sys.executable, __file__, "--worker", tmp, dtype] + sys.argv[1:]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise RuntimeError(f"{dtype} worker failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            print(lines[-1][len("RESULT "):])


if __name__ == "__main__":
    main()
