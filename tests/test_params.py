"""Params validation: every shipped YAML loads; a wrong or missing field is one clear error naming it."""
from pathlib import Path

import pytest

from posttrain.params import REPO_ROOT, ParamsError, RunParams, load_study, load_run_params, params_hash

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
    p = load_run_params(_write(tmp_path, TRAIN_OK))
    assert isinstance(p, RunParams) and p.training.learning_rate == 3.0e-4


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
        load_run_params(_write(tmp_path, TRAIN_OK.replace(*edit)))
    assert field in str(e.value) and "p.yaml" in str(e.value)


def test_lora_refusal_says_why(tmp_path):
    with pytest.raises(ParamsError, match="frozen random weights"):
        load_run_params(_write(tmp_path, TRAIN_OK.replace("init: scratch", "init: scratch, lora: {r: 8}")))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_run_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_run_params(_write(tmp_path, "a: [1,"))


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")) + sorted((PARAMS / "paper").glob("study*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_studies_validate(path):
    study = load_study(path)
    assert study.name and study.evaluate.benchmarks
    assert params_hash(study) == params_hash(load_study(path))


@pytest.mark.parametrize("path", sorted(p for p in (PARAMS / "paper").glob("*.yaml") if not p.name.startswith("study")),
                         ids=lambda p: p.name)
def test_shipped_paper_runs_validate(path):
    run = load_run_params(path, run_dir="runs/paper")
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


# ---------------------------------------------------------------------------------------------- layered params

BASE_STUDY = """
name: b
x-training: &training {stage: sft, max_steps: 10, save_steps: 5}
sft:
  - {name: a, arm: 0%-Pre, size: mini, domain: math, output_dir: "{run_dir}/a",
     model: {name_or_path: cfg, init: scratch}, data: {source: messages_jsonl, path: x.jsonl}, training: *training}
  - {name: c, arm: 0%-Pre, size: mini, domain: code, output_dir: "{run_dir}/c",
     model: {name_or_path: cfg, init: scratch}, data: {source: messages_jsonl, path: y.jsonl}, training: *training}
evaluate: {benchmarks: {math: [mini_math], code: [mini_code]}, sampling: {n: 4, max_tokens: 64}}
"""


def _layered(tmp_path: Path, override: str) -> Path:
    (tmp_path / "base.yaml").write_text(BASE_STUDY)
    (tmp_path / "sub").mkdir(exist_ok=True)
    p = tmp_path / "sub" / "over.yaml"
    p.write_text("base: ../base.yaml\n" + override)
    return p


def test_override_merges_mappings_and_runs_by_name(tmp_path):
    study = load_study(_layered(tmp_path, """
name: o
sft:
  - {name: c, training: {max_steps: 3}}
evaluate: {sampling: {n: 2}, limit: 5}
"""))
    a, c = study.sft
    assert study.name == "o" and study.run_dir.endswith("runs/o")  # {name} substituted after the merge
    assert (c.training.max_steps, c.training.save_steps, c.data.path) == (3, 5, "y.jsonl")
    assert a.training.max_steps == 10  # the anchor a and c share in the base is not edited through c
    assert (study.evaluate.sampling.n, study.evaluate.sampling.max_tokens, study.evaluate.limit) == (2, 64, 5)
    assert study.evaluate.benchmarks == {"math": ["mini_math"], "code": ["mini_code"]}


def test_override_replaces_plain_lists(tmp_path):
    study = load_study(_layered(tmp_path, "evaluate: {benchmarks: {math: [mini_math_competition]}}\n"))
    assert study.evaluate.benchmarks == {"math": ["mini_math_competition"], "code": ["mini_code"]}


@pytest.mark.parametrize("override, message", [
    ("sft:\n  - {name: zz, training: {max_steps: 3}}\n", r"sft\.0: no run named 'zz'.*\['a', 'c'\]"),
    ("sft:\n  - {training: {max_steps: 3}}\n", r"sft\.0: an override run needs the `name`"),
    ("evaluate: {sampling: {n: 0}}\n", r"evaluate\.sampling\.n"),                # validated after the merge
    ("sft:\n  - {name: a, training: {max_stepz: 3}}\n", r"sft\.0\.training\.max_stepz: unknown field"),
])
def test_override_errors_name_the_field(tmp_path, override, message):
    with pytest.raises(ParamsError, match=message) as e:
        load_study(_layered(tmp_path, override))
    assert "over.yaml" in str(e.value)


