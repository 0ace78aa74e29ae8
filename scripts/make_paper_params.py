"""Write the paper-scale training params, params/paper/{pretrain,sft}_*.yaml, from one recipe.

    .venv/bin/python scripts/make_paper_params.py           # (re)write the 28 files
    .venv/bin/python scripts/make_paper_params.py --check   # exit 1 naming every file that differs from the recipe
    .venv/bin/python scripts/make_paper_params.py --table   # per size: steps between saves, checkpoint sizes

The study (params/paper/study.yaml) lists these files; edit the recipe here, never the generated files:
tests/test_params.py fails when a committed file differs from what this script writes.
Recipe (the paper's): per size, a short pre-training (10B DCLM tokens, constant LR 1e-4 after 500 warmup steps,
from depth-scaled random init, at the SFT phase's 32k sequence length: the paper says pre-training "retains the
configuration of the SFT phase") and, per domain and arm, SFT for 50k steps of 2M tokens at 32k context, cosine LR
3e-4, from random weights (0%-Pre), from the finished short pre-training (0.1%-Pre) or from the released base
(100%-Pre). Ours on top: resume checkpoints about every RESUME_MINUTES of compute (estimated below), the last two
kept; SFT evaluation snapshots (bf16 weights) every 5k steps as the paper evaluates; TensorBoard logs. Outputs go
under {run_dir} (the study's run_dir, or `--run-dir` of a standalone launch).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import yaml

PAPER_DIR = Path(__file__).resolve().parents[1] / "params" / "paper"

# size -> (hub model, machines of 8 GPUs): FSDP2 shards the larger models over more nodes.
SIZES = {"1.5B": ("Qwen/Qwen2.5-1.5B", 1), "3B": ("Qwen/Qwen2.5-3B", 2), "7B": ("Qwen/Qwen2.5-7B", 4),
         "14B": ("Qwen/Qwen2.5-14B", 8)}
# size -> (parameters, decoder layers, hidden size) of the hub configs (tests/fixtures/qwen2.5/; tests/test_params.py
# recounts the parameters from those configs).
ARCH = {"1.5B": (1_543_714_304, 28, 1536), "3B": (3_085_938_688, 36, 2048), "7B": (7_615_616_512, 28, 3584),
        "14B": (14_770_033_664, 48, 5120)}
GPUS_PER_MACHINE = 8
TOKENS_PER_STEP = 2 * 1024 * 1024
SEQ_LEN = 32768
SNAPSHOT_STEPS = 5000  # the paper evaluates every 5k SFT steps
# Resume checkpoints: about every RESUME_MINUTES of estimated compute, at a divisor of SNAPSHOT_STEPS. The estimate
# (not measured: no GPU was lent to this work): model FLOPs per token = 6 N + 6 L d S (attention within packed
# documents of mean length S, causal, forward + backward) at ASSUMED_MFU of an H100's dense bf16 peak.
RESUME_MINUTES = 45
H100_BF16_FLOPS = 989e12
ASSUMED_MFU = 0.35
MEAN_DOC_TOKENS = 8192
# Bytes per parameter: a resume checkpoint under FSDP2 holds the sharded fp32 weights (4; FSDP keeps fp32 masters
# under bf16 mixed precision) and AdamW's two fp32 moments (8), plus the consolidated fp32 weights
# posttrain.trainer.Trainer.save_model adds so the checkpoint loads with from_pretrained (4). A snapshot: bf16 weights.
RESUME_BYTES_PER_PARAM = 4 + 8 + 4
SNAPSHOT_BYTES_PER_PARAM = 2
DOMAINS = ("math", "code")
ARMS = {"0pre": "0%-Pre", "0.1pre": "0.1%-Pre", "100pre": "100%-Pre"}  # file suffix -> arm
SFT_DATA = {"math": {"source": "open_math_reasoning", "split": "cot"},
            "code": {"source": "open_code_reasoning_2", "languages": ["python", "cpp"]}}
OUTPUT_ROOT = "{run_dir}"
# Tokenized, packed training data (python -m posttrain.prepare): hub data is read only prepared, once per dataset.
PREPARED_DIR = f"{OUTPUT_ROOT}/prepared"


def step_seconds(size: str) -> float:
    """Estimated seconds per optimizer step (TOKENS_PER_STEP tokens) of one size on its GPUs."""
    params, layers, hidden = ARCH[size]
    flops_per_token = 6 * params + 6 * layers * hidden * MEAN_DOC_TOKENS
    gpus = SIZES[size][1] * GPUS_PER_MACHINE
    return TOKENS_PER_STEP * flops_per_token / (gpus * H100_BF16_FLOPS * ASSUMED_MFU)


def resume_steps(size: str) -> int:
    """Steps between resume checkpoints: the divisor of SNAPSHOT_STEPS nearest to RESUME_MINUTES of compute."""
    target = RESUME_MINUTES * 60 / step_seconds(size)
    divisors = [d for d in range(1, SNAPSHOT_STEPS + 1) if SNAPSHOT_STEPS % d == 0]
    return min(divisors, key=lambda d: abs(math.log(d / target)))


def checkpoint_table() -> str:
    """Markdown: per size, the estimated step time, steps and minutes between resume checkpoints, and the size of
    one resume checkpoint and one evaluation snapshot (docs/training.md)."""
    rows = ["| size | parameters | est. s/step | resume every | resume checkpoint | kept (2) | snapshot (bf16) "
            "| 10 snapshots per SFT run |", "|---|---|---|---|---|---|---|---|"]
    for size, (params, _, _) in ARCH.items():
        steps, gb = resume_steps(size), 1e9
        rows.append(f"| {size} | {params / 1e9:.2f}B | {step_seconds(size):.1f} | {steps} steps "
                    f"(~{steps * step_seconds(size) / 60:.0f} min) | {params * RESUME_BYTES_PER_PARAM / gb:.0f} GB "
                    f"| {2 * params * RESUME_BYTES_PER_PARAM / gb:.0f} GB | {params * SNAPSHOT_BYTES_PER_PARAM / gb:.1f} GB "
                    f"| {10 * params * SNAPSHOT_BYTES_PER_PARAM / gb:.0f} GB |")
    return "\n".join(rows)


def _slug(size: str) -> str:
    return size.lower()


def _launch(size: str) -> dict:
    return {"backend": "fsdp2", "num_machines": SIZES[size][1], "gpus_per_machine": GPUS_PER_MACHINE}


def pretrain_run(size: str) -> tuple[str, dict]:
    """(header comment, params) of the short pre-training of one size."""
    name = f"pretrain_{_slug(size)}_short"
    params = {
        "name": name, "arm": "0.1%-Pre", "size": size, "output_dir": f"{OUTPUT_ROOT}/pretrain/{name}",
        "model": {"name_or_path": SIZES[size][0], "init": "scratch", "depth_scaled_init": "paper", "init_seed": 0,
                  "dtype": "bfloat16"},
        "data": {"source": "dclm", "streaming": True, "seed": 0, "prepared_dir": PREPARED_DIR},
        "training": {"stage": "pretrain", "max_length": SEQ_LEN, "learning_rate": 1.0e-4,
                     "lr_scheduler": "constant_with_warmup", "warmup_steps": 500, "max_steps": None,
                     "token_budget": 10_000_000_000, "tokens_per_step": TOKENS_PER_STEP,
                     "per_device_batch_size": 1, "assistant_only_loss": False, "packing": True,
                     "save_steps": resume_steps(size), "save_total_limit": 2, "report_to": "tensorboard",
                     "seed": 0},
        "launch": _launch(size)}
    return (f"Short (0.1%) pre-training of {size} from depth-scaled random init: 10B DCLM tokens at 32k; "
            f"resume checkpoints every {resume_steps(size)} steps (~{resume_steps(size) * step_seconds(size) / 60:.0f} min est.), the last two kept."), params


def _sft_model(size: str, arm_suffix: str) -> dict:
    model = {"name_or_path": SIZES[size][0]}
    if arm_suffix == "0pre":
        model |= {"init": "scratch", "dtype": "bfloat16", "depth_scaled_init": "paper", "init_seed": 0}
    elif arm_suffix == "0.1pre":
        model |= {"init": "checkpoint", "dtype": "bfloat16",
                  "checkpoint": f"{OUTPUT_ROOT}/pretrain/{pretrain_run(size)[1]['name']}"}
    else:
        model |= {"init": "pretrained", "dtype": "bfloat16"}
    return model


def sft_run(domain: str, size: str, arm_suffix: str) -> tuple[str, dict]:
    """(header comment, params) of one SFT run."""
    name = f"sft_{domain}_{_slug(size)}_{arm_suffix}"
    params = {
        "name": name, "arm": ARMS[arm_suffix], "size": size, "domain": domain,
        "output_dir": f"{OUTPUT_ROOT}/sft/{name}", "model": _sft_model(size, arm_suffix),
        "data": {**SFT_DATA[domain], "streaming": True, "seed": 0, "prepared_dir": PREPARED_DIR},
        "training": {"stage": "sft", "max_length": SEQ_LEN, "learning_rate": 3.0e-4, "lr_scheduler": "cosine",
                     "warmup_steps": 2000, "max_steps": 50000, "tokens_per_step": TOKENS_PER_STEP,
                     "per_device_batch_size": 1, "assistant_only_loss": True, "packing": True,
                     "save_steps": resume_steps(size), "save_total_limit": 2, "snapshot_steps": SNAPSHOT_STEPS,
                     "report_to": "tensorboard", "seed": 0},
        "launch": _launch(size)}
    return (f"SFT of the {ARMS[arm_suffix]} arm, {size}, {domain}: 50k steps x 2M tokens at 32k; evaluation "
            f"snapshots every {SNAPSHOT_STEPS} steps, resume checkpoints every {resume_steps(size)}."), params


def render(comment: str, params: dict) -> str:
    return f"# {comment}\n" + yaml.safe_dump(params, sort_keys=False)


def paper_files() -> dict[str, str]:
    """File name -> its full text, for every generated paper params file."""
    runs = [pretrain_run(size) for size in SIZES]
    runs += [sft_run(domain, size, arm) for domain in DOMAINS for size in SIZES for arm in ARMS]
    return {f"{params['name']}.yaml": render(comment, params) for comment, params in runs}


def stale_files(directory: Path = PAPER_DIR) -> list[str]:
    """Names of generated files that are missing in `directory` or differ from the recipe."""
    return [name for name, text in paper_files().items()
            if not (directory / name).is_file() or (directory / name).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file differs from the recipe")
    ap.add_argument("--table", action="store_true", help="print the checkpoint table of docs/training.md")
    args = ap.parse_args(argv)
    if args.table:
        print(checkpoint_table())
        return 0
    if args.check:
        stale = stale_files()
        if stale:
            print(f"differ from scripts/make_paper_params.py: {', '.join(stale)}", file=sys.stderr)
        return 1 if stale else 0
    files = paper_files()
    for name, text in files.items():
        (PAPER_DIR / name).write_text(text)
    print(f"wrote {len(files)} files to {PAPER_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
