"""posttrain.training: token-denominated schedule, launch commands, a learning run, and SIGKILL + resume.

Run: .venv/bin/python -m pytest tests/test_training.py -x -q   (CPU, tiny models, ~60 s)
"""
import json
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from posttrain.params import REPO_ROOT, ParamsError, RunParams, load_run_params
from posttrain.runs import is_done, list_checkpoints, read_loss_log, resolve_schedule
from posttrain.trainer import train_in_process
from posttrain.training import launch_command, results_table, train_runs


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("train"), num_rows=400)


def train_params(setup, out: str, **training) -> dict:
    return {"name": out, "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": str(setup / out),
            "model": {"name_or_path": str(setup / "base"), "init": "scratch"},
            "data": {"source": "messages_jsonl", "path": str(setup / "sft.jsonl")},
            "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 512, "per_device_batch_size": 2,
                         "max_steps": 24, "warmup_steps": 2, "learning_rate": 3e-3, "save_steps": 4,
                         "logging_steps": 1, "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
                         **training}}


def test_schedule_from_tokens():
    p = RunParams.model_validate({**train_params_stub(), "training": {
        "stage": "sft", "max_length": 32768, "tokens_per_step": 2 * 1024 * 1024, "max_steps": None,
        "token_budget": 10 * 10**9}})
    s = resolve_schedule(p, num_processes=8)
    assert s["gradient_accumulation_steps"] == 8 and s["tokens_per_step"] == 2 * 1024 * 1024
    assert s["max_steps"] == 4769  # ceil(1e10 / 2^21)
    assert resolve_schedule(p, num_processes=64)["gradient_accumulation_steps"] == 1
    with pytest.raises(ValueError, match="training.tokens_per_step .* not a multiple"):
        resolve_schedule(p, num_processes=3)


def train_params_stub() -> dict:
    return {"name": "x", "arm": "0%-Pre", "size": "1.5B", "domain": "math", "output_dir": "o",
            "model": {"name_or_path": "Qwen/Qwen2.5-1.5B", "init": "scratch"}, "data": {"source": "messages_jsonl"}}


def test_launch_commands(tmp_path):
    local = RunParams.model_validate({**train_params_stub(), "training": {"stage": "sft"}})
    assert launch_command(local, "p.yaml") == [sys.executable, "-m", "posttrain.trainer", "--params", "p.yaml"]
    multi = RunParams.model_validate({**train_params_stub(), "training": {"stage": "sft"},
                                        "launch": {"backend": "fsdp2", "num_machines": 4, "gpus_per_machine": 8}})
    cmd = launch_command(multi, "p.yaml")
    assert cmd[:5] == [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                       str(REPO_ROOT / "configs/accelerate/fsdp2.yaml")]
    assert cmd[cmd.index("--num_processes") + 1] == "32" and cmd[cmd.index("--machine_rank") + 1] == "${MACHINE_RANK}"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**train_params_stub(), "training": {"stage": "sft", "learning_rat": 1e-4}}))
    with pytest.raises(ParamsError, match="training.learning_rat: unknown field"):
        load_run_params(bad)


def test_loss_falls_and_outputs_are_complete(setup):
    params = RunParams.model_validate(train_params(setup, "learn", max_steps=40, save_steps=20))
    summary = train_in_process(params)
    losses = [r["loss"] for r in read_loss_log(params.output_dir)]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert is_done(params) and summary["global_step"] == 40
    assert [p.name for _, p in list_checkpoints(params.output_dir)] == ["checkpoint-20", "checkpoint-40"]
    stats = json.loads((setup / "learn" / "data_stats.json").read_text())
    assert stats["examples_seen"] == 400 and stats["dropped_too_long"] == 0
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ckpt = setup / "learn" / "checkpoint-40"
    assert AutoTokenizer.from_pretrained(ckpt).eos_token == "<|im_end|>"
    assert AutoModelForCausalLM.from_pretrained(ckpt).config.eos_token_id == AutoTokenizer.from_pretrained(
        ckpt).eos_token_id
    assert train_in_process(params) == summary  # finished with the same params hash: skipped