def test_base_errors(tmp_path):
    with pytest.raises(ParamsError, match=r"p\.yaml: base \.\./nope\.yaml: params file not found"):
        load_study(_write(tmp_path, "base: ../nope.yaml\n"))
    with pytest.raises(ParamsError, match="base: expected the path"):
        load_study(_write(tmp_path, "base: [a.yaml]\n"))
    (tmp_path / "loop.yaml").write_text("base: p.yaml\n")
    with pytest.raises(ParamsError, match="cycle"):
        load_study(_write(tmp_path, "base: loop.yaml\n"))


def test_smoke_is_mini_at_toy_size():
    """smoke.yaml overrides sizes only: every run keeps mini's arm, model, data and LR recipe."""
    mini, smoke = load_study(PARAMS / "mini.yaml", "/r"), load_study(PARAMS / "smoke.yaml", "/r")
    assert [r.name for r in smoke.pretrain + smoke.sft] == [r.name for r in mini.pretrain + mini.sft]
    for m, s in zip(mini.pretrain + mini.sft, smoke.pretrain + smoke.sft):
        assert (s.arm, s.model, s.data, s.output_dir) == (m.arm, m.model, m.data, m.output_dir)
        assert s.training.learning_rate == m.training.learning_rate
        assert s.training.lr_scheduler == m.training.lr_scheduler
        assert s.training.max_steps < m.training.max_steps
    assert smoke.evaluate.benchmarks == mini.evaluate.benchmarks and smoke.evaluate.prompts == mini.evaluate.prompts


# ---------------------------------------------------------------------------------------------- paper params


def _paper_generator():
    import importlib.util
    spec = importlib.util.spec_from_file_location("make_paper_params", REPO_ROOT / "scripts" / "make_paper_params.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_params_are_the_generators_output():
    gen = _paper_generator()
    committed = {p.name for p in (PARAMS / "paper").glob("*.yaml") if not p.name.startswith("study")}
    assert committed == set(gen.paper_files()), "params/paper/ holds files the generator does not write (or lacks some)"
    assert gen.stale_files() == [], "run: .venv/bin/python scripts/make_paper_params.py (never edit them by hand)"


def test_paper_params_check_names_an_edited_file(tmp_path):
    gen = _paper_generator()
    for name, text in gen.paper_files().items():
        (tmp_path / name).write_text(text)
    edited = tmp_path / "sft_code_7b_0pre.yaml"
    edited.write_text(edited.read_text().replace("max_steps: 50000", "max_steps: 40000"))
    assert gen.stale_files(tmp_path) == ["sft_code_7b_0pre.yaml"]


# ---------------------------------------------------------------------------------------------- paths


def test_relative_params_and_run_dir_resolve_against_the_repo_from_another_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT / "notebooks")  # where a JupyterLab kernel runs
    study = load_study("params/smoke.yaml", "runs/e-somewhere")
    assert study.name == "smoke" and study.run_dir == str(REPO_ROOT / "runs" / "e-somewhere")
    assert load_run_params("params/paper/sft_math_7b_0pre.yaml").size == "7B"
    monkeypatch.chdir(tmp_path)  # a path that exists relative to the cwd wins
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "smoke.yaml").write_text("base: " + str(PARAMS / "smoke.yaml") + "\nname: local\n")
    assert load_study("params/smoke.yaml").name == "local"
    with pytest.raises(ParamsError, match=f"params file not found: {REPO_ROOT}/params/nope.yaml"):
        load_study("params/nope.yaml")


def test_repo_relative():
    from posttrain.params import repo_relative
    assert repo_relative(REPO_ROOT / "runs" / "smoke" / "x.log") == "runs/smoke/x.log"
    assert repo_relative("/elsewhere/x.log") == "/elsewhere/x.log"
    assert repo_relative("Qwen/Qwen2.5-7B") == "Qwen/Qwen2.5-7B" and repo_relative("vllm") == "vllm"  # not paths here
    assert repo_relative(3.5) == 3.5 and repo_relative(None) is None
