"""One training run beyond its params: its schedule in tokens, its output layout, the one checkpoint scanner and
the done marker. Every stage that touches a run's outputs reads them through here: the launcher
(posttrain.training), the run itself (posttrain.trainer), model loading (posttrain.models) and evaluation.
Imports only posttrain.params (no torch), so notebooks and launchers stay light.

A run's output_dir holds:
    checkpoint-N/          model + tokenizer (+ optimizer state for resume); complete once trainer_state.json exists;
                           training.save_total_limit keeps only the newest
    snapshots/checkpoint-N/  SNAPSHOTS: evaluation snapshots (training.snapshot_steps): bf16 weights + tokenizer,
                           never pruned; written under a temporary name and renamed when complete
    tensorboard/           training.report_to: tensorboard event files
    loss.jsonl             LOSS_LOG: one row per logged step {step, loss, lr, tokens, grad_norm}
    data_stats.json        DATA_STATS: examples seen / dropped as too long / skipped
    params.yaml            LAUNCH_PARAMS: the resolved params its launch command reads
    params.resolved.yaml   RESOLVED_PARAMS: the params the run actually trained with
    train.log              TRAIN_LOG: the run's console output (notebook launches)
    done.json              DONE_MARKER: summary + params hash (+ the checkpoint an init=checkpoint run started from,
                           relative to output_dir: no absolute path, a run dir can move), written last
"""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import yaml

from posttrain.params import RunParams, legacy_params_hash, params_hash
from posttrain.records import read_jsonl

LOSS_LOG = "loss.jsonl"
DONE_MARKER = "done.json"
DATA_STATS = "data_stats.json"
LAUNCH_PARAMS = "params.yaml"
RESOLVED_PARAMS = "params.resolved.yaml"
TRAIN_LOG = "train.log"
STOP_REQUEST = "stop.request"
RESUME_POINTS = "resume_points.json"
STOPPED_EXIT = 75  # posttrain.trainer's exit code after a stop request (EX_TEMPFAIL: run it again to resume)
# HF Trainer's naming (transformers.trainer_utils.PREFIX_CHECKPOINT_DIR) and the file it writes last in a checkpoint.
CHECKPOINT_PREFIX = "checkpoint-"
CHECKPOINT_COMPLETE_FILE = "trainer_state.json"
SNAPSHOTS = "snapshots"
TENSORBOARD = "tensorboard"
# posttrain.trainer prints these lines before and after each run it trains, so a launcher reading its output
# (train_runs) can file each run's lines in that run's train.log and report each run as it ends.
RUN_MARKER = "[posttrain.trainer] run: "
RUN_END_MARKER = "[posttrain.trainer] finished: "  # printed after the run's done marker is written
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


# ------------------------------------------------------------------------------------------------ schedule


def world_size() -> int:
    """Processes in this job, from the env `accelerate launch`/torchrun set (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launch_world_size(params: RunParams) -> int:
    """Processes the run's launch section asks for: 1 on the local backend, else machines × GPUs per machine."""
    launch = params.launch
    return 1 if launch.backend == "local" else launch.num_machines * launch.gpus_per_machine


def resolve_schedule(params: RunParams, num_processes: int | None = None) -> dict:
    """gradient_accumulation_steps and max_steps from the token-denominated recipe, for `num_processes` (default:
    this job's world size; notebooks pass launch_world_size(params)).

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


def planned_checkpoint_steps(params: RunParams, num_processes: int | None = None) -> list[int]:
    """The steps evaluation will find saved, as planned (posttrain.cluster plans evaluation jobs before training
    has run): every training.snapshot_steps and the last step where the run writes snapshots, else every save_steps,
    the save_at steps and the last step (the Trainer saves there), the newest save_total_limit of them when set.
    `num_processes` defaults to the launch section's world size. The last item is the final step."""
    t = params.training
    final = resolve_schedule(params, num_processes or launch_world_size(params))["max_steps"]
    every = getattr(t, "snapshot_steps", None)
    if every:
        return sorted(set(range(every, final + 1, every)) | {final})
    steps = sorted(set(range(t.save_steps, final + 1, t.save_steps)) | {s for s in t.save_at if s <= final} | {final})
    return steps[-t.save_total_limit:] if t.save_total_limit else steps


# ------------------------------------------------------------------------------------------------ checkpoints


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"{CHECKPOINT_PREFIX}{step}"


