"""The v3 training options (issue 23; docs/miniature.md "v3"): warmup-stable-decay branches from a stable run's
checkpoint, weight decay reaching the (tied) embeddings, and re-initialised embeddings of tokens a pre-training
corpus never holds. Tiny models on the CPU (~30 s).

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_mini_v3_training.py -x -q
"""
import json

import pytest
import torch

from posttrain.mini.anneal import branch_steps, decay_branch
from posttrain.models import build_model, build_tokenizer, corpus_token_ids, reset_token_embeddings
from posttrain.params import EmbeddingReset, ModelParams, RunParams
from posttrain.runs import list_checkpoints, read_loss_log, resolve_schedule
from posttrain.trainer import build_trainer, train_in_process


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("v3train"), num_rows=300)


def run_params(setup, out: str, **training) -> RunParams:
    return RunParams.model_validate({
        "name": out, "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": str(setup / out),
        "model": {"name_or_path": str(setup / "base"), "init": "scratch"},
        "data": {"source": "messages_jsonl", "path": str(setup / "sft.jsonl")},
        "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 128, "per_device_batch_size": 2,
                     "warmup_steps": 2, "learning_rate": 3e-3, "logging_steps": 1, "use_cpu": True, "bf16": False,
                     "gradient_checkpointing": False, "batching": "per_row", **training}})


# ---------------------------------------------------------------------------------------------- WSD branches


def test_a_decay_branch_continues_the_stable_run_and_anneals_to_zero(setup):
    stable = run_params(setup, "stable", lr_scheduler="constant_with_warmup", max_steps=12, save_steps=12,
                        save_at=[6])
    branch = decay_branch(stable, 6, 4)
    assert (branch.training.max_steps, branch.training.decay_steps, branch.output_dir) == (
        10, 4, str(setup / "stable_decay6"))
    assert branch.training.branch_from == str(setup / "stable" / "checkpoint-6")
    with pytest.raises(ValueError, match="not a complete resume checkpoint"):
        train_in_process(branch)  # the stable run has not reached step 6 yet
    train_in_process(stable)
    train_in_process(branch)
    s, b = read_loss_log(stable.output_dir), read_loss_log(branch.output_dir)
    assert [r["step"] for r in b] == [7, 8, 9, 10]
    # the stable run stays at the peak; the branch's LR falls at every step (1-sqrt: the LR of update s + j is
    # peak * (1 - sqrt((j - 1) / d))), and the scheduler it saves at its end stands at 0
    peak = stable.training.learning_rate
    assert s[-1]["step"] == 12 and s[-1]["lr"] == pytest.approx(peak)
    assert [r["lr"] for r in b] == pytest.approx([peak * (1 - ((j - 1) / 4) ** 0.5) for j in (1, 2, 3, 4)])
    end = torch.load(setup / "stable_decay6" / "checkpoint-10" / "scheduler.pt", weights_only=False)
    assert set(end["_last_lr"]) == {0.0} and end["last_epoch"] == 10  # (one LR per parameter group)
    # step 7's loss is computed with the weights after step 6 on step 7's batch: equal iff the branch resumed the
    # stable run's weights and data position exactly
    assert b[0]["loss"] == pytest.approx(s[6]["loss"], rel=1e-5) and b[0]["tokens"] == s[6]["tokens"]
    assert [c for c, _ in list_checkpoints(branch.output_dir)] == [10]


def test_branch_params_are_checked():
    base = {"stage": "sft", "max_steps": 10, "warmup_steps": 2}
    with pytest.raises(ValueError, match="decay_steps goes with lr_scheduler 'warmup_stable_decay'"):
        RunParams.model_validate({**_stub(), "training": {**base, "decay_steps": 3}})
    with pytest.raises(ValueError, match="decay_steps goes with"):
        RunParams.model_validate({**_stub(), "training": {**base, "lr_scheduler": "warmup_stable_decay"}})
    with pytest.raises(ValueError, match="exceed max_steps"):
        RunParams.model_validate({**_stub(), "training": {**base, "lr_scheduler": "warmup_stable_decay",
                                                          "decay_steps": 9}})
    with pytest.raises(ValueError, match="branch_from .* needs lr_scheduler"):
        RunParams.model_validate({**_stub(), "training": {**base, "branch_from": "x/checkpoint-4"}})
    cosine = RunParams.model_validate({**_stub(), "training": {**base, "save_at": [5]}})
    with pytest.raises(ValueError, match="needs a stable run"):
        decay_branch(cosine, 5, 2)
    stable = cosine.model_copy(update={"training": cosine.training.model_copy(
        update={"lr_scheduler": "constant_with_warmup"})})
    with pytest.raises(ValueError, match="saves no checkpoint at step 4"):
        decay_branch(stable, 4, 2)
    assert branch_steps([150, 600, 2400], 0.2) == [(120, 30), (480, 120), (1920, 480)]


