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
import shutil
import time
from pathlib import Path

import torch
import transformers
from transformers import PreTrainedModel, set_seed
from trl import SFTConfig, SFTTrainer

from posttrain.callbacks import (DataStatsWriter, LossLog, SaveAt, Snapshots, StopOnRequest,  # noqa: F401
                                 drop_resume_points, tracking_callbacks)
from posttrain.collate import PER_ROW_SFT_CONFIG, REAL_TOKENS, PerRowPackedCollator, pack_rows
from posttrain.data import (HUB_IDS, DropCounter, ensure_chat_template, is_local, load_pretrain_text,
                            load_sft_messages, tokenize_pretrain, tokenize_sft)
from posttrain.models import (build_model, build_tokenizer, initialize_sharded_scratch_, reset_token_embeddings,
                              select_attn_implementation)
from posttrain.params import ModelParams, RunParams, dump_params, load_run_params, params_hash
from posttrain.prepare import PassPermutationSampler, PreparedCounts, load_prepared
from posttrain.runs import (DATA_STATS, DONE_MARKER, LOSS_LOG, RESOLVED_PARAMS, RESUME_POINTS, RUN_END_MARKER,
                            RUN_MARKER, STOP_REQUEST, STOPPED_EXIT,
                            checkpoint_dir, launch_world_size, list_checkpoints, read_done, resolve_schedule,
                            snapshot_dir, start_checkpoint, write_done)

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
    # Prepared data (data.prepared_dir) arrives packed: TRL prepares nothing, and resuming skips no batches (the
    # sampler starts at the resumed step: Trainer._get_train_sampler).
    prepared = {"dataset_kwargs": {"skip_prepare_dataset": True}, "ignore_data_skip": True} if is_prepared_run(
        params) else {}
    if per_row(params):
        return {**PER_ROW_SFT_CONFIG, "include_num_input_tokens_seen": "no", **prepared}
    return {"packing": t.packing, "packing_strategy": packing_strategy(params), "padding_free": t.packing,
            "include_num_input_tokens_seen": "all", **prepared}


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
        lr_scheduler_kwargs=({"num_decay_steps": t.decay_steps, "decay_type": t.decay_type}
                             if t.lr_scheduler == "warmup_stable_decay" else {}),
        weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2, max_grad_norm=t.max_grad_norm,
        optim="adamw_torch_fused" if gpu else "adamw_torch", bf16=bf16, fp16=False,
        gradient_checkpointing=t.gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        use_liger_kernel=use_liger(params), max_length=t.max_length, **batching_config(params),
        # Labels (assistant-only mask included) are built in posttrain.data, so TRL only packs and collates.
        assistant_only_loss=False, completion_only_loss=False,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit, save_only_model=False,
        logging_steps=t.logging_steps, logging_first_step=True, seed=t.seed, data_seed=t.seed, use_cpu=t.use_cpu,
        # TensorBoard goes through our own callback (tracking_callbacks: a fixed log dir); trackio / W&B as named.
        report_to="none" if t.report_to in ("none", "tensorboard") else t.report_to, run_name=params.name,
        dataloader_num_workers=0,
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


