"""One training run in this process: TRL's SFTTrainer on one params file, resumable. This is the program that
`accelerate launch` (or plain python) runs on every rank; posttrain.training builds that command and never imports
this module, so notebooks and launchers do not pay for torch/transformers/TRL imports.

    python -m posttrain.trainer --params FILE [--params FILE2 ...] [--run-dir DIR] [--no-resume]
    accelerate launch --config_file configs/accelerate/fsdp2.yaml -m posttrain.trainer --params FILE

Writes the run's outputs (layout and names in posttrain.runs): checkpoint-N/ (model + tokenizer, loadable by
from_pretrained and vLLM), loss.jsonl, data_stats.json, params.resolved.yaml, and the done marker at the end. A
restarted run continues from its latest complete checkpoint. Tests: tests/test_training.py.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import os
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedModel, TrainerCallback, set_seed
from trl import SFTConfig, SFTTrainer

from posttrain.collate import PER_ROW_SFT_CONFIG, REAL_TOKENS, PerRowPackedCollator, pack_rows
from posttrain.data import (DropCounter, ensure_chat_template, load_pretrain_text, load_sft_messages, tokenize_pretrain,
                            tokenize_sft)
from posttrain.models import build_model, build_tokenizer, initialize_sharded_scratch_
from posttrain.params import ModelParams, RunParams, dump_params, load_run_params, params_hash
from posttrain.runs import (DATA_STATS, DONE_MARKER, LOSS_LOG, RESOLVED_PARAMS, RUN_END_MARKER, RUN_MARKER,
                            checkpoint_dir, launch_world_size, list_checkpoints, read_done, resolve_schedule,
                            write_done)

log = logging.getLogger(__name__)


def on_gpu(params: RunParams) -> bool:
    return torch.cuda.is_available() and not params.training.use_cpu


def use_liger(params: RunParams) -> bool:
    installed = importlib.util.find_spec("liger_kernel") is not None
    if params.training.use_liger == "on" and not installed:
        raise ValueError("training.use_liger is 'on' but liger-kernel is not installed (pip install liger-kernel)")
    return params.training.use_liger == "on" or (params.training.use_liger == "auto" and installed and on_gpu(params))


def per_row(params: RunParams) -> bool:
    return params.training.batching == "per_row"


def packing_strategy(params: RunParams) -> str:
    # Pre-training splits long documents across packed rows; SFT drops over-long examples before packing.
    return "bfd_split" if params.training.stage == "pretrain" else "bfd"


def batching_config(params: RunParams) -> dict:
    """SFTConfig fields for training.batching. padding_free: TRL packs and flattens the batch. per_row: the dataset
    arrives packed (pack_per_row) and PerRowPackedCollator batches it; TRL neither packs nor prepares, and
    the Trainer counts the real tokens itself (REAL_TOKENS: rows are padded to max_length, and the pad token may be
    the documents' eos, so transformers' "non_padding" count would miss the eos tokens)."""
    t = params.training
    if per_row(params):
        return {**PER_ROW_SFT_CONFIG, "include_num_input_tokens_seen": "no"}
    return {"packing": t.packing, "packing_strategy": packing_strategy(params), "padding_free": t.packing,
            "include_num_input_tokens_seen": "all"}


def build_sft_config(params: RunParams, schedule: dict) -> SFTConfig:
    t = params.training
    gpu = on_gpu(params)
    bf16 = t.bf16 and gpu
    if t.bf16 and not gpu:
        log.info("training.bf16 ignored: no GPU (training in fp32 on the CPU)")
    return SFTConfig(
        output_dir=params.output_dir, max_steps=schedule["max_steps"],
        per_device_train_batch_size=t.per_device_batch_size,
        gradient_accumulation_steps=schedule["gradient_accumulation_steps"], learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler, warmup_steps=t.warmup_steps,  # int steps (TRL reads < 1 as a ratio)
        weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, max_grad_norm=t.max_grad_norm,
        optim="adamw_torch_fused" if gpu else "adamw_torch", bf16=bf16, fp16=False,
        gradient_checkpointing=t.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        use_liger_kernel=use_liger(params), max_length=t.max_length, **batching_config(params),
        # Labels (assistant-only mask included) are built in posttrain.data, so TRL only packs and collates.
        assistant_only_loss=False, completion_only_loss=False,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, save_only_model=False,
        logging_steps=t.logging_steps, logging_first_step=True, seed=t.seed, data_seed=t.seed, use_cpu=t.use_cpu,
        report_to="none", dataloader_num_workers=0,
        ddp_find_unused_parameters=False, disable_tqdm=False)


# ------------------------------------------------------------------------------------------------ the job


def check_job_matches_params(params: RunParams, config: SFTConfig) -> None:
    """Refuse a job that would silently train differently from what the params ask. Called once the distributed
    state exists (after the SFTConfig), before the model is built. Catches what `accelerate launch` does not say:
    another process count, a precision from the accelerate YAML overriding training.bf16, and FSDP/DeepSpeed
    requested but not running (Accelerate enables them only for GPU-type jobs and falls back to DDP on CPUs)."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    state, backend = PartialState(), params.launch.backend
    wanted = launch_world_size(params)
    if state.num_processes != wanted:
        why = ("`accelerate launch --cpu` and MULTI_CPU configs start one process without a warning"
               if state.num_processes < wanted else "the launch section is what the schedule and the checks rely on")
        asked = ("launch.backend 'local' is 1 process" if backend == "local" else
                 f"launch.num_machines × launch.gpus_per_machine = {wanted} process(es) for backend {backend!r}")
        raise ValueError(f"{asked}, but this job runs {state.num_processes} ({why}); launch with "
                         "`python -m posttrain.training --params FILE`")
    precision = "bf16" if config.bf16 else "no"
    if config.mixed_precision != precision:
        raise ValueError(f"the accelerate config's mixed_precision ({config.mixed_precision}, env "
                         f"ACCELERATE_MIXED_PRECISION) contradicts training.bf16 = {params.training.bf16} "
                         f"(bf16 {'on' if config.bf16 else 'off'} for this run{'' if on_gpu(params) else ': no GPU'}); "
                         f"set mixed_precision: {precision} in the accelerate YAML")
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    if backend == "fsdp2" and (not fsdp or state.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU)):
        raise ValueError(f"launch.backend is 'fsdp2' but this job is not sharded (distributed_type "
                         f"{state.distributed_type}, ACCELERATE_USE_FSDP={fsdp}): Accelerate runs FSDP only on "
                         "GPU-type jobs and falls back to DDP on CPUs")
    if backend == "deepspeed_zero3" and state.distributed_type != DistributedType.DEEPSPEED:
        raise ValueError(f"launch.backend is 'deepspeed_zero3' but this job runs {state.distributed_type}")
    if backend not in ("fsdp2", "deepspeed_zero3") and (fsdp or deepspeed):
        raise ValueError(f"launch.backend is {backend!r} but the accelerate config turns on "
                         f"{'FSDP' if fsdp else 'DeepSpeed'}; use launch.backend 'fsdp2' or 'deepspeed_zero3'")


