"""A run directory can move: copied or renamed (or the repository cloned elsewhere), it skips all finished work.

The slow test makes a small finished study for real (params/smoke.yaml's miniature set-up, its pre-training and one
SFT run cut to 2 steps and trained through train_runs' subprocess, evaluation with the HF engine and the real math
grader), copies its run dir to another place under another name, deletes the original, and checks every skip check
on the copy, and that results.csv, done markers and records hold no absolute path.

Run: .venv/bin/python -m pytest tests/test_portable_runs.py -q   (CPU, ~1-2 min)
"""
import json
import shutil
from pathlib import Path

import pytest

import posttrain.params.load as params_module  # where the loaders read REPO_ROOT
from posttrain.params import (REPO_ROOT, StudyParams, legacy_params_hash, load_run_params, load_study, params_hash,
                              portable)
from posttrain.runs import DONE_MARKER, is_done

SMOKE = REPO_ROOT / "params" / "smoke.yaml"
PAPER = REPO_ROOT / "params" / "paper"


def _short(run, steps: int = 2) -> dict:
    data = run.model_dump(mode="json")
    data["training"].update(max_steps=steps, save_steps=steps, save_at=[], warmup_steps=1, logging_steps=1)
    return data


def _study(run_dir: Path) -> StudyParams:
    """params/smoke.yaml with its run dir at `run_dir`, cut to what a test finishes in a minute: pre-training and
    the math 0%-Pre and 100%-Pre runs (the latter starts from the pre-training) of 2 steps each; Base and both runs
    evaluated on 2 mini_math problems."""
    study = load_study(SMOKE, str(run_dir))
    data = study.model_dump(mode="json")
    data["pretrain"] = [_short(r) for r in study.pretrain if r.name == "pretrain_full"]
    data["sft"] = [_short(r) for r in study.sft if r.name in ("math_0pre", "math_100pre")]
    data["evaluate"].update(benchmarks={"math": ["mini_math"]}, curve_benchmarks=None, cross_domain=False,
                            checkpoints="final", limit=2, engine="hf",
                            sampling={**data["evaluate"]["sampling"], "n": 2, "max_tokens": 16})
    return StudyParams.model_validate(data)


def _files(run_dir: Path) -> list[Path]:
    """What the skip checks and the report read: done markers, set-up marker, records, results.csv."""
    return sorted([*run_dir.rglob(DONE_MARKER), run_dir / "setup" / "setup.json", *run_dir.glob("eval/**/*.jsonl"),
                   run_dir / "eval" / "results.csv"])


@pytest.mark.slow
def test_a_copied_and_renamed_run_dir_skips_all_finished_work(tmp_path, monkeypatch):
    import posttrain.grading.math as math_grader
    from posttrain import evaluation, generation, training
    from posttrain.mini.build import build_mini_setup, setup_is_current

    first = _study(tmp_path / "a" / "runs" / "smoke")
    build_mini_setup(first.setup, first.run_dir)
    assert [r["status"] for r in training.train_runs(first.pretrain + first.sft)] == ["done"] * 3
    evaluation.run_evaluation(first, progress=False)
    results = Path(first.run_dir) / "eval" / "results.csv"
    before = results.read_text()

    moved = tmp_path / "b" / "elsewhere" / "smoke_copy"
    shutil.copytree(first.run_dir, moved)
    shutil.rmtree(tmp_path / "a")  # nothing may still lean on the original
    second = _study(moved)
    assert params_hash(second) == params_hash(first)  # the pipeline's stage stamps
    assert setup_is_current(second.setup, moved)
    assert all(is_done(r) for r in second.pretrain + second.sft)
    monkeypatch.setattr(training, "_run_local", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert [r["status"] for r in training.train_runs(second.pretrain + second.sft)] == ["done"] * 3
    monkeypatch.setattr(generation, "generate", lambda *a, **k: pytest.fail("finished problems generated again"))
    monkeypatch.setattr(math_grader, "grade_math_batch", lambda *a, **k: pytest.fail("graded samples graded again"))
    table = evaluation.run_evaluation(second, progress=False)

    assert len(table) == 3 and set(table["num_problems"]) == {2}
    assert (moved / "eval" / "results.csv").read_text() == before  # the same table, wherever the run dir lies
    assert sorted(table["path"]) == ["{run_dir}/pretrain/pretrain_full/checkpoint-2",
                                     "{run_dir}/sft/math_0pre/checkpoint-2", "{run_dir}/sft/math_100pre/checkpoint-2"]
    files = _files(moved)
    assert len(files) == 8 and all(f.is_file() for f in files)
    for f in files:
        assert str(tmp_path) not in f.read_text(), f"{f.relative_to(moved)} holds an absolute path"
    done = json.loads((moved / "sft" / "math_100pre" / DONE_MARKER).read_text())
    assert done["final_checkpoint"] == "checkpoint-2"
    assert done["init_checkpoint"] == "../../pretrain/pretrain_full/checkpoint-2"  # relative to its output_dir


def test_a_clone_of_the_repository_elsewhere_has_the_same_hashes(monkeypatch):
    def hashes():  # the study's, and each run's as the trainer loads it: its own file with the study's run dir
        study = load_study(PAPER / "study.yaml")
        runs = [load_run_params(PAPER / f"{r.name}.yaml", study.run_dir) for r in study.pretrain + study.sft]
        assert [params_hash(r) for r in runs] == [params_hash(r) for r in study.pretrain + study.sft]
        return study.run_dir, params_hash(study), [params_hash(r) for r in runs]
    here = hashes()
    monkeypatch.setattr(params_module, "REPO_ROOT", Path("/somewhere/else/posttrain"))
    clone = hashes()
    assert clone[0] == "/somewhere/else/posttrain/runs/paper" != here[0]
    assert clone[1:] == here[1:] and len(here[2]) == 28


def test_hashes_see_what_changed_and_old_done_markers_still_count(tmp_path):
    study = load_study(SMOKE, str(tmp_path / "runs" / "smoke"))
    assert params_hash(load_study(SMOKE, str(tmp_path / "renamed"))) == params_hash(study)
    other = study.model_copy(update={"evaluate": study.evaluate.model_copy(update={"data_dir": "/data/other"})})
    assert params_hash(other) != params_hash(study)  # a path that points elsewhere is a change
    assert portable(f"{study.run_dir}/sft/x", study.run_dir) == "{run_dir}/sft/x"
    assert portable(f"{REPO_ROOT}/params", study.run_dir) == "{repo}/params"
    assert portable(f"{REPO_ROOT}2/x") == f"{REPO_ROOT}2/x" and portable("Qwen/Qwen2.5-1.5B") == "Qwen/Qwen2.5-1.5B"
    run = study.sft[0]
    Path(run.output_dir).mkdir(parents=True)
    marker = Path(run.output_dir) / DONE_MARKER
    marker.write_text(json.dumps({"params_hash": legacy_params_hash(run)}))  # written before run dirs could move
    assert is_done(run)
    marker.write_text(json.dumps({"params_hash": legacy_params_hash(study.sft[1])}))
    assert not is_done(run)
