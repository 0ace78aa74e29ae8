"""Experiment params: one YAML per experiment, validated before anything runs.

Two shapes share these schemas:
- `RunParams`: one training run (pre-training or SFT), e.g. `params/paper/sft_math_1.5b_0pre.yaml`.
- `StudyParams`: a whole study (setup → pretrain → sft → evaluate → report), e.g. `params/mini.yaml`.

Every field is declared; an unknown, missing or mistyped field raises `ParamsError` naming the file and the field.
Strings may contain `{run_dir}` and `{repo}`, substituted at load time, so a study can point its SFT runs at its own
pre-training outputs.
A file may start from another: `base: mini.yaml` (relative to it) takes that file's params and merges this file's keys
over them — mappings key by key, runs in `pretrain`/`sft` by their `name`, other values replaced (`merge_overrides`);
`params/smoke.yaml` is written that way.
"""
from posttrain.params.load import (RUN_LISTS, _format_errors, _read_yaml, _substitute, dump_params,  # noqa: F401
                                   legacy_params_hash, load_run_params, load_study, merge_overrides, params_hash,
                                   portable, repo_relative, resolve_repo_path)
from posttrain.params.schema import (Arm, DataParams, Domain, EmbeddingReset, EvalModel, EvalParams,
                                    ExploreParams, GateParams, LaunchParams, LoraParams,
                                    MiniSetupParams, ModelParams, ParamsError, REPO_ROOT,
                                    ReportParams, RunParams, SamplingParams, Strict, StudyParams,
                                    TrainingParams)  # noqa: F401
