"""vLLM vs HF `generate` throughput on the same tiny random Qwen2 model and prompts, through posttrain.generation.

Builds a BPE tokenizer (trained here with `tokenizers`) and a random Qwen2 model (head_dim 32: the smallest vLLM's CPU
attention accepts), then runs the generation worker (`python -m posttrain.generation`) for each engine twice: a
1-token request (= start-up: interpreter, model load, KV-cache allocation) and the full request.
Decode throughput = generated tokens / (full - start-up).
Run: `.venv/bin/python benchmarks/generation.py [--prompts 20 --n 10 ...]`; a miniature's model and prompts:
`--model runs/mini/sft/math_0pre/checkpoint-N --prompts-file runs/mini/setup/data/mini_math_test.jsonl --prompts 240
--n 4 --max-tokens 192 --hf-batch 64 256 1024`.
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

from posttrain.generation import GenerationRequest


def build_model(path: Path, hidden: int, layers: int, heads: int, vocab: int) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    corpus = [f"Problem {i}: compute {i} * {i + 3} + {i % 7}. The answer is \\boxed{{{i * (i + 3) + i % 7}}}."
              for i in range(3000)] + ["def solve():\n    a, b = map(int, input().split())\n    print(a + b)\n"] * 50
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=max(1, heads // 2), intermediate_size=4 * hidden,
                      max_position_embeddings=1024, eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).save_pretrained(path)


def time_engine(engine: str, model: str, prompts: list[dict], args, workdir: Path, hf_batch: int = 64) -> dict:
    # Each request runs in a fresh process (vLLM does not free an engine for a second one in the same process),
    # so both timings include interpreter + engine start-up; the 1-token request measures that start-up alone.
    def run(name, prompts, n, max_tokens):
        out = workdir / f"{engine}_{name}.jsonl"
        out.unlink(missing_ok=True)
        req = GenerationRequest(model=model, tokenizer=model, prompts=prompts, output=str(out), n=n,
                                temperature=0.6, top_p=0.95, max_tokens=max_tokens, seed=0, dtype=args.dtype,
                                hf_batch_sequences=hf_batch, chunk_size=max(256, len(prompts)))
        req.save(workdir / "request.json")
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "posttrain.generation", str(workdir / "request.json"), engine],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{engine} worker failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        seconds = time.perf_counter() - t
        tokens = sum(sum(json.loads(line)["num_tokens"]) for line in open(out))
        return seconds, tokens
    startup, _ = run("warmup", prompts[:1], 1, 1)
    total, tokens = run("full", prompts, args.n, args.max_tokens)
    return {"engine": engine, **({"hf_batch_sequences": hf_batch} if engine == "hf" else {}),
            "startup_s": round(startup, 1), "total_s": round(total, 1), "tokens": tokens,
            "end_to_end_tok_per_s": round(tokens / total),
            # None when start-up noise exceeds the decode time (a loaded machine): rerun with more prompts
            "decode_tok_per_s": round(tokens / (total - startup)) if total > 1.2 * startup else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--dtype", default="float32", help="same dtype for both engines (vLLM's CPU default is bf16)")
    ap.add_argument("--engines", default="vllm,hf")
    ap.add_argument("--hf-batch", type=int, nargs="+", default=[64],
                    help="HF engine: sequences per generate call (one run each)")
    ap.add_argument("--model", help="an existing model dir (e.g. a miniature checkpoint) instead of a random one")
    ap.add_argument("--prompts-file", help="benchmark rows (JSONL with `problem`) to prompt with, OMR's math prompt")
    args = ap.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}")
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else Path(tmp) / "model"
        if not args.model:
            build_model(model, args.hidden, args.layers, args.heads, args.vocab)
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(model)
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
        if args.prompts_file:
            from posttrain.prompts import OMR_MATH_PROMPT
            from posttrain.records import read_jsonl
            texts = [OMR_MATH_PROMPT.format(problem=r["problem"]) for r in read_jsonl(args.prompts_file)]
        else:
            texts = [f"Problem {i}: compute {i} * {i + 3} + {i % 7}." for i in range(args.prompts)]
        prompts = [{"key": {"i": i}, "prompt": tok.apply_chat_template(
            [{"role": "user", "content": t}], add_generation_prompt=True, tokenize=False)}
            for i, t in enumerate(texts[:args.prompts])]
        print(f"model: hidden {args.hidden}, {args.layers} layers, {args.heads} heads, vocab {len(tok)}, "
              f"{params / 1e6:.2f}M params, {args.dtype}; {args.prompts} prompts x n={args.n}, "
              f"<= {args.max_tokens} new tokens, T=0.6, top-p 0.95; {os.cpu_count()} CPU cores")
        for engine in args.engines.split(","):
            for hf_batch in (args.hf_batch if engine == "hf" else [64]):
                print(json.dumps(time_engine(engine, str(model), prompts, args, Path(tmp), hf_batch)), flush=True)


if __name__ == "__main__":  # vLLM spawns processes: the guard is required
    main()
