"""One training run (pre-training or SFT) with TRL's SFTTrainer, resumable, plus the command that launches it.

    python -m posttrain.training --params params/paper/sft_math_1.5b_0pre.yaml            # one process
    accelerate launch --config_file configs/accelerate/fsdp2.yaml -m posttrain.training --params FILE
    python -m posttrain.training --params FILE --print-launch                              # the accelerate command

Writes to params.output_dir: checkpoint-N/ (model + tokenizer, loadable by from_pretrained and vLLM), loss.jsonl
(step, loss, lr, tokens, grad_norm), data_stats.json (dropped long examples), params.resolved.yaml, and done.json with
the params hash at the end. A restarted run continues from its latest complete checkpoint. Tests: tests/test_training.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from posttrain.data import (DropCounter, ensure_chat_template, load_pretrain_text, load_sft_messages, tokenize_pretrain,
                            tokenize_sft)
from posttrain.models import CHECKPOINT_RE, build_model, build_tokenizer
from posttrain.params import REPO_ROOT, TrainParams, dump_params, load_train_params, params_hash

log = logging.getLogger(__name__)

LOSS_LOG = "loss.jsonl"
DONE_MARKER = "done.json"
DATA_STATS = "data_stats.json"
ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"


# ------------------------------------------------------------------------------------------------ schedule


def world_size() -> int:
    """Processes in the job, from the env `accelerate launch`/torchrun set (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_schedule(params: TrainParams, num_processes: int | None = None) -> dict:
    """gradient_accumulation_steps and max_steps from the token-denominated recipe.

    tokens/step = per_device_batch_size × max_length × world_size × grad_accum (packed sequences are full, up to the
    packing remainder); max_steps = ceil(token_budget / tokens_per_step) when a budget is given."""
    t = params.training
    world = num_processes or world_size()
    tokens_per_micro_step = t.per_device_batch_size * t.max_length * world
    if t.gradient_accumulation_steps is not None:
        accum = t.gradient_accumulation_steps
    else:
        accum, remainder = divmod(t.tokens_per_step, tokens_per_micro_step)
        if accum < 1 or remainder:
            raise ValueError(
                f"training.tokens_per_step {t.tokens_per_step} is not a multiple of per_device_batch_size × "
                f"max_length × world_size = {t.per_device_batch_size} × {t.max_length} × {world} = "
                f"{tokens_per_micro_step}; pick tokens_per_step = k × {tokens_per_micro_step}")
    tokens_per_step = tokens_per_micro_step * accum
    max_steps = t.max_steps if t.max_steps is not None else math.ceil(t.token_budget / tokens_per_step)
    return {"world_size": world, "gradient_accumulation_steps": accum, "tokens_per_step": tokens_per_step,
            "max_steps": max_steps, "total_tokens": max_steps * tokens_per_step}


def on_gpu(params: TrainParams) -> bool:
    return torch.cuda.is_available() and not params.training.use_cpu


def use_liger(params: TrainParams) -> bool:
    installed = importlib.util.find_spec("liger_kernel") is not None
    if params.training.use_liger == "on" and not installed:
        raise ValueError("training.use_liger is 'on' but liger-kernel is not installed (pip install liger-kernel)")
    return params.training.use_liger == "on" or (params.training.use_liger == "auto" and installed and on_gpu(params))


def build_sft_config(params: TrainParams, schedule: dict) -> SFTConfig:
    t = params.training
    gpu = on_gpu(params)
    bf16 = t.bf16 and gpu
    if t.bf16 and not gpu:
        log.info("training.bf16 ignored: no GPU (training in fp32 on the CPU)")
    return SFTConfig(
        output_dir=params.output_dir, max_steps=schedule["max_steps"], per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=schedule["gradient_accumulation_steps"], learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps,  # int steps (TRL reads < 1 as a ratio)
        weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, max_grad_norm=t.max_grad_norm,
        optim="adamw_torch_fused" if gpu else "adamw_torch", bf16=bf16, fp16=False,
        gradient_checkpointing=t.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        use_liger_kernel=use_liger(params), max_length=t.max_length, packing=t.packing,
        # Pre-training splits long documents across packed rows; SFT drops over-long examples before packing.
        packing_strategy="bfd_split" if t.stage == "pretrain" else "bfd", padding_free=t.packing,
        # Labels (assistant-only mask included) are built in posttrain.data, so TRL only packs and collates.
        assistant_only_loss=False, completion_only_loss=False,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, save_only_model=False,
        logging_steps=t.logging_steps, logging_first_step=True, seed=t.seed, data_seed=t.seed, use_cpu=t.use_cpu,
        include_num_input_tokens_seen="all", report_to="none", dataloader_num_workers=0,
        ddp_find_unused_parameters=False, disable_tqdm=False)


# ------------------------------------------------------------------------------------------------ callbacks


class LossLog(TrainerCallback):
    """Appends {step, loss, lr, tokens, grad_norm} to output_dir/loss.jsonl; on resume, first drops the lines a
    killed run wrote after the checkpoint it resumes from, so the curve continues without duplicates."""

    def __init__(self, path: Path):
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero or not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= state.global_step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        row = {"step": state.global_step, "loss": logs["loss"], "lr": logs.get("learning_rate"),
               "tokens": logs.get("num_input_tokens_seen", state.num_input_tokens_seen),
               "grad_norm": logs.get("grad_norm")}
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


class DataStatsWriter(TrainerCallback):
    """Writes the drop counts (final for map-style data, running for streamed data) at each save and at the end."""

    def __init__(self, path: Path, counter: DropCounter | None, extra: dict):
        self.path, self.counter, self.extra = path, counter, extra

    def write(self, state):
        if state.is_world_process_zero:
            stats = {**self.extra, **(self.counter.as_dict() if self.counter else {}), "step": state.global_step}
            self.path.write_text(json.dumps(stats, indent=1))

    def on_save(self, args, state, control, **kwargs):
        self.write(state)

    def on_train_end(self, args, state, control, **kwargs):
        self.write(state)


class Trainer(SFTTrainer):
    def save_model(self, output_dir=None, _internal_call=False):
        """Also write consolidated weights under FSDP with a sharded state dict, so every checkpoint-N loads with
        from_pretrained / vLLM (the sharded files stay for fast resume)."""
        super().save_model(output_dir, _internal_call)
        if self.is_fsdp_enabled and "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type):
            state_dict = self.accelerator.get_state_dict(self.model)  # collective: every rank calls it
            if self.args.should_save:
                self._save(output_dir or self.args.output_dir, state_dict=state_dict)


# ------------------------------------------------------------------------------------------------ run


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """checkpoint-N dirs whose trainer_state.json exists (written last, so a kill mid-save leaves it absent)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found) if (p / "trainer_state.json").is_file()]


def is_done(params: TrainParams) -> bool:
    """True when output_dir holds a done marker written for these exact params."""
    marker = Path(params.output_dir) / DONE_MARKER
    return marker.is_file() and json.loads(marker.read_text()).get("params_hash") == params_hash(params)


def read_loss_log(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / LOSS_LOG
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def build_dataset(params: TrainParams, tokenizer):
    """Tokenized training data for the run's stage → (dataset, DropCounter or None)."""
    if params.training.stage == "sft":
        return tokenize_sft(load_sft_messages(params.data), tokenizer, params.training.max_length,
                            params.training.assistant_only_loss)
    return tokenize_pretrain(load_pretrain_text(params.data), tokenizer), None


def run_training(params: TrainParams, resume: bool = True) -> dict:
    """Train one run to completion; returns the done-marker summary. A finished run with the same params hash is
    not retrained (delete its done.json, or pass resume=False, to train again from scratch)."""
    if "{run_dir}" in params.output_dir:
        raise ValueError(f"output_dir {params.output_dir!r} still holds '{{run_dir}}': pass --run-dir")
    out = Path(params.output_dir)
    if resume and is_done(params):
        log.info("%s: done with the same params hash, skipping", params.name)
        return json.loads((out / DONE_MARKER).read_text())
    schedule = resolve_schedule(params)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        dump_params(params, out / "params.resolved.yaml")
        (out / DONE_MARKER).unlink(missing_ok=True)
    set_seed(params.training.seed)

    tokenizer = build_tokenizer(params.model)
    if params.training.stage == "sft":
        ensure_chat_template(tokenizer)
    elif tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {params.model.name_or_path} has no eos token (pre-training separates "
                         "documents with it)")
    model = build_model(params.model, dtype=None if on_gpu(params) else torch.float32)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; fix model.config_overrides.vocab_size or the tokenizer")
    dataset, counter = build_dataset(params, tokenizer)

    config = build_sft_config(params, schedule)
    trainer = Trainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=[LossLog(out / LOSS_LOG), DataStatsWriter(out / DATA_STATS, counter, schedule)])
    checkpoints = complete_checkpoints(out) if resume else []
    if checkpoints:
        log.info("%s: resuming from %s", params.name, checkpoints[-1])
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)

    summary = {"params_hash": params_hash(params), "name": params.name, "global_step": trainer.state.global_step,
               "train_loss": result.training_loss, "tokens": trainer.state.num_input_tokens_seen,
               "final_checkpoint": str(out / f"checkpoint-{trainer.state.global_step}"), **schedule,
               **({"data": counter.as_dict()} if counter else {})}
    if trainer.is_world_process_zero():
        (out / DONE_MARKER).write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------------ launching


