# The study's entry points. Each target sets up .venv first (scripts/setup_env.sh; a no-op once done).
PY := .venv/bin/python
PARAMS ?= params/mini.yaml

.PHONY: setup demo smoke test unit lab clean-runs

setup:
	@bash scripts/setup_env.sh

# SUBMIT=slurm: the same chain as a SLURM job graph on CLUSTER's cluster file, waiting for it to end
# (scripts/local_slurm.sh start gives this machine a one-node cluster).
CLUSTER ?= configs/slurm/local.yaml

demo: setup  ## the paper in miniature (params/mini.yaml), or PARAMS=... for another study; SUBMIT=slurm for SLURM
	$(PY) -m posttrain.pipeline $(PARAMS) $(if $(SUBMIT),--submit $(SUBMIT) --cluster $(CLUSTER) --wait) $(ARGS)

smoke: setup  ## the smallest end-to-end run of the whole chain (what CI runs)
	$(PY) -m posttrain.pipeline params/smoke.yaml $(ARGS)

test: setup  ## unit tests + the smoke chain end to end
	$(PY) -m pytest -q -rs tests

unit: setup  ## unit tests only (skips the slow end-to-end ones)
	$(PY) -m pytest -q -rs -m "not slow" tests

lab: setup  ## JupyterLab at the repository root (README, docs/, figures/, runs/ reachable), opened on notebooks/
	.venv/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks \
	  --config=scripts/jupyter_lab_config.py $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

clean-runs:
	rm -rf runs/