def test_sigkill_and_resume_matches_uninterrupted_run(setup):
    reference = RunParams.model_validate(train_params(setup, "reference"))
    train_in_process(reference)
    expected = {r["step"]: r["loss"] for r in read_loss_log(reference.output_dir)}

    params_path = setup / "killed.yaml"
    params_path.write_text(yaml.safe_dump(train_params(setup, "killed")))
    out = setup / "killed"
    cmd = [sys.executable, "-m", "posttrain.trainer", "--params", str(params_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint-8" / "trainer_state.json").exists():
        assert proc.poll() is None and time.time() < deadline, "training exited or stalled before checkpoint-8"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "done.json").exists(), "the run finished before the kill: the test proved nothing"
    resumed_from = list_checkpoints(out)[-1][1].name
    assert int(resumed_from.split("-")[1]) < 24

    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = read_loss_log(out)
    assert [r["step"] for r in log] == list(range(1, 25))  # continuous, no duplicated steps
    for r in log:
        assert r["loss"] == pytest.approx(expected[r["step"]], rel=1e-3, abs=1e-4), r["step"]
    assert json.loads((out / "done.json").read_text())["global_step"] == 24


def test_per_row_batching_trains_like_padding_free_and_counts_real_tokens(setup):
    """training.batching per_row (rows kept as rows, transformers' loss on CPU) against the default padding_free
    (one flattened row, TRL's fused loss): the same packed rows in the same order, so the same curve and token count."""
    runs = {b: RunParams.model_validate(train_params(setup, f"batching-{b}", batching=b, max_steps=8, save_steps=8))
            for b in ("padding_free", "per_row")}
    summaries = {b: train_in_process(p) for b, p in runs.items()}
    logs = {b: read_loss_log(p.output_dir) for b, p in runs.items()}
    assert [r["step"] for r in logs["per_row"]] == list(range(1, 9))
    for flat, row in zip(logs["padding_free"], logs["per_row"]):
        assert row["loss"] == pytest.approx(flat["loss"], rel=1e-5), row["step"]
        assert row["tokens"] == flat["tokens"], row["step"]  # real tokens: the rows' padding is not counted
    assert summaries["per_row"]["tokens"] == summaries["padding_free"]["tokens"] < 8 * 512  # 512 = tokens_per_step


def test_per_row_batches_are_rows_with_assistant_only_labels_and_both_losses_agree(setup):
    import torch
    from posttrain.collate import IGNORE_INDEX, REAL_TOKENS
    from posttrain.trainer import build_trainer

    params = RunParams.model_validate(train_params(setup, "per-row-batch", batching="per_row"))
    trainer, _ = build_trainer(params, resolve_schedule(params))
    assert trainer.transformers_loss  # CPU
    batches = list(trainer.get_train_dataloader())
    tokenizer = trainer.processing_class
    real_tokens = counted = positions = 0
    for batch in batches:
        # rows of max_length: positions per step as resolve_schedule counts them (2 rows x 64, 4 micro-steps = 512)
        assert batch["input_ids"].shape == batch["labels"].shape == (2, 64) and "attention_mask" not in batch
        labelled = batch["labels"] != IGNORE_INDEX
        assert torch.equal(batch["labels"][labelled], batch["input_ids"][labelled])
        for ids, keep, pos in zip(batch["input_ids"], labelled, batch["position_ids"]):
            starts = (pos == 0).nonzero().flatten().tolist() + [len(ids)]
            for a, b in zip(starts, starts[1:]):  # one document (or the row's padding) each
                text = tokenizer.decode(ids[a:b])
                if not text.startswith("<|im_start|>user\nreverse "):  # the padding after the last document
                    assert not keep[a:b].any()
                    continue
                real_tokens += b - a
                # only the answer and its end-of-turn are labelled: "<|im_start|>assistant\n" digits "<|im_end|>"
                answer = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0] + "<|im_end|>"
                assert tokenizer.decode(ids[a:b][keep[a:b]]) == answer, text
        counted += int(batch[REAL_TOKENS])
        positions += batch["input_ids"].numel()
    assert counted == real_tokens < positions  # the token count leaves the padding out
    batch = batches[0]
    trainer.model.train()
    inputs = trainer._prepare_inputs(batch)
    with torch.no_grad():
        trainer.transformers_loss = False
        fused = trainer.compute_loss(trainer.model, inputs)
        trainer.transformers_loss = True
        plain = trainer.compute_loss(trainer.model, inputs)
    assert float(plain) == pytest.approx(float(fused), rel=1e-5)


