"""The training run's callbacks (posttrain.trainer adds them to TRL's SFTTrainer): the loss log, extra saves
(training.save_at), a cluster job's stop request, evaluation snapshots, experiment tracking, the data-stats file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from transformers import TrainerCallback

from posttrain.data import DropCounter
from posttrain.params import RunParams
from posttrain.runs import RESUME_POINTS, TENSORBOARD, checkpoint_dir


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


class StopOnRequest(TrainerCallback):
    """A cluster job's warning before its time limit (posttrain.cluster touches output_dir/STOP_REQUEST): save a
    checkpoint at the next logging step and stop, so the requeued job resumes there and its loss log goes on as an
    uninterrupted run's (a logged loss averages the steps since the last log: resuming between logs would average
    fewer). Rank 0 reads the file; the flag is max-reduced so that every rank stops at the same step."""

    def __init__(self, path: Path):
        self.path, self.stopped_at = path, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % args.logging_steps or state.global_step >= state.max_steps:
            return control
        flag = torch.tensor([float(state.is_world_process_zero and self.path.exists())])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = flag.to(args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item():
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step
        return control


def drop_resume_points(params: RunParams, out: Path) -> None:
    """Remove the checkpoints saved only to resume after a stop request (RESUME_POINTS) once the run is complete:
    evaluation reads the planned checkpoints, not these."""
    path = out / RESUME_POINTS
    if not path.is_file():
        return
    t = params.training
    for step in json.loads(path.read_text()):
        if step % t.save_steps and step not in t.save_at:  # never the final step: stops come before it
            shutil.rmtree(checkpoint_dir(out, step), ignore_errors=True)
    path.unlink()


class Snapshots(TrainerCallback):
    """Evaluation snapshots (training.snapshot_steps) at every k-th step and the last, through Trainer.save_snapshot
    (`trainer` is set once the Trainer exists; on_step_end runs on every rank, as the FSDP gather needs)."""

    def __init__(self, every: int):
        self.every, self.trainer = every, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            self.trainer.save_snapshot()


def tracking_callbacks(params: RunParams) -> list:
    """training.report_to 'tensorboard': transformers' TensorBoard callback, writing to output_dir/tensorboard (one
    folder across resumes: `tensorboard --logdir <output_dir>/tensorboard`). trackio / W&B go through SFTConfig."""
    if params.training.report_to != "tensorboard":
        return []
    from transformers.integrations import TensorBoardCallback
    try:
        callback = TensorBoardCallback()
    except RuntimeError:
        raise ValueError("training.report_to 'tensorboard' needs the tensorboard package: pip install tensorboard "
                         "(it is in the gpu extra)") from None
    callback.logging_dir = str(Path(params.output_dir) / TENSORBOARD)
    return [callback]


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