def shard_scratch_model(accelerator, model: PreTrainedModel, model_params: ModelParams,
                        dtype: torch.dtype | None) -> None:
    """FSDP2-shard a meta-device scratch model in place with Accelerate's own wrapping, then give each rank its
    shards of the depth-scaled init: no rank ever holds the whole model. Trainer.train's prepare then finds an FSDP
    module and keeps it. cpu_ram_efficient_loading is off for this call only: it would broadcast rank 0's full
    weights, and there are none. (benchmarks/build_memory.py measures it.)"""
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = accelerator.state.fsdp_plugin
    saved, plugin.cpu_ram_efficient_loading = plugin.cpu_ram_efficient_loading, False
    try:
        fsdp2_prepare_model(accelerator, model)
    finally:
        plugin.cpu_ram_efficient_loading = saved
    initialize_sharded_scratch_(model, model_params, accelerator.device, dtype)


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (accelerate's launcher, or train_runs'
    notebook), so killing a launcher cannot leave its workers training on."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: no death signal
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


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


class SaveAt(TrainerCallback):
    """Also save a checkpoint at these steps (training.save_at): the miniature's ×1 / ×4 SFT budgets."""

    def __init__(self, steps):
        self.steps = set(steps)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps:
            control.should_save = True
        return control


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
    """TRL's SFTTrainer plus: consolidated FSDP checkpoints, the real-token count of per-row batches, and (optionally)
    transformers' own loss.

    transformers_loss: compute the loss as transformers.Trainer does (full logits, cross-entropy) instead of TRL's
    fused, tiled LM head with its entropy/accuracy metrics. Same value (tests/test_training.py); on this CPU the per-row
    path ran at 0.67x a plain PyTorch loop with the fused head and 0.96x with this, in one run of
    benchmarks/train_throughput.py --trl-loss (docs/training.md, "Measured"). The fused head saves memory at large
    vocabularies on GPU, so it stays there."""

    def __init__(self, *args, transformers_loss: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.transformers_loss = transformers_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        real_tokens = inputs.get(REAL_TOKENS)
        if real_tokens is not None:  # per-row batches: count here, and keep the count away from the model
            inputs = {k: v for k, v in inputs.items() if k != REAL_TOKENS}
            if model.training:
                self.state.num_input_tokens_seen += int(self.accelerator.gather(real_tokens).sum())
        if self.transformers_loss:
            return transformers.Trainer.compute_loss(self, model, {**inputs, "use_cache": False}, return_outputs,
                                                     num_items_in_batch)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def save_model(self, output_dir=None, _internal_call=False):
        """Also write consolidated weights under FSDP with a sharded state dict, so every checkpoint-N loads with
        from_pretrained / vLLM (the sharded files stay for fast resume)."""
        super().save_model(output_dir, _internal_call)
        if self.is_fsdp_enabled and "FULL_STATE_DICT" not in str(self.accelerator.state.fsdp_plugin.state_dict_type):
            state_dict = self.accelerator.get_state_dict(self.model)  # collective: every rank calls it
            if self.args.should_save:
                self._save(output_dir or self.args.output_dir, state_dict=state_dict)


def build_dataset(params: RunParams, tokenizer):
    """Tokenized training data for the run's stage → (dataset, DropCounter or None)."""
    if params.training.stage == "sft":
        return tokenize_sft(load_sft_messages(params.data), tokenizer, params.training.max_length,
                            params.training.assistant_only_loss)
    return tokenize_pretrain(load_pretrain_text(params.data), tokenizer), None


def pack_per_row(params: RunParams, tokenized):
    """per_row: TRL's preparation is skipped, so the rows are packed here, with TRL's packer and the strategy TRL
    would use."""
    return pack_rows(tokenized, params.training.max_length, packing_strategy(params))


def per_row_collator(params: RunParams, tokenizer) -> PerRowPackedCollator:
    # Rows padded to max_length: fixed shapes, and tokens per step exactly as resolve_schedule counts them. Padding is
    # label-masked and left out of the token count, so any id pads; eos when the tokenizer has no pad token.
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return PerRowPackedCollator(pad, pad_to=params.training.max_length, count_tokens=True)


def build_trainer(params: RunParams, schedule: dict, extra_callbacks: tuple = ()) -> tuple[Trainer, DropCounter | None]:
    """The run's SFTConfig (first: it sets up the distributed state, so model loading can shard), the job checks,
    tokenizer, model and data → (Trainer ready to train, DropCounter or None). Writes nothing until trained.
    benchmarks/train_throughput.py times the Trainer this returns."""
    out = Path(params.output_dir)
    config = build_sft_config(params, schedule)
    check_job_matches_params(params, config)
    tokenizer = build_tokenizer(params.model)
    if params.training.stage == "sft":
        ensure_chat_template(tokenizer)
    elif tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {params.model.name_or_path} has no eos token (pre-training separates "
                         "documents with it)")
    dtype = None if on_gpu(params) else torch.float32
    on_meta = (params.launch.backend == "fsdp2" and params.model.init == "scratch"
               and params.model.depth_scaled_init != "none")
    model = build_model(params.model, dtype=dtype, on_meta=on_meta)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; fix model.config_overrides.vocab_size or the tokenizer")
    dataset, counter = build_dataset(params, tokenizer)
    callbacks = [LossLog(out / LOSS_LOG), DataStatsWriter(out / DATA_STATS, counter, schedule),
                 *([SaveAt(params.training.save_at)] if params.training.save_at else []), *extra_callbacks]
    if per_row(params):
        trainer = Trainer(model=model, args=config, train_dataset=pack_per_row(params, dataset),
                          processing_class=tokenizer, data_collator=per_row_collator(params, tokenizer),
                          callbacks=callbacks, transformers_loss=not on_gpu(params))
    else:
        trainer = Trainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=callbacks)
    if on_meta:
        shard_scratch_model(trainer.accelerator, trainer.model, params.model, dtype)
    return trainer, counter


