"""Write the paper-scale training params, params/paper/{pretrain,sft}_*.yaml, from one recipe.

    .venv/bin/python scripts/make_paper_params.py           # (re)write the 28 files
    .venv/bin/python scripts/make_paper_params.py --check   # exit 1 naming every file that differs from the recipe

The study (params/paper/study.yaml) lists these files; edit the recipe here, never the generated files:
tests/test_params.py fails when a committed file differs from what this script writes.
Recipe (the paper's): per size, a short pre-training (10B DCLM tokens, constant LR 1e-4 after 500 warmup steps,
from depth-scaled random init) and, per domain and arm, SFT for 50k steps of 2M tokens at 32k context, cosine LR
3e-4, from random weights (0%-Pre), from the short pre-training (0.1%-Pre) or from the released base (100%-Pre).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

PAPER_DIR = Path(__file__).resolve().parents[1] / "params" / "paper"

# size -> (hub model, machines of 8 GPUs): FSDP2 shards the larger models over more nodes.
SIZES = {"1.5B": ("Qwen/Qwen2.5-1.5B", 1), "3B": ("Qwen/Qwen2.5-3B", 2), "7B": ("Qwen/Qwen2.5-7B", 4),
         "14B": ("Qwen/Qwen2.5-14B", 8)}
GPUS_PER_MACHINE = 8
DOMAINS = ("math", "code")
ARMS = {"0pre": "0%-Pre", "0.1pre": "0.1%-Pre", "100pre": "100%-Pre"}  # file suffix -> arm
SFT_DATA = {"math": {"source": "open_math_reasoning", "split": "cot"},
            "code": {"source": "open_code_reasoning_2", "languages": ["python", "cpp"]}}
OUTPUT_ROOT = "{repo}/runs/paper"


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
        "data": {"source": "dclm", "streaming": True, "seed": 0},
        "training": {"stage": "pretrain", "max_length": 4096, "learning_rate": 1.0e-4,
                     "lr_scheduler": "constant_with_warmup", "warmup_steps": 500, "max_steps": None,
                     "token_budget": 10_000_000_000, "tokens_per_step": 2 * 1024 * 1024,
                     "per_device_batch_size": 4, "assistant_only_loss": False, "packing": True, "save_steps": 500,
                     "seed": 0},
        "launch": _launch(size)}
    return f"Short (0.1%) pre-training of {size} from depth-scaled random init: 10B DCLM tokens.", params


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
        "data": {**SFT_DATA[domain], "streaming": True, "seed": 0},
        "training": {"stage": "sft", "max_length": 32768, "learning_rate": 3.0e-4, "lr_scheduler": "cosine",
                     "warmup_steps": 2000, "max_steps": 50000, "tokens_per_step": 2 * 1024 * 1024,
                     "per_device_batch_size": 1, "assistant_only_loss": True, "packing": True, "save_steps": 5000,
                     "seed": 0},
        "launch": _launch(size)}
    return f"SFT of the {ARMS[arm_suffix]} arm, {size}, {domain}: 50k steps x 2M tokens at 32k.", params


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
    args = ap.parse_args(argv)
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
