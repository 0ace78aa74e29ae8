"""posttrain.prepare: data prepared once (joined, tokenized, packed, saved with a manifest), training that reads it
map-style: the same micro-batches on every rank, and resume at step k that reads no earlier row.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_prepare.py -x -q   (CPU, no network, ~1 min)
"""
import json
from pathlib import Path

import datasets
import pytest

from fixtures.hub_schemas import write_dclm_fixture, write_ocr2_fixture
from posttrain import prepare
from posttrain.params import RunParams
from posttrain.prepare import PassPermutationSampler, is_prepared, load_prepared, prepare_run, run_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("prepare"), num_rows=120)


def run(setup: Path, name: str, data: dict, stage: str = "sft", **training) -> RunParams:
    return RunParams.model_validate({
        "name": name, "arm": "0%-Pre", "size": "mini", "domain": "code" if stage == "sft" else None,
        "output_dir": str(setup / name), "model": {"name_or_path": str(setup / "base"), "init": "scratch"},
        "data": {"prepared_dir": str(setup / "prepared"), **data},
        "training": {"stage": stage, "max_length": 64, "tokens_per_step": 256, "per_device_batch_size": 2,
                     "max_steps": 6, "warmup_steps": 1, "learning_rate": 3e-3, "save_steps": 2, "logging_steps": 1,
                     "use_cpu": True, "bf16": False, "gradient_checkpointing": False, "batching": "per_row",
                     "assistant_only_loss": stage == "sft", **training}})


def test_ocr2_prepared_with_join_counts_and_skipped_when_prepared(setup):
    fx = write_ocr2_fixture(setup / "ocr2")
    params = run(setup, "ocr", {"source": "open_code_reasoning_2", "path": fx["ocr2"], "languages": ["python"],
                                "join_sources": fx["join_sources"]}, max_length=512)
    manifest_path = prepare_run(params, num_proc=2)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["rows"] == {"seen": 13, "used": 12, "dropped": {"too_long": 0, "missing_question": 1}}
    assert manifest["join"] == {"joined": 12, "index_out_of_range": 1}
    assert manifest["source_ids"] == [fx["ocr2"]] and manifest["join_sources"]["apps"] == fx["join_sources"]["apps"]
    ds, loaded = load_prepared(params, run_tokenizer(params))
    assert len(ds) == manifest["packed_rows"] > 0 and set(ds.column_names) == {"input_ids", "labels", "seq_lengths"}
    assert sum(map(len, ds["input_ids"])) == manifest["tokens"] and sum(len(s) for s in ds["seq_lengths"]) == 12
    assert is_prepared(params)
    stamp = manifest_path.stat().st_mtime_ns
    assert prepare_run(params) == manifest_path and manifest_path.stat().st_mtime_ns == stamp  # same key: skipped
    text = run_tokenizer(params).decode([t for row in ds["input_ids"] for t in row])
    assert "Codeforces problem 1: given n, print n minus 1." in text and "CodeContests problem 2" in text


def test_no_usable_rows_refuses_naming_the_source_and_reasons(setup):
    fx = write_ocr2_fixture(setup / "ocr2_short")
    params = run(setup, "too_short", {"source": "open_code_reasoning_2", "path": fx["ocr2"], "languages": ["python"],
                                      "join_sources": fx["join_sources"]}, max_length=16)
    with pytest.raises(ValueError, match=r"open_code_reasoning_2 \(.*train.jsonl\): no usable rows — 13 seen, "
                                         r"dropped: 12 too_long, 1 missing_question"):
        prepare_run(params)
    assert not is_prepared(params)
    from posttrain.trainer import train_in_process
    with pytest.raises(ValueError, match="no usable rows"):
        train_in_process(params)
    unprepared = params.model_copy(update={"name": "unprepared", "output_dir": str(setup / "unprepared"),
                                           "data": params.data.model_copy(update={"prepared_dir": None})})
    with pytest.raises(ValueError, match=r"open_code_reasoning_2 \(.*\): no usable rows — 13 seen, dropped: 12 "
                                         r"longer than max_length 16, 1 without a question"):
        train_in_process(unprepared)  # the in-process (miniature) path refuses too


