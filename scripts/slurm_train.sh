#!/usr/bin/env bash
# Multi-node training under Slurm: one srun task per node, each running `accelerate launch` for its GPUs.
#   sbatch --nodes=4 --gpus-per-node=8 scripts/slurm_train.sh params/paper/sft_math_7b_0pre.yaml
# The accelerate command comes from posttrain.training.launch_command (the params' launch section: backend,
# num_machines, gpus_per_machine); this script only supplies MASTER_ADDR/MASTER_PORT and each node's MACHINE_RANK.
# A re-submitted job resumes from the run's latest complete checkpoint.
#SBATCH --job-name=posttrain
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

PARAMS=${1:?usage: sbatch --nodes=N scripts/slurm_train.sh PARAMS_YAML [RUN_DIR]}
RUN_DIR=${2:-}
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
PYTHON=${PYTHON:-.venv/bin/python}

export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
RUN_DIR_ARGS=()
[[ -n "$RUN_DIR" ]] && RUN_DIR_ARGS=(--run-dir "$RUN_DIR")
LAUNCH=$(PYTHONPATH=lib "$PYTHON" -m posttrain.training --params "$PARAMS" "${RUN_DIR_ARGS[@]}" --print-launch)

NODES_IN_PARAMS=$(echo "$LAUNCH" | sed -n 's/.*--num_machines \([0-9]*\).*/\1/p')
if [[ -n "$NODES_IN_PARAMS" && "$NODES_IN_PARAMS" != "${SLURM_NNODES:-1}" ]]; then
  echo "launch.num_machines=$NODES_IN_PARAMS in $PARAMS but the job has ${SLURM_NNODES:-1} nodes" >&2
  exit 2
fi
echo "master $MASTER_ADDR:$MASTER_PORT; per node: $LAUNCH"

# Single quotes: MACHINE_RANK is expanded inside each task, from its own SLURM_NODEID.
srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c \
  "export MACHINE_RANK=\$SLURM_NODEID PYTHONPATH=lib; $LAUNCH"