def _stub() -> dict:
    return {"name": "x", "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": "/tmp/x",
            "model": {"name_or_path": "m", "init": "scratch"}, "data": {"source": "messages_jsonl", "path": "d"}}


def test_weight_decay_reaches_the_tied_embeddings(setup):
    params = run_params(setup, "wd", max_steps=2, save_steps=2, weight_decay=0.1)
    trainer, _ = build_trainer(params, resolve_schedule(params))
    trainer.create_optimizer()
    emb = trainer.model.get_input_embeddings().weight
    group = next(g for g in trainer.optimizer.param_groups if any(p is emb for p in g["params"]))
    assert group["weight_decay"] == 0.1 and trainer.model.get_output_embeddings().weight is emb


# ---------------------------------------------------------------------------------------------- embedding reset


@pytest.fixture(scope="module")
def pretrained(setup):
    """A 'pre-trained' checkpoint (the scratch init, saved) and a corpus that holds only some tokens."""
    model = build_model(ModelParams(name_or_path=str(setup / "base"), init="scratch", dtype="float32",
                                    init_seed=3))
    tok = build_tokenizer(ModelParams(name_or_path=str(setup / "base"), init="scratch"))
    ckpt = setup / "pre"
    model.save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    corpus = setup / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["reverse 12", "reverse 345"]))
    return ckpt, corpus, tok


def test_reset_redraws_exactly_the_tokens_the_corpus_never_holds(pretrained):
    ckpt, corpus, tok = pretrained
    seen = corpus_token_ids(tok, corpus)
    assert tok.eos_token_id in seen and set(tok("reverse 12", add_special_tokens=False)["input_ids"]) <= seen
    params = ModelParams(name_or_path=str(ckpt), init="checkpoint", checkpoint=str(ckpt), dtype="float32")
    before = build_model(params).get_input_embeddings().weight.detach().clone()
    model = build_model(params)
    ids = reset_token_embeddings(model, tok, EmbeddingReset(tokens="unseen", corpus=str(corpus), seed=1))
    after = model.get_input_embeddings().weight.detach()
    assert set(ids) == set(range(len(tok))) - seen and len(ids) > len(seen)
    changed = {i for i in range(len(tok)) if not torch.equal(before[i], after[i])}
    assert changed == set(ids)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied: lm_head follows
    assert 0.015 < after[ids].std().item() < 0.025  # the scratch init's N(0, 0.02)
    full = build_model(params)
    reset_token_embeddings(full, tok, EmbeddingReset(tokens="all", seed=1))
    assert torch.equal(full.get_input_embeddings().weight[ids], after[ids])  # a row's value: its id and the seed


def test_reset_is_applied_before_sft_and_checked_in_params(setup, pretrained):
    ckpt, corpus, tok = pretrained
    params = run_params(setup, "reset", max_steps=2, save_steps=2).model_dump()
    params["model"] = {"name_or_path": str(ckpt), "init": "checkpoint", "checkpoint": str(ckpt),
                       "reset_embeddings": {"tokens": "unseen", "corpus": str(corpus)}}
    run = RunParams.model_validate(params)
    assert run.model.model_dump()["reset_embeddings"]["corpus"] == str(corpus)  # in the params hash when set
    trainer, _ = build_trainer(run, resolve_schedule(run))
    unseen = sorted(set(range(len(tok))) - corpus_token_ids(tok, corpus))
    original = build_model(ModelParams(name_or_path=str(ckpt), init="checkpoint", checkpoint=str(ckpt),
                                       dtype="float32")).get_input_embeddings().weight
    emb = trainer.model.get_input_embeddings().weight
    assert not torch.equal(emb[unseen], original[unseen])
    seen = sorted(corpus_token_ids(tok, corpus))
    assert torch.equal(emb[seen], original[seen])
    with pytest.raises(ValueError, match="reset_embeddings.corpus is required"):
        EmbeddingReset(tokens="unseen")
    with pytest.raises(ValueError, match="reset_embeddings is for a pre-trained model"):
        ModelParams(name_or_path="m", init="scratch", reset_embeddings={"tokens": "all"})
    assert "reset_embeddings" not in ModelParams(name_or_path="m", init="scratch").model_dump()