def train_in_process(params: RunParams, resume: bool = True) -> dict:
    """Train one run to completion in this process (every rank of a distributed job calls it); returns the
    done-marker summary. A finished run with the same params hash is not retrained (delete its done.json, or pass
    resume=False, to train again from scratch)."""
    if "{run_dir}" in params.output_dir:
        raise ValueError(f"output_dir {params.output_dir!r} still holds '{{run_dir}}': pass --run-dir")
    out = Path(params.output_dir)
    done = read_done(params) if resume else None
    if done is not None:
        log.info("%s: done with the same params hash, skipping", params.name)
        return done
    schedule = resolve_schedule(params)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        dump_params(params, out / RESOLVED_PARAMS)
        (out / DONE_MARKER).unlink(missing_ok=True)
    set_seed(params.training.seed)

    trainer, counter = build_trainer(params, schedule)
    checkpoints = list_checkpoints(out) if resume else []
    if checkpoints:
        log.info("%s: resuming from %s", params.name, checkpoints[-1][1])
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1][1]) if checkpoints else None)

    summary = {"params_hash": params_hash(params), "name": params.name, "global_step": trainer.state.global_step,
               "train_loss": result.training_loss, "tokens": trainer.state.num_input_tokens_seen,
               "final_checkpoint": str(checkpoint_dir(out, trainer.state.global_step)), **schedule,
               **({"data": counter.as_dict()} if counter else {})}
    if trainer.is_world_process_zero():
        write_done(out, summary)
    # Several runs may share this process (posttrain.training.train_runs on a local backend): free this one's memory.
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", required=True, action="append",
                        help="a RunParams YAML; repeat it to train several runs one after another in this process")
    parser.add_argument("--run-dir", default=None, help="substituted for {run_dir} in the YAML")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints and done marker")
    args = parser.parse_args(argv)
    die_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    all_params = [load_run_params(path, args.run_dir) for path in args.params]  # every file checked before training
    for params in all_params:
        print(f"{RUN_MARKER}{params.name}", flush=True)
        summary = train_in_process(params, resume=not args.no_resume)
        print(json.dumps(summary), flush=True)
        print(f"{RUN_END_MARKER}{params.name}", flush=True)


if __name__ == "__main__":
    main()
