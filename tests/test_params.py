"""Params validation: every shipped YAML loads; a wrong or missing field is one clear error naming it."""
from pathlib import Path

import pytest

from posttrain.params import REPO_ROOT, ParamsError, TrainParams, load_study, load_train_params, params_hash

PARAMS = REPO_ROOT / "params"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


TRAIN_OK = """
name: t
arm: 0%-Pre
size: mini
domain: math
output_dir: out
model: {name_or_path: cfg, init: scratch}
data: {source: messages_jsonl, path: x.jsonl}
training: {stage: sft, max_steps: 10}
"""


def test_train_params_load(tmp_path):
    p = load_train_params(_write(tmp_path, TRAIN_OK))
    assert isinstance(p, TrainParams) and p.training.learning_rate == 3.0e-4


@pytest.mark.parametrize("edit, field", [
    (("max_steps: 10", "max_stepz: 10"), "training.max_stepz"),           # misspelt
    (("arm: 0%-Pre", "arm: 50%-Pre"), "arm"),                             # not an arm
    (("init: scratch", "init: scratch, lora: {r: 8}"), "model"),          # LoRA on random weights
    (("init: scratch", "init: checkpoint"), "model"),                     # checkpoint without a path
    (("domain: math\n", ""), "domain"),                                   # SFT needs a domain
    (("max_steps: 10", "max_steps: -1"), "training.max_steps"),
])
def test_train_params_errors_name_the_field(tmp_path, edit, field):
    with pytest.raises(ParamsError) as e:
        load_train_params(_write(tmp_path, TRAIN_OK.replace(*edit)))
    assert field in str(e.value) and "p.yaml" in str(e.value)


def test_lora_refusal_says_why(tmp_path):
    with pytest.raises(ParamsError, match="frozen random weights"):
        load_train_params(_write(tmp_path, TRAIN_OK.replace("init: scratch", "init: scratch, lora: {r: 8}")))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_train_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_train_params(_write(tmp_path, "a: [1,"))


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")) + sorted((PARAMS / "paper").glob("study*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_studies_validate(path):
    study = load_study(path)
    assert study.name and study.evaluate.benchmarks
    assert params_hash(study) == params_hash(load_study(path))


@pytest.mark.parametrize("path", sorted(p for p in (PARAMS / "paper").glob("*.yaml") if not p.name.startswith("study")),
                         ids=lambda p: p.name)
def test_shipped_paper_runs_validate(path):
    run = load_train_params(path, run_dir="runs/paper")
    assert run.size in {"1.5B", "3B", "7B", "14B"}


def test_run_dir_substitution(tmp_path):
    p = _write(tmp_path, """
name: s
sft:
  - name: a
    arm: short-Pre
    size: mini
    domain: code
    output_dir: "{run_dir}/sft/a"
    model: {name_or_path: "{run_dir}/setup/base_config", init: checkpoint, checkpoint: "{run_dir}/pretrain/p"}
    data: {source: messages_jsonl, path: "{run_dir}/setup/data/code_train.jsonl"}
    training: {stage: sft, max_steps: 5}
evaluate: {benchmarks: {code: [mini_code]}}
""")
    study = load_study(p, run_dir=str(tmp_path / "r"))
    assert study.sft[0].output_dir == f"{tmp_path}/r/sft/a"
    assert study.sft[0].model.checkpoint == f"{tmp_path}/r/pretrain/p"
