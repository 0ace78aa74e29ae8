"""posttrain.pipeline without running a chain (tests/test_smoke_chain.py runs one): stage order, the headless
progress setting, argument errors.

Run: .venv/bin/python -m pytest tests/test_pipeline.py -q
"""
import os

import pytest

from posttrain import pipeline
from posttrain.params import REPO_ROOT


def test_setup_stage_runs_before_the_notebooks():
    assert pipeline.STAGES == ["mini_setup", "00_explore_data", "01_pretrain", "02_sft", "03_evaluate", "04_report"]
    assert all((pipeline.NOTEBOOK_DIR / f"{s}.ipynb").is_file() for s in pipeline.NOTEBOOK_STAGES)


def test_headless_progress_disables_bars_and_restores(monkeypatch):
    for name in pipeline.PROGRESS_OFF:
        monkeypatch.delenv(name, raising=False)
    with pipeline.headless_progress():
        assert all(os.environ[name] == "1" for name in pipeline.PROGRESS_OFF)
    assert not set(pipeline.PROGRESS_OFF) & set(os.environ)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # the caller's choice wins
    with pipeline.headless_progress():
        assert os.environ["TQDM_DISABLE"] == "0" and os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TQDM_DISABLE"] == "0"


@pytest.mark.parametrize("env, enabled, off", [("1", True, True), ("0", True, False), ("", False, True),
                                               ("true", True, True)])
def test_progress_bars_honour_tqdm_disable(monkeypatch, env, enabled, off):
    """tqdm ignores TQDM_DISABLE for notebook widgets (what a papermill kernel gets); posttrain.progress.bar reads it
    at every call."""
    from posttrain import progress
    monkeypatch.setenv("TQDM_DISABLE", env)
    with progress.bar(enabled=enabled, total=3) as b:
        assert b.disable == off


def test_unknown_stage_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(SystemExit, match=r"--only: unknown stage '03_eval'"):
        pipeline.run_pipeline(REPO_ROOT / "params" / "smoke.yaml", str(tmp_path / "run"), only=["03_eval"])
    assert not (tmp_path / "run" / "setup").exists()


def test_stage_done_needs_the_notebook_and_the_same_hash(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / ".02_sft.done.json").write_text('{"params_hash": "abc"}')
    assert not pipeline.stage_is_done(tmp_path, "02_sft", "abc")  # no executed notebook
    (notebooks / "02_sft.ipynb").write_text("{}")
    assert pipeline.stage_is_done(tmp_path, "02_sft", "abc") and not pipeline.stage_is_done(tmp_path, "02_sft", "xyz")