def test_per_row_resumes_from_a_checkpoint_like_an_uninterrupted_run(setup):
    import shutil

    params = RunParams.model_validate(train_params(setup, "per-row-resume", batching="per_row", max_steps=12))
    full = train_in_process(params)
    expected = read_loss_log(params.output_dir)
    out = setup / "per-row-resume"
    for step, path in list_checkpoints(out):
        if step > 4:
            shutil.rmtree(path)
    (out / "done.json").unlink()
    resumed = train_in_process(params)
    log = read_loss_log(out)
    assert [r["step"] for r in log] == list(range(1, 13))
    for got, want in zip(log, expected):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5) and got["tokens"] == want["tokens"], got["step"]
    assert resumed["tokens"] == full["tokens"] and resumed["global_step"] == 12


def test_per_row_needs_packing():
    with pytest.raises(ValueError, match="batching 'per_row' .* needs training.packing true"):
        RunParams.model_validate({**train_params_stub(), "training": {"stage": "sft", "packing": False,
                                                                        "batching": "per_row"}})


def test_train_runs_shares_one_process_and_keeps_a_log_per_run(setup, capsys):
    runs = [RunParams.model_validate(train_params(setup, name, max_steps=4, save_steps=4)) for name in ("r1", "r2")]
    results = train_runs(runs)
    assert [r["status"] for r in results] == ["done", "done"] and all(is_done(p) for p in runs)
    assert [r["global_step"] for r in results] == [4, 4]
    for name, other in (("r1", "r2"), ("r2", "r1")):
        text = (setup / name / "train.log").read_text()
        assert f"run: {name}" in text and f"run: {other}" not in text and f'"name": "{name}"' in text
    out = capsys.readouterr().out
    assert out.count("--params") >= 3  # both commands printed, then the one shared process
    # The trainer's own output goes to the logs only: the caller sees a progress line, then a summary, per run.
    assert "'loss'" not in out and "run: r1" not in out and out.count("\n") <= 6, out
    for name in ("r1", "r2"):
        assert re.search(rf"\[{name}\] 4 steps, [\d,]+ tokens in 0:\d\d:\d\d \([\d,]+ tokens/s incl. start-up\), "
                         rf"final loss [\d.]+; log: .*{name}/train.log", out), out
    assert train_runs(runs) == results  # done with the same params hash: nothing retrained
    table = results_table(results)
    assert list(table.columns) == ["run", "status", "steps", "tokens", "train loss", "final checkpoint"]
    assert list(table["final checkpoint"]) == ["checkpoint-4", "checkpoint-4"] and list(table["steps"]) == [4, 4]