def list_checkpoints(output_dir: str | Path, complete_only: bool = True) -> list[tuple[int, Path]]:
    """[(step, dir)] of the checkpoint-N dirs in output_dir, by step. complete_only: only those holding
    trainer_state.json (the Trainer writes it last, so a run killed mid-save leaves it out)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = sorted((int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name)))
    return [(step, p) for step, p in found if not complete_only or (p / CHECKPOINT_COMPLETE_FILE).is_file()]


def start_checkpoint(path: str | Path) -> tuple[Path, dict]:
    """The weights an init=checkpoint run starts from, and what to record about them: for a training run's
    output dir, the final checkpoint its done marker names (a run without one has not finished: an error, so a
    0.1%-Pre arm never starts from a pre-training cut short); for a model dir (config.json, e.g. one checkpoint-N
    chosen on purpose), that dir."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model.checkpoint: {path} is not a directory")
    marker = path / DONE_MARKER
    if marker.is_file():
        done = json.loads(marker.read_text())
        # By name under `path`: the marker holds the path it was written with, and run dirs may move.
        final = path / Path(done["final_checkpoint"]).name
        if not (final / CHECKPOINT_COMPLETE_FILE).is_file():
            raise FileNotFoundError(f"model.checkpoint: {path}'s done marker names {final.name}, which is missing "
                                    f"or incomplete (no {CHECKPOINT_COMPLETE_FILE})")
        return final, {"init_checkpoint": str(final), "init_step": done.get("global_step"),
                       "init_run": done.get("name"), "init_params_hash": done.get("params_hash")}
    checkpoints = list_checkpoints(path, complete_only=False)
    if checkpoints:
        raise FileNotFoundError(
            f"model.checkpoint: {path} is a training run that has not finished (no {DONE_MARKER}; its latest "
            f"checkpoint is {checkpoints[-1][1].name}): let it finish, or name one checkpoint-N dir to start from it "
            "on purpose")
    if (path / "config.json").is_file():
        return path, {"init_checkpoint": str(path)}
    raise FileNotFoundError(f"model.checkpoint: {path} is neither a finished training run ({DONE_MARKER}) nor a "
                            "model dir (config.json)")


def snapshot_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / SNAPSHOTS / f"{CHECKPOINT_PREFIX}{step}"


def list_snapshots(output_dir: str | Path) -> list[tuple[int, Path]]:
    """[(step, dir)] of the run's complete evaluation snapshots, by step."""
    return list_checkpoints(Path(output_dir) / SNAPSHOTS, complete_only=False)


def evaluation_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """What evaluation reads from a run: its snapshots where it writes them (training.snapshot_steps; none yet before
    the first, never its resume checkpoints, which get pruned), else its complete checkpoint-N dirs."""
    snapshots = list_snapshots(output_dir)
    resolved = Path(output_dir) / RESOLVED_PARAMS
    if snapshots or (resolved.is_file() and (yaml.safe_load(resolved.read_text()) or {}).get(
            "training", {}).get("snapshot_steps")):
        return snapshots
    return list_checkpoints(output_dir)


# ------------------------------------------------------------------------------------------------ outputs


def read_done(params: RunParams) -> dict | None:
    """The run's done marker if it was written for these exact params, else None."""
    marker = Path(params.output_dir) / DONE_MARKER
    if not marker.is_file():
        return None
    summary = json.loads(marker.read_text())
    # The legacy hash: a run finished before run dirs could move still counts where it lies.
    return summary if summary.get("params_hash") in (params_hash(params), legacy_params_hash(params)) else None


def is_done(params: RunParams) -> bool:
    """True when output_dir holds a done marker written for these exact params."""
    return read_done(params) is not None


def write_done(output_dir: str | Path, summary: dict) -> None:
    (Path(output_dir) / DONE_MARKER).write_text(json.dumps(summary, indent=1))


def read_loss_log(output_dir: str | Path) -> list[dict]:
    """The loss log's rows; a last line still being written by a live trainer is left out, not an error."""
    path = Path(output_dir) / LOSS_LOG
    return read_jsonl(path, skip_unreadable=True) if path.exists() else []


def read_data_stats(output_dir: str | Path) -> dict:
    path = Path(output_dir) / DATA_STATS
    return json.loads(path.read_text()) if path.exists() else {}