def test_dclm_zstd_prepared_for_pretraining(setup):
    texts = [f"reverse {i} " * (3 + i % 40) for i in range(30)]
    params = run(setup, "dclm", {"source": "dclm", "path": write_dclm_fixture(setup, texts)}, stage="pretrain")
    manifest = json.loads(prepare_run(params, num_proc=2).read_text())
    tok = run_tokenizer(params)
    want = sum(len(tok(t + tok.eos_token, add_special_tokens=False)["input_ids"]) for t in texts)
    assert manifest["rows"]["seen"] == 30 and manifest["tokens"] == manifest["trained_tokens"] == want
    ds, _ = load_prepared(params, tok)
    assert max(map(len, ds["input_ids"])) <= 64  # long documents split across rows, none dropped


def test_cli_prepares_a_run_params_file_and_training_refuses_hub_data_unprepared(setup, capsys):
    import yaml

    from posttrain.trainer import build_dataset
    params = run(setup, "cli", {"source": "messages_jsonl", "path": str(setup / "sft.jsonl"),
                                "prepared_dir": str(setup / "prepared_cli")})
    path = setup / "cli.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    prepare.main([str(path), "--num-proc", "1"])
    manifest = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert manifest.parent.parent == setup / "prepared_cli" and is_prepared(params)
    hub = params.model_copy(update={"data": params.data.model_copy(update={"source": "open_math_reasoning",
                                                                              "path": None, "prepared_dir": None})})
    with pytest.raises(ValueError, match="hub data .open_math_reasoning. is read only prepared"):
        build_dataset(hub, run_tokenizer(params))