def test_train_runs_with_two_workers_trains_each_run_once_in_its_own_process(setup, capsys):
    runs = [RunParams.model_validate(train_params(setup, name, max_steps=s, save_steps=s))
            for name, s in (("w1", 6), ("w2", 2), ("w3", 3))]
    results = train_runs(runs, workers=2)
    assert [r["global_step"] for r in results] == [6, 2, 3] and all(is_done(p) for p in runs)
    out = capsys.readouterr().out
    assert out.count("[train_runs]") == 2 and "(1 thread(s))" in out, out
    # The longest run alone on one worker, the two shorter ones together on the other (planned tokens).
    assert re.search(r"1 run\(s\) in one process.*w1/params.yaml", out), out
    assert re.search(r"2 run\(s\) in one process.*w2/params.yaml.*w3/params.yaml", out), out
    for name in ("w1", "w2", "w3"):  # plain lines (no rewriting progress line): a start and a summary per run
        assert re.search(rf"\[{name}\] starting", out) and re.search(rf"\[{name}\] \d+ steps, ", out), out
        assert f"run: {name}" in (setup / name / "train.log").read_text()


def test_constant_lr_checkpoint_is_the_shorter_run(setup):
    """SFT scale from one run (params/mini.yaml): with a constant LR after warmup, the checkpoint a long run saves
    at step k (training.save_at) holds the weights a k-step run makes."""
    import torch
    from safetensors.torch import load_file

    recipe = dict(lr_scheduler="constant_with_warmup", batching="per_row", logging_steps=2)
    long = RunParams.model_validate(train_params(setup, "scale-long", max_steps=10, save_steps=10, save_at=[4],
                                                 **recipe))
    short = RunParams.model_validate(train_params(setup, "scale-short", max_steps=4, save_steps=4, **recipe))
    train_in_process(long), train_in_process(short)
    assert [s for s, _ in list_checkpoints(long.output_dir)] == [4, 10]
    a = load_file(setup / "scale-long" / "checkpoint-4" / "model.safetensors")
    b = load_file(setup / "scale-short" / "checkpoint-4" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(setup / "scale-long" / "checkpoint-10" / "model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_paper_params_are_valid_and_divide_into_their_world_size():
    files = sorted((REPO_ROOT / "params" / "paper").glob("*_*.yaml"))
    runs = [load_run_params(f) for f in files if f.name.startswith(("sft_", "pretrain_"))]
    assert len([r for r in runs if r.training.stage == "sft"]) == 24
    assert len([r for r in runs if r.training.stage == "pretrain"]) == 4
    for r in runs:
        s = resolve_schedule(r, r.launch.num_machines * r.launch.gpus_per_machine)
        assert s["tokens_per_step"] == 2 * 1024 * 1024, r.name
        if r.arm == "0.1%-Pre" and r.training.stage == "sft":
            assert r.model.checkpoint.endswith(f"pretrain/pretrain_{r.size.lower()}_short"), r.name


def test_loss_log_read_while_the_trainer_is_writing_its_last_line(tmp_path):
    (tmp_path / "loss.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo')
    assert read_loss_log(tmp_path) == [{"step": 1, "loss": 2.0}]


def test_share_out_balances_tokens_and_gives_one_long_run_every_core(monkeypatch):
    from types import SimpleNamespace

    from posttrain import training
    monkeypatch.setattr(training, "planned_schedule", lambda p: {"total_tokens": p.tokens})
    run = lambda name, tokens: (SimpleNamespace(name=name, tokens=tokens), f"{name}.yaml")  # noqa: E731
    names = lambda groups: [[p.name for p, _ in g] for g in groups]  # noqa: E731
    # the demo's SFT: three long math runs and three short code runs over two workers, runs keep their order
    sft = [run("m0", 24), run("m1", 24), run("m2", 24), run("c0", 6), run("c1", 6), run("c2", 6)]
    assert names(training.share_out(sft, 2)) == [["m0", "m2"], ["m1", "c0", "c1", "c2"]]
    # pre-training: one full run and a 5% one -- a second worker would idle after seconds; one process gets both
    # cores instead
    assert names(training.share_out([run("full", 100), run("short", 5)], 2)) == [["full", "short"]]
    assert names(training.share_out([run("a", 100), run("b", 60)], 2)) == [["a"], ["b"]]
    assert names(training.share_out(sft, 1)) == [["m0", "m1", "m2", "c0", "c1", "c2"]]