def launch_command(params: TrainParams, params_path: str | Path, run_dir: str | None = None,
                   machine_rank: str = "${MACHINE_RANK}", main_process_ip: str = "${MASTER_ADDR}",
                   main_process_port: str = "${MASTER_PORT}") -> list[str]:
    """The exact command that runs this training: plain python for backend "local", else `accelerate launch` with
    configs/accelerate/<backend>.yaml. Multi-machine values default to shell variables that scripts/slurm_train.sh
    sets per node (run the joined command through a shell there)."""
    tail = ["-m", "posttrain.training", "--params", str(params_path)] + (["--run-dir", run_dir] if run_dir else [])
    launch = params.launch
    if launch.backend == "local":
        return [sys.executable] + tail
    config_file = ACCELERATE_CONFIGS / f"{launch.backend}.yaml"
    cmd = ["accelerate", "launch", "--config_file", str(config_file), "--num_machines", str(launch.num_machines),
           "--num_processes", str(launch.num_machines * launch.gpus_per_machine)]
    if launch.num_machines > 1:
        cmd += ["--machine_rank", machine_rank, "--main_process_ip", main_process_ip,
                "--main_process_port", main_process_port]
    return cmd + tail


# ------------------------------------------------------------------------------------------------ notebooks


def write_launch_params(params: TrainParams) -> Path:
    """The run's resolved params as a standalone YAML (no {run_dir} left), the file its launch command reads."""
    path = Path(params.output_dir) / "params.yaml"
    dump_params(params, path)
    return path


