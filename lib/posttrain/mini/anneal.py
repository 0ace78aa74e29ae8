"""Annealed SFT-scale points by warmup-stable-decay (issue 23; docs/miniature.md "v3"): one stable run at the peak
LR (constant_with_warmup) saves full checkpoints at the branch steps (training.save_at), and each budget is a short
decay branch that resumes one of them and decays the LR to 0 (Hägele et al. 2024, "Scaling Laws and
Compute-Optimal Training Beyond Fixed Training Durations"). ×1 / ×4 / ×16 are then each an annealed run, at the
cost of the stable run plus the decays.

    stable = study.sft[0]                                  # lr_scheduler constant_with_warmup, save_at: [s1, s4, ...]
    branches = [decay_branch(stable, s, d) for s, d in ((s1, d1), (s4, d4), (s16, d16))]

A branch trains steps s+1 .. s+d with exactly the stable run's weights, optimizer state, RNG and data order up to s
(posttrain.trainer resumes training.branch_from); only the LR differs after s.
"""
from __future__ import annotations

from posttrain.params import RunParams
from posttrain.runs import checkpoint_dir

STABLE_SCHEDULER = "constant_with_warmup"


def decay_branch(stable: RunParams, step: int, decay_steps: int, decay_type: str = "1-sqrt",
                 name: str | None = None, output_dir: str | None = None) -> RunParams:
    """The RunParams of a decay branch of `stable` at `step`: the same run, lr_scheduler warmup_stable_decay with
    `decay_steps` of decay, max_steps step + decay_steps, resuming stable's checkpoint-`step` (which stable must save:
    a save_at or save_steps step). Output: `<stable output_dir>_decay<step>` unless given."""
    t = stable.training
    if t.lr_scheduler != STABLE_SCHEDULER:
        raise ValueError(f"{stable.name}: a decay branch needs a stable run (training.lr_scheduler "
                         f"{STABLE_SCHEDULER!r}), not {t.lr_scheduler!r}")
    if t.max_steps is None or not t.warmup_steps < step <= t.max_steps:
        raise ValueError(f"{stable.name}: branch step {step} must lie after warmup ({t.warmup_steps}) and within "
                         f"max_steps ({t.max_steps})")
    if step % t.save_steps and step not in t.save_at:
        raise ValueError(f"{stable.name}: the stable run saves no checkpoint at step {step}; add it to "
                         "training.save_at")
    name = name or f"{stable.name}_decay{step}"
    output_dir = output_dir or f"{stable.output_dir}_decay{step}"
    training = t.model_copy(update={
        "lr_scheduler": "warmup_stable_decay", "decay_steps": decay_steps, "decay_type": decay_type,
        "max_steps": step + decay_steps, "save_steps": step + decay_steps, "save_at": [],
        "branch_from": str(checkpoint_dir(stable.output_dir, step))})
    return RunParams.model_validate({**stable.model_dump(), "name": name, "output_dir": output_dir,
                                     "training": training.model_dump()})


def branch_steps(stable_steps: list[int], decay_fraction: float) -> list[tuple[int, int]]:
    """(branch step, decay steps) for budgets that end at `stable_steps` (e.g. ×1 / ×4 / ×16 in steps) with the last
    `decay_fraction` of each budget as decay: the branch leaves the stable run at budget × (1 - fraction)."""
    if not 0 < decay_fraction < 1:
        raise ValueError(f"decay_fraction {decay_fraction}: expected a share between 0 and 1")
    out = []
    for total in stable_steps:
        decay = max(1, round(total * decay_fraction))
        out.append((total - decay, decay))
    return out
