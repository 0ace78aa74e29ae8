"""Paper scale on its real model configs and a cluster's terms: every Qwen2.5 size covers the SFT and evaluation
lengths, a 0.1%-Pre run starts only from a finished pre-training and records which checkpoint, resume checkpoints
are pruned while evaluation snapshots stay, TensorBoard gets the training curves, outputs follow the run dir.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_paper_scale.py -x -q   (CPU, tiny models, ~30 s)
"""
import importlib.util
import json
import shutil

import pytest
import torch

from posttrain.evaluation import plan_evaluations
from posttrain.generation import _context_limit
from posttrain.params import REPO_ROOT, RunParams, load_run_params, load_study
from posttrain.runs import (CHECKPOINT_COMPLETE_FILE, evaluation_checkpoints, list_checkpoints, list_snapshots,
                            read_done)
from posttrain.trainer import train_in_process

QWEN = REPO_ROOT / "tests" / "fixtures" / "qwen2.5"
PAPER = REPO_ROOT / "params" / "paper"
SIZES = ["1.5B", "3B", "7B", "14B"]


def _paper_generator():
    spec = importlib.util.spec_from_file_location("make_paper_params", REPO_ROOT / "scripts" / "make_paper_params.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _paper_study_on_fixtures(tmp_path, max_model_len=None):
    """params/paper/study.yaml with each size's Base model replaced by its real hub config (tests/fixtures/qwen2.5)."""
    study = load_study(PAPER / "study.yaml", str(tmp_path / "run"))
    evaluate = study.evaluate.model_copy(update={
        "base_model": {size: str(QWEN / f"Qwen2.5-{size}") for size in SIZES},
        **({"max_model_len": max_model_len} if max_model_len is not None else {})})
    return study.model_copy(update={"evaluate": evaluate})


# ---------------------------------------------------------------------------------------------- model configs


def test_every_size_covers_the_sft_and_pretraining_length():
    from transformers import AutoConfig
    runs = [load_run_params(f, run_dir="/r") for f in sorted(PAPER.glob("*_*.yaml"))]
    for run in runs:
        cfg = AutoConfig.from_pretrained(QWEN / f"Qwen2.5-{run.size}")
        assert run.training.max_length <= cfg.max_position_embeddings, run.name
        assert run.training.max_length == 32768, run.name  # pre-training retains the SFT phase's length


def test_evaluation_plans_a_context_every_size_can_take(tmp_path):
    """Each size's Base job gets a max_model_len within its model's positions (vLLM refuses more), with room for
    the 32k new tokens; Qwen2.5-3B (32768 positions) is the one that cannot take prompt + 32k."""
    study = _paper_study_on_fixtures(tmp_path)
    jobs = [j for j in plan_evaluations(study) if j.arm == "Base"]
    assert sorted(j.size for j in jobs) == sorted(SIZES) and all(j.step == 0 for j in jobs)
    for job in jobs:
        limit = _context_limit(job.path, study.evaluate.context_for(job.size))
        assert limit >= study.evaluate.sampling.max_tokens, job.size
    assert {j.size: _context_limit(j.path, study.evaluate.context_for(j.size)) for j in jobs} == {
        "1.5B": 34816, "3B": 32768, "7B": 34816, "14B": 34816}


def test_one_context_for_all_sizes_is_refused_before_vllm(tmp_path):
    study = _paper_study_on_fixtures(tmp_path, max_model_len=34816)  # what the study asked before
    refused = []
    for job in plan_evaluations(study):
        try:
            _context_limit(job.path, study.evaluate.context_for(job.size))
        except ValueError as e:
            assert "evaluate.max_model_len 34816 exceeds the 32768 positions" in str(e)
            refused.append(job.size)
    assert refused == ["3B"]


def test_generator_parameter_counts_match_the_real_configs():
    from transformers import AutoConfig, AutoModelForCausalLM
    gen = _paper_generator()
    for size, (params, layers, hidden) in gen.ARCH.items():
        cfg = AutoConfig.from_pretrained(QWEN / f"Qwen2.5-{size}")
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
        assert (sum(p.numel() for p in model.parameters()), cfg.num_hidden_layers, cfg.hidden_size) == (
            params, layers, hidden), size


def test_resume_checkpoints_are_half_an_hour_to_an_hour_apart():
    gen = _paper_generator()
    for size in SIZES:
        run = load_run_params(PAPER / f"sft_math_{size.lower()}_0pre.yaml", run_dir="/r")
        minutes = run.training.save_steps * gen.step_seconds(size) / 60
        assert 30 <= minutes <= 60, (size, minutes)
        assert run.training.save_total_limit == 2 and run.training.snapshot_steps == 5000
        assert run.training.snapshot_steps % run.training.save_steps == 0
        assert run.training.report_to == "tensorboard" and run.training.use_liger == "off"


def test_paper_outputs_follow_the_run_dir(tmp_path, capsys):
    from posttrain.training import main
    run = load_run_params(PAPER / "sft_math_1.5b_0.1pre.yaml", run_dir=str(tmp_path))
    assert run.output_dir == f"{tmp_path}/sft/sft_math_1.5b_0.1pre"
    assert run.model.checkpoint == f"{tmp_path}/pretrain/pretrain_1.5b_short"
    study = load_study(PAPER / "study.yaml", str(tmp_path / "s"))
    assert all(r.output_dir.startswith(f"{tmp_path}/s/") for r in study.pretrain + study.sft)
    with pytest.raises(SystemExit):
        main(["--params", str(PAPER / "sft_math_1.5b_0pre.yaml"), "--print-launch"])
    assert "needs --run-dir" in capsys.readouterr().err
    main(["--params", str(PAPER / "sft_math_1.5b_0pre.yaml"), "--run-dir", str(tmp_path), "--print-launch"])
    assert f"--run-dir {tmp_path}" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- a tiny chain


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("paper_scale"), num_rows=200)


