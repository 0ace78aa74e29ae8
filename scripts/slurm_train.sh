#!/usr/bin/env bash
# Multi-node training under Slurm: one srun task per node, each running the run's launch command for its GPUs.
#   sbatch --nodes=4 --gpus-per-node=8 scripts/slurm_train.sh params/paper/sft_math_7b_0pre.yaml runs/paper
# RUN_DIR (relative to the submission directory) is substituted for {run_dir} in the params: the paper's files put
# every output there (params/paper/study.yaml reads runs/paper), and refuse to launch without it.
# Submit from any directory: PARAMS_YAML is taken relative to it. The launch command comes from
# posttrain.training.launch_command (the params' launch section: backend, num_machines, gpus_per_machine) and runs
# the venv's own interpreter (`python -m accelerate.commands.launch`), so no activated venv is needed on the nodes;
# this script only supplies MASTER_ADDR/MASTER_PORT and each node's MACHINE_RANK. A re-submitted job resumes from
# the run's latest complete checkpoint. Tested with stub srun/scontrol in tests/test_scaleout.py.
#SBATCH --job-name=posttrain
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

PARAMS=$(realpath "${1:?usage: sbatch --nodes=N scripts/slurm_train.sh PARAMS_YAML [RUN_DIR]}")
RUN_DIR=${2:-}
[[ -n "$RUN_DIR" ]] && RUN_DIR=$(realpath -m "$RUN_DIR")

# The repository: sbatch runs a copy of this script from a spool directory, so $0 is not in it; Slurm keeps the
# submitted script's path in the job's Command field. POSTTRAIN_REPO overrides both.
repo_root() {
  if [[ -n "${POSTTRAIN_REPO:-}" ]]; then echo "$POSTTRAIN_REPO"; return; fi
  local script=""
  if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    script=$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -n 1)
  fi
  [[ -f "$script" ]] || script=$0
  cd "$(dirname "$script")/.." && pwd
}
REPO=$(repo_root)
cd "$REPO"  # the accelerate configs name files relative to the repository root
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[[ -x "$PYTHON" ]] || { echo "no Python at $PYTHON (run scripts/setup_env.sh in $REPO, or set PYTHON)" >&2; exit 2; }

export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
RUN_DIR_ARGS=()
[[ -n "$RUN_DIR" ]] && RUN_DIR_ARGS=(--run-dir "$RUN_DIR")
LAUNCH=$("$PYTHON" -m posttrain.training --params "$PARAMS" "${RUN_DIR_ARGS[@]}" --print-launch)

NODES_IN_PARAMS=$(echo "$LAUNCH" | sed -n 's/.*--num_machines \([0-9]*\).*/\1/p')
if [[ -n "$NODES_IN_PARAMS" && "$NODES_IN_PARAMS" != "${SLURM_NNODES:-1}" ]]; then
  echo "launch.num_machines=$NODES_IN_PARAMS in $PARAMS but the job has ${SLURM_NNODES:-1} nodes" >&2
  exit 2
fi
echo "repo $REPO; master $MASTER_ADDR:$MASTER_PORT; per node: $LAUNCH"

# MACHINE_RANK is expanded inside each task (escaped here), from its own SLURM_NODEID.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c "cd '$REPO' && export MACHINE_RANK=\$SLURM_NODEID && $LAUNCH"