def train_runs(runs: list[TrainParams], force: bool = False) -> list[dict]:
    """Run each training as a subprocess (its memory is freed when it exits), streaming its output; skip runs
    already done with the same params hash unless `force` (then it retrains from scratch). Non-local backends are
    printed, not run: launch them on the cluster (scripts/slurm_train.sh)."""
    results = []
    for params in runs:
        path = write_launch_params(params)
        cmd = launch_command(params, path) + (["--no-resume"] if force else [])
        print(f"[{params.name}] {shlex.join(cmd)}")
        if is_done(params) and not force:
            print(f"[{params.name}] done with the same params hash: skipped")
        elif params.launch.backend != "local":
            print(f"[{params.name}] backend {params.launch.backend!r}: run the command above on GPU machines")
            results.append({"name": params.name, "status": "not run"})
            continue
        else:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "lib"), os.environ.get("PYTHONPATH", "")])}
            with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc, \
                    (Path(params.output_dir) / "train.log").open("a") as log_file:
                for line in proc.stdout:
                    log_file.write(line)
                    print(line, end="")
            if proc.returncode:
                raise RuntimeError(f"training {params.name} failed (exit {proc.returncode}); see "
                                   f"{params.output_dir}/train.log")
        results.append({"name": params.name, "status": "done",
                        **json.loads((Path(params.output_dir) / DONE_MARKER).read_text())})
    return results


def plot_loss_curves(runs: list[TrainParams], path: str | Path):
    """Training loss vs tokens seen, one line per run; saved to `path` (png) and returned."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for params in runs:
        log_rows = read_loss_log(params.output_dir)
        if log_rows:
            ax.plot([r["tokens"] for r in log_rows], [r["loss"] for r in log_rows], label=f"{params.name} ({params.arm})")
    ax.set(xlabel="training tokens", ylabel="training loss", yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return fig


def data_stats_table(runs: list[TrainParams]) -> list[dict]:
    """Per run: examples seen / dropped as too long / skipped (data_stats.json), for the notebooks' tables."""
    rows = []
    for params in runs:
        path = Path(params.output_dir) / DATA_STATS
        stats = json.loads(path.read_text()) if path.exists() else {}
        rows.append({"run": params.name, **{k: stats.get(k) for k in
                     ("max_length", "examples_seen", "dropped_too_long", "skipped_missing_question", "kept", "step")}})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", required=True, help="a TrainParams YAML")
    parser.add_argument("--run-dir", default=None, help="substituted for {run_dir} in the YAML")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and done marker")
    parser.add_argument("--print-launch", action="store_true", help="print the launch command and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    params = load_train_params(args.params, args.run_dir)
    if args.print_launch:
        print(" ".join(shlex.quote(c) if not c.startswith("${") else c
                       for c in launch_command(params, args.params, args.run_dir)))
        return
    summary = run_training(params, resume=not args.no_resume)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