class Trainer(SFTTrainer):
    """TRL's SFTTrainer plus: consolidated FSDP checkpoints, the real-token count of per-row batches, and (optionally)
    transformers' own loss.

    transformers_loss: compute the loss as transformers.Trainer does (full logits, cross-entropy) instead of TRL's
    fused, tiled LM head with its entropy/accuracy metrics. Same value (tests/test_training.py); on this CPU the per-row
    path ran at 0.67x a plain PyTorch loop with the fused head and 0.96x with this, in one run of
    benchmarks/train_throughput.py --trl-loss (docs/training.md, "Measured"). The fused head saves memory at large
    vocabularies on GPU, so it stays there."""

    def __init__(self, *args, transformers_loss: bool = False, row_order_seed: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.transformers_loss = transformers_loss
        self.row_order_seed = row_order_seed  # prepared data: rows in PassPermutationSampler's order
        self._tokens_mark: tuple[float, int] | None = None

    def _get_train_sampler(self, train_dataset=None):
        if self.row_order_seed is None:
            return super()._get_train_sampler(train_dataset)
        a = self.args
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PassPermutationSampler(len(dataset),
                                      a.per_device_train_batch_size * a.gradient_accumulation_steps * a.world_size,
                                      a.max_steps, self.row_order_seed, start_step=lambda: self.state.global_step)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Training logs also carry tokens_per_second since the previous log (all ranks' real tokens), for the
        trackers (training.report_to)."""
        if "loss" in logs:
            now, seen = time.monotonic(), self.state.num_input_tokens_seen
            if self._tokens_mark is not None and now > self._tokens_mark[0]:
                logs["tokens_per_second"] = (seen - self._tokens_mark[1]) / (now - self._tokens_mark[0])
            self._tokens_mark = (now, seen)
        super().log(logs, start_time)

    def save_snapshot(self) -> Path:
        """This step's evaluation snapshot: the weights in bf16 and the tokenizer, no optimizer state, in
        snapshots/checkpoint-N (written under a temporary name, renamed when complete). Every rank calls it:
        gathering FSDP shards is collective."""
        final = snapshot_dir(self.args.output_dir, self.state.global_step)
        state_dict = self.accelerator.get_state_dict(self.model)
        if self.args.should_save and not final.is_dir():
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            model = self.accelerator.unwrap_model(self.model)
            tied = getattr(model, "all_tied_weights_keys", None) or {}  # e.g. lm_head -> embed_tokens: saved once
            weights = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state_dict.items()
                       if k not in tied}
            model.save_pretrained(partial, state_dict=weights)
            self.processing_class.save_pretrained(partial)
            config = partial / "config.json"  # the config names the dtype the model trains in (fp32 master weights)
            config.write_text(json.dumps({**json.loads(config.read_text()), "dtype": "bfloat16"}, indent=2))
            partial.rename(final)
        self.accelerator.wait_for_everyone()
        return final

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


def is_prepared_run(params: RunParams) -> bool:
    return params.data.prepared_dir is not None


def build_dataset(params: RunParams, tokenizer):
    """Tokenized training data for the run's stage → (dataset, DropCounter or None). Prepared data (data.prepared_dir)
    arrives packed, with its manifest's counts (PreparedCounts); hub data is read only prepared."""
    if is_prepared_run(params):
        dataset, manifest = load_prepared(params, tokenizer)
        log.info("%s: prepared data %s (%d packed rows)", params.name, manifest["path"], len(dataset))
        return dataset, PreparedCounts(manifest)
    if params.data.source in HUB_IDS and not is_local(params.data):
        raise ValueError(f"{params.name}: data.path {params.data.path!r} is not a local file, and hub data "
                         f"({params.data.source}) is read only prepared: set data.prepared_dir and run "
                         "`python -m posttrain.prepare <params>` first")
    if params.training.stage == "sft":
        dataset, counter = tokenize_sft(load_sft_messages(params.data), tokenizer, params.training.max_length,
                                        params.training.assistant_only_loss)
        if counter.seen and counter.seen == counter.too_long + counter.skipped:  # map-style data, all dropped
            raise ValueError(f"{params.name}: data source {params.data.source} ({params.data.path}): no usable rows "
                             f"— {counter.seen} seen, dropped: {counter.too_long} longer than max_length "
                             f"{counter.max_length}, {counter.skipped} without a question")
        return dataset, counter
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
    attn = select_attn_implementation(params.model, params.training, on_gpu(params))  # refuses before any loading
    tokenizer = build_tokenizer(params.model)
    if params.training.stage == "sft":
        ensure_chat_template(tokenizer)
    elif tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {params.model.name_or_path} has no eos token (pre-training separates "
                         "documents with it)")
    dtype = None if on_gpu(params) else torch.float32
    on_meta = (params.launch.backend == "fsdp2" and params.model.init == "scratch"
               and params.model.depth_scaled_init != "none")
    model = build_model(params.model, dtype=dtype, on_meta=on_meta, attn_implementation=attn)
    if params.model.reset_embeddings is not None:  # before SFT; a resumed run then loads its own checkpoint
        # the tokenizer as pre-training used it (ensure_chat_template may have changed its eos)
        reset_token_embeddings(model, build_tokenizer(params.model), params.model.reset_embeddings)
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
                         f"{model.config.vocab_size}; fix model.config_overrides.vocab_size or the tokenizer")
    dataset, counter = build_dataset(params, tokenizer)
    row_order_seed = params.data.seed if is_prepared_run(params) else None
    snapshots = [Snapshots(params.training.snapshot_steps)] if params.training.snapshot_steps else []
    callbacks = [LossLog(out / LOSS_LOG), DataStatsWriter(out / DATA_STATS, counter, schedule),
                 *([SaveAt(params.training.save_at)] if params.training.save_at else []), *snapshots,
                 *tracking_callbacks(params), *extra_callbacks]
    if per_row(params):
        trainer = Trainer(model=model, args=config, processing_class=tokenizer, row_order_seed=row_order_seed,
                          train_dataset=dataset if is_prepared_run(params) else pack_per_row(params, dataset),
                          data_collator=per_row_collator(params, tokenizer),
                          callbacks=callbacks, transformers_loss=not on_gpu(params))
    else:
        trainer = Trainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                          callbacks=callbacks, row_order_seed=row_order_seed)
    for callback in snapshots:
        callback.trainer = trainer
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
    # A 0.1%-Pre run starts only from a finished pre-training (its done marker), and records which checkpoint.
    start = start_checkpoint(params.model.checkpoint)[1] if params.model.init == "checkpoint" else {}
    if start:
        log.info("%s: starting from %s", params.name, start["init_checkpoint"])
        # recorded relative to this run's output_dir: the run dir may move
        start["init_checkpoint"] = os.path.relpath(start["init_checkpoint"], out)
    out.mkdir(parents=True, exist_ok=True)
    if int(os.environ.get("RANK", "0")) == 0:
        dump_params(params, out / RESOLVED_PARAMS)
        (out / DONE_MARKER).unlink(missing_ok=True)
    set_seed(params.training.seed)

    stopper = StopOnRequest(out / STOP_REQUEST)
    trainer, counter = build_trainer(params, schedule, extra_callbacks=(stopper,))
    checkpoints = list_checkpoints(out) if resume else []
    if checkpoints:
        log.info("%s: resuming from %s", params.name, checkpoints[-1][1])
    # A decay branch starts where its stable run's checkpoint left off (weights, optimizer, RNG, data position).
    branch = params.training.branch_from if not checkpoints else None
    if branch:
        if not (Path(branch) / "trainer_state.json").is_file():
            raise ValueError(f"{params.name}: training.branch_from {branch!r} is not a complete resume checkpoint "
                             "(no trainer_state.json): train the stable run past that step first")
        log.info("%s: decay branch from %s", params.name, branch)
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1][1]) if checkpoints else branch)
    if stopper.stopped_at is not None:  # saved for the requeued job to resume; not done
        if trainer.is_world_process_zero():
            points = out / RESUME_POINTS
            points.write_text(json.dumps((json.loads(points.read_text()) if points.is_file() else [])
                                         + [stopper.stopped_at]))
        log.info("%s: stop requested; saved %s to resume from", params.name, checkpoint_dir(out, stopper.stopped_at))
        return {"name": params.name, "stopped_at": stopper.stopped_at}
    if trainer.is_world_process_zero():
        drop_resume_points(params, out)

    summary = {"params_hash": params_hash(params), "name": params.name, "global_step": trainer.state.global_step,
               "train_loss": result.training_loss, "tokens": trainer.state.num_input_tokens_seen,
               "final_checkpoint": checkpoint_dir(out, trainer.state.global_step).name, **schedule, **start,
               "attn_implementation": trainer.model.config._attn_implementation,
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
        if "stopped_at" in summary:  # a stop request: the job requeues and this run resumes
            raise SystemExit(STOPPED_EXIT)
        print(f"{RUN_END_MARKER}{params.name}", flush=True)


if __name__ == "__main__":
    main()