def _run(toy, name, stage="sft", model=None, **training) -> RunParams:
    return RunParams.model_validate({
        "name": name, "arm": "0.1%-Pre", "size": "mini", "domain": "math" if stage == "sft" else None,
        "output_dir": str(toy / name), "model": model or {"name_or_path": str(toy / "base"), "init": "scratch"},
        "data": {"source": "messages_jsonl" if stage == "sft" else "text_jsonl",
                 "path": str(toy / ("sft.jsonl" if stage == "sft" else "text.jsonl"))},
        "training": {"stage": stage, "max_length": 64, "tokens_per_step": 256, "per_device_batch_size": 2,
                     "max_steps": 6, "warmup_steps": 1, "learning_rate": 3e-3, "save_steps": 2, "logging_steps": 1,
                     "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
                     "assistant_only_loss": stage == "sft", **training}})


def test_short_pretraining_then_sft_from_its_final_checkpoint_with_snapshots(toy):
    (toy / "text.jsonl").write_text("".join(json.dumps({"text": f"reverse {i} {str(i)[::-1]}"}) + "\n"
                                            for i in range(300)))
    pre = _run(toy, "pre", stage="pretrain", save_total_limit=2)
    from_pre = {"name_or_path": str(toy / "base"), "init": "checkpoint", "checkpoint": pre.output_dir}
    sft = _run(toy, "sft", model=from_pre, save_total_limit=2, snapshot_steps=4,
               report_to="tensorboard" if importlib.util.find_spec("tensorboard") else "none")

    # A pre-training that has saved checkpoints but not finished: the SFT run refuses before writing anything.
    (toy / "pre" / "checkpoint-2").mkdir(parents=True)
    (toy / "pre" / "checkpoint-2" / CHECKPOINT_COMPLETE_FILE).write_text("{}")
    with pytest.raises(FileNotFoundError, match="has not finished"):
        train_in_process(sft)
    assert not (toy / "sft").exists()
    shutil.rmtree(toy / "pre")

    train_in_process(pre)
    assert [p.name for _, p in list_checkpoints(pre.output_dir)] == ["checkpoint-4", "checkpoint-6"]  # pruned to 2
    summary = train_in_process(sft)
    assert summary["init_checkpoint"] == "../pre/checkpoint-6" and summary["init_step"] == 6  # from output_dir
    assert summary["init_run"] == "pre" and read_done(sft)["init_checkpoint"] == summary["init_checkpoint"]
    assert summary["attn_implementation"] == "sdpa"

    # Resume checkpoints pruned to the last two; snapshots at every 4th step and the last, never pruned.
    assert [p.name for _, p in list_checkpoints(sft.output_dir)] == ["checkpoint-4", "checkpoint-6"]
    snapshots = list_snapshots(sft.output_dir)
    assert [s for s, _ in snapshots] == [4, 6] and evaluation_checkpoints(sft.output_dir) == snapshots
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    last = snapshots[-1][1]
    assert not (last / "optimizer.pt").exists() and (last / "tokenizer_config.json").is_file()
    weights = load_file(last / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    trained = load_file(toy / "sft" / "checkpoint-6" / "model.safetensors")
    for key, value in weights.items():
        assert torch.equal(value, trained[key].to(torch.bfloat16)), key
    assert json.loads((last / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(last).dtype == torch.bfloat16
    assert AutoTokenizer.from_pretrained(last).eos_token == "<|im_end|>"
    resume_bytes = sum(f.stat().st_size for f in (toy / "sft" / "checkpoint-6").iterdir())
    assert resume_bytes > 5 * sum(f.stat().st_size for f in last.iterdir() if f.suffix == ".safetensors")

    if sft.training.report_to == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        events = EventAccumulator(str(toy / "sft" / "tensorboard"))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/tokens_per_second"} <= tags
        assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 7))


def test_report_to_reaches_transformers_integrations():
    from posttrain.trainer import build_sft_config
    stub = {"name": "x", "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": "/tmp/x",
            "model": {"name_or_path": "m", "init": "scratch"}, "data": {"source": "messages_jsonl"}}
    got = {}
    for tracker in ("none", "tensorboard", "trackio", "wandb"):
        run = RunParams.model_validate({**stub, "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 128,
                                                              "use_cpu": True, "bf16": False, "report_to": tracker}})
        got[tracker] = build_sft_config(run, {"max_steps": 2, "gradient_accumulation_steps": 1}).report_to
    # tensorboard goes through posttrain.trainer.tracking_callbacks (a fixed log dir), the others through transformers
    assert got == {"none": [], "tensorboard": [], "trackio": ["trackio"], "wandb": ["wandb"]}


def test_a_run_that_writes_snapshots_is_evaluated_on_snapshots_only(tmp_path):
    """Before its first snapshot a paper run has only resume checkpoints, which get pruned: nothing to evaluate yet."""
    import yaml
    run = tmp_path / "sft"
    (run / "checkpoint-250").mkdir(parents=True)
    (run / "checkpoint-250" / CHECKPOINT_COMPLETE_FILE).write_text("{}")
    assert [s for s, _ in evaluation_checkpoints(run)] == [250]  # a run without snapshots: its checkpoints
    (run / "params.resolved.yaml").write_text(yaml.safe_dump({"training": {"snapshot_steps": 5000}}))
    assert evaluation_checkpoints(run) == []
    (run / "snapshots" / "checkpoint-5000.partial").mkdir(parents=True)  # being written
    assert evaluation_checkpoints(run) == []
    (run / "snapshots" / "checkpoint-5000.partial").rename(run / "snapshots" / "checkpoint-5000")
    assert evaluation_checkpoints(run) == [(5000, run / "snapshots" / "checkpoint-5000")]