def test_streamed_rows_are_stored_and_hub_text_streams_only_the_planned_tokens(setup):
    rows = datasets.Dataset.from_dict({"text": ["a", "b", "c"]})
    assert prepare._materialized(rows.to_iterable_dataset())["text"] == ["a", "b", "c"]
    params = run(setup, "hub_dclm", {"source": "dclm"}, stage="pretrain", max_steps=None, token_budget=1000)
    assert prepare.stream_budget(params) == 1000  # all of DCLM-Baseline (~4T tokens) is never downloaded
    tok = run_tokenizer(params)
    docs = [{"text": f"reverse {i} " * 20} for i in range(500)]
    per_doc = len(tok(docs[0]["text"] + tok.eos_token, add_special_tokens=False)["input_ids"])
    for sample in (2000, 3):  # every document counted, or estimated from the first 3
        taken = list(prepare._documents_for(iter(docs), tok, tokens=1000, sample=sample))
        assert len(taken) == -(-1020 // per_doc) and sum(per_doc for _ in taken) >= 1020
    assert prepare.stream_budget(run(setup, "local", {"source": "dclm", "path": str(setup)}, stage="pretrain")) is None


def test_two_ranks_get_the_same_micro_batches_every_step_and_every_row_once_per_pass():
    """7 packed rows, 2 ranks × 2 rows × 2 accumulation = 8 rows a step: Accelerate's own sharding of the sampler
    gives both ranks 2 micro-batches every step; each pass's rows are all seen once, the pass's tail wrapping into
    the next step instead of leaving one rank short."""
    import torch
    from accelerate.data_loader import prepare_data_loader

    rows, per_device, accumulation, world, steps = 7, 2, 2, 2, 5
    sampler = PassPermutationSampler(rows, per_device * accumulation * world, steps, seed=3, start_step=lambda: 0)
    per_rank = []
    for rank in range(world):
        loader = torch.utils.data.DataLoader(list(range(rows)), batch_size=per_device, sampler=sampler)
        shard = prepare_data_loader(loader, num_processes=world, process_index=rank, put_on_device=False)
        per_rank.append([b.tolist() for b in shard])
    assert [len(b) for b in per_rank] == [steps * accumulation] * world
    stream = [i for r in range(steps * accumulation) for rank in range(world) for i in per_rank[rank][r]]
    assert len(stream) == steps * 8
    for p in range(len(stream) // rows):
        assert sorted(stream[p * rows:(p + 1) * rows]) == list(range(rows))  # one pass = every row once


def test_resume_reads_no_earlier_row_and_its_cost_does_not_grow_with_the_step(setup, monkeypatch):
    """A run killed after checkpoint-2 and resumed reads exactly the rows of steps 3-6 (counted at the dataset),
    continues the uninterrupted run's loss curve, and the sampler computes one permutation whatever the step."""
    from posttrain.runs import read_loss_log
    from posttrain.trainer import train_in_process

    from transformers import TrainerCallback

    from posttrain import trainer

    class StopAfterStep2(TrainerCallback):  # as if killed right after checkpoint-2 was written
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 2

    data = {"source": "messages_jsonl", "path": str(setup / "sft.jsonl")}
    full, cut = run(setup, "full", data), run(setup, "cut", data)
    prepare_run(full)
    read: list[int] = []
    original = datasets.Dataset.__getitems__
    monkeypatch.setattr(datasets.Dataset, "__getitems__", lambda self, keys: read.extend(keys) or original(self, keys))
    train_in_process(full)
    order, read[:] = list(read), []
    rows_per_step = 2 * 2  # per_device 2 × accumulation (256 / 64 / 2) × 1 process
    assert len(order) == 6 * rows_per_step

    build = trainer.build_trainer
    with monkeypatch.context() as m:
        m.setattr(trainer, "build_trainer",
                  lambda p, s, extra_callbacks=(): build(p, s, extra_callbacks=(*extra_callbacks, StopAfterStep2())))
        train_in_process(cut)
    # Accelerate's loader fetches one micro-batch ahead: a stopped run has read at most that much past its step.
    assert read[:2 * rows_per_step] == order[:2 * rows_per_step] and len(read) <= 2 * rows_per_step + 2
    read[:] = []
    (Path(cut.output_dir) / "done.json").unlink()
    done = train_in_process(cut)
    assert done["global_step"] == 6 and done["data"]["packed_rows"] == 60  # resumed; the data it read recorded
    assert read == order[2 * rows_per_step:]  # steps 3-6 only
    want = {r["step"]: r["loss"] for r in read_loss_log(full.output_dir)}
    for r in read_loss_log(cut.output_dir):
        assert r["loss"] == pytest.approx(want[r["step"]], rel=1e-4), r["step"]

    calls = []
    monkeypatch.setattr(prepare, "pass_permutation", lambda *a: calls.append(a) or original_permutation(*a))
    for step in (3, 300_000):
        calls[:] = []
        sampler = PassPermutationSampler(1000, 64, 10**6, seed=0, start_step=lambda: step)
        first = next(iter(sampler))
        assert len(calls) == 1 and calls[0][2] == step * 64 // 1000
        assert first == original_permutation(1000, 0, step * 64 // 1000)[step * 64 % 1000]


original_permutation = prepare.pass_permutation


@pytest.mark.slow
def test_two_process_ddp_on_prepared_data_trains_like_one_process(setup):
    """Prepared rows that do not divide among 2 ranks, over more than one pass: the 2-process DDP run finishes (no
    rank runs dry or waits at a collective) with the one-process run's loss at every step."""
    from test_scaleout import assert_same_curve, run_job_logged, two_process_command

    from posttrain.runs import read_loss_log
    from posttrain.trainer import train_in_process

    lines = (setup / "sft.jsonl").read_text().splitlines(keepends=True)
    (setup / "sft_odd.jsonl").write_text("".join(lines[:118]))
    data = {"source": "messages_jsonl", "path": str(setup / "sft_odd.jsonl")}
    one = run(setup, "one_rank", data, max_steps=20, save_steps=20)
    two = RunParams.model_validate({**run(setup, "two_ranks", data, max_steps=20, save_steps=20).model_dump(),
                                    "launch": {"backend": "ddp", "gpus_per_machine": 2}})
    prepare_run(one)
    packed = len(load_prepared(one, run_tokenizer(one))[0])
    assert packed % 4 and 20 * 4 > packed  # uneven across 2 ranks × 2 rows, and past one pass
    train_in_process(one)
    run_job_logged(two_process_command(setup, two, "ddp"), setup / "two_ranks.log")
    assert_same_curve(read_loss_log(two.output_dir), read_loss_log(one.output_dir), 3, 1e-5, 1e-4)
