"""Per-row packed batches (posttrain.collate): a packed row's logits equal each document's logits computed alone,
rows stay rows ([batch, length], attention linear in the batch), and TRL's SFTTrainer trains on them.

    OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_collate.py -x -q
"""
import pytest
import torch
from transformers import AutoModelForCausalLM

from posttrain.collate import (IGNORE_INDEX, PER_ROW_SFT_CONFIG, REAL_TOKENS, PerRowPackedCollator, pack_rows,
                               row_position_ids)
from posttrain.models import tiny_qwen2_config

VOCAB = 97


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = tiny_qwen2_config(VOCAB, hidden_size=64, layers=2, heads=2, kv_heads=1, intermediate=128, max_pos=256)
    cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(cfg).eval()


def documents(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in lengths]


def packed_rows(rows_of_docs):
    return [{"input_ids": sum(docs, []), "labels": sum(docs, []), "seq_lengths": [len(d) for d in docs]}
            for docs in rows_of_docs]


def test_position_ids_restart_per_document_and_padding_is_its_own():
    assert row_position_ids([3, 2], 7) == [0, 1, 2, 0, 1, 0, 1]
    assert row_position_ids([4], 4) == [0, 1, 2, 3]


def test_batch_is_per_row_with_labels_masked_at_boundaries_and_padding():
    docs = documents([5, 3, 6])
    batch = PerRowPackedCollator(pad_token_id=0)(packed_rows([[docs[0], docs[1]], [docs[2]]]))
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask: the mask comes from positions
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape == (2, 8)
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] + docs[0][1:] + [IGNORE_INDEX] + docs[1][1:]
    assert batch["labels"][1].tolist() == [IGNORE_INDEX] + docs[2][1:] + [IGNORE_INDEX] * 2
    assert batch["input_ids"][1, 6:].tolist() == [0, 0]
    fixed = PerRowPackedCollator(pad_token_id=0, pad_to=16)(packed_rows([[docs[0]]]))
    assert fixed["input_ids"].shape == (1, 16)
    counted = PerRowPackedCollator(pad_token_id=0, pad_to=16, count_tokens=True)(packed_rows([[docs[0], docs[1]],
                                                                                            [docs[2]]]))
    assert int(counted[REAL_TOKENS]) == 5 + 3 + 6  # the 2 × 16 positions less the padding


def test_collator_refuses_inconsistent_rows():
    with pytest.raises(ValueError, match="seq_lengths"):
        PerRowPackedCollator(0)([{"input_ids": [1, 2, 3], "seq_lengths": [2]}])
    with pytest.raises(ValueError, match="pad_to"):
        PerRowPackedCollator(0, pad_to=2)([{"input_ids": [1, 2, 3]}])


def test_packed_row_logits_equal_per_document_logits(model):
    docs = documents([7, 12, 4, 9, 15])
    rows = [[docs[0], docs[1], docs[2]], [docs[3]], [docs[4]]]
    batch = PerRowPackedCollator(pad_token_id=0)(packed_rows(rows))
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        for r, row in enumerate(rows):
            start = 0
            for doc in row:
                alone = model(input_ids=torch.tensor([doc]), use_cache=False).logits[0]
                torch.testing.assert_close(packed[r, start:start + len(doc)], alone, atol=1e-5, rtol=1e-4)
                start += len(doc)
        # Control: the same row with an all-ones attention mask lets documents see each other; the logits change.
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                      attention_mask=torch.ones_like(batch["input_ids"]), use_cache=False).logits
    assert not torch.allclose(leaky[0, 7:19], packed[0, 7:19], atol=1e-4)


def test_pack_rows_keeps_document_lengths():
    from datasets import Dataset

    docs = documents([30, 20, 25, 10, 40])
    ds = Dataset.from_dict({"input_ids": docs, "labels": docs, "extra": list(range(5))})
    packed = pack_rows(ds, 64, "bfd")
    assert sorted(n for row in packed["seq_lengths"] for n in row) == [10, 20, 25, 30, 40]
    rows = zip(packed["input_ids"], packed["seq_lengths"])
    assert all(len(ids) <= 64 and sum(lens) == len(ids) for ids, lens in rows)
    with pytest.raises(ValueError, match="labels"):
        pack_rows(ds.remove_columns(["labels"]), 64)


def test_sft_trainer_trains_on_per_row_batches(model, tmp_path):
    from datasets import Dataset
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers
    from trl import SFTConfig, SFTTrainer

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t1"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="t0", eos_token="t2")
    docs = documents([20, 35, 12, 40, 28, 17, 33, 25], seed=1)
    dataset = pack_rows(Dataset.from_dict({"input_ids": docs, "labels": docs}), 64, "bfd")
    shapes = []
    model.train()
    hook = model.register_forward_pre_hook(lambda m, a, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                           with_kwargs=True)
    config = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, learning_rate=1e-3,
                       max_length=64, report_to="none", use_cpu=True, save_strategy="no", logging_steps=1,
                       dataloader_num_workers=0, **PER_ROW_SFT_CONFIG)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         data_collator=PerRowPackedCollator(tokenizer.pad_token_id, pad_to=64))
    try:
        trainer.train()
    finally:
        hook.remove()
        model.eval()
    assert shapes and all(s == (2, 64) for s in shapes), shapes
    assert trainer.state.global_step == 2
