"""posttrain.data (SFT and pre-training data only): hub-schema rows → chat messages, validation errors naming the
row, the ChatML template with generation markers, dropping/counting over-long examples, DCLM-style text.

Run: .venv/bin/python -m pytest tests/test_data.py -x -q   (CPU, no network, ~10 s)
"""
import json
import pathlib

import pytest

from posttrain.data import (CHATML_TEMPLATE_WITH_GENERATION, ensure_chat_template, load_pretrain_text,
                            load_sft_messages, tokenize_pretrain, tokenize_sft)
from posttrain.models import train_chatml_tokenizer
from posttrain.params import REPO_ROOT, DataParams
from posttrain.prompts import OMR_MATH_PROMPT

DCLM_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "dclm_sample"


@pytest.fixture(scope="module")
def tok():
    return ensure_chat_template(train_chatml_tokenizer(["Solve the following math problem 0123456789 <think>"] * 20,
                                                       vocab_size=300))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_open_math_reasoning_rows_use_the_dataset_prompt(tmp_path):
    rows = [{"problem": f"What is {i}+1?", "generated_solution": f"<think>easy</think> \\boxed{{{i + 1}}}",
             "expected_answer": str(i + 1), "problem_source": "x"} for i in range(5)]
    ds = load_sft_messages(DataParams(source="open_math_reasoning", path=write_jsonl(tmp_path / "omr.jsonl", rows)))
    assert len(ds) == 5
    users = sorted(r["messages"][0]["content"] for r in ds)
    assert users[0] == OMR_MATH_PROMPT.format(problem="What is 0+1?")
    assert all(r["messages"][1]["role"] == "assistant" for r in ds)


def test_open_code_reasoning_joins_questions_and_skips_rows_it_cannot_join(tmp_path, tok):
    import datasets
    from fixtures.hub_schemas import taco_row
    datasets.Dataset.from_list([taco_row(0)]).to_parquet(str(tmp_path / "train-00000-of-00001.parquet"))
    rows = [{"question": "-", "r1_generation": "<think>x</think>\n```cpp\nint main(){}\n```", "solution": "",
             "dataset": "taco", "split": "train", "index": "0"},
            {"question": "-", "r1_generation": "<think>y</think>", "solution": "", "dataset": "taco",
             "split": "train", "index": "2"}]
    data = DataParams(source="open_code_reasoning_2", path=write_jsonl(tmp_path / "ocr.jsonl", rows),
                      languages=["cpp"], join_sources={"taco": str(tmp_path / "{split}-*.parquet")})
    ds = load_sft_messages(data)
    kept = [r for r in ds if not r["skip"]]
    assert len(kept) == 1 and "Please use C++ programming language only." in kept[0]["messages"][0]["content"]
    assert taco_row(0)["question"] in kept[0]["messages"][0]["content"]
    out, counter = tokenize_sft(ds, tok, max_length=4096)
    assert len(out) == 1 and counter.as_dict()["skipped_missing_question"] == 1


def test_dclm_zstd_shards_read_from_their_folders(tmp_path, tok):
    """DCLM-Baseline ships .jsonl.zstd shards two folders deep; .jsonl.zst is the other spelling."""
    from fixtures.hub_schemas import write_dclm_fixture
    texts = [f"document number {i} " * (i + 1) for i in range(7)]
    root = write_dclm_fixture(tmp_path, texts)
    ds = load_pretrain_text(DataParams(source="dclm", path=root, streaming=False))
    assert sorted(ds["text"]) == sorted(texts)
    zst = tmp_path / "one.jsonl.zst"
    (pathlib.Path(root) / "global-shard_01_of_10/local-shard_0_of_10/shard_00000000_processed.jsonl.zstd").rename(zst)
    assert len(load_pretrain_text(DataParams(source="dclm", path=str(zst)))) == 4
    out = tokenize_pretrain(ds, tok)
    assert out[0]["input_ids"][-1] == tok.eos_token_id


def test_malformed_rows_raise_naming_the_row(tmp_path):
    rows = [{"problem": "ok", "generated_solution": "fine"}, {"problem": None, "generated_solution": "x"}]
    with pytest.raises(ValueError, match="open_math_reasoning row 1: field 'problem'"):
        load_sft_messages(DataParams(source="open_math_reasoning", path=write_jsonl(tmp_path / "a.jsonl", rows)))
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            {"messages": [{"role": "user", "content": "only a question"}]}]
    with pytest.raises(ValueError, match="messages_jsonl row 1: no assistant message"):
        load_sft_messages(DataParams(source="messages_jsonl", path=write_jsonl(tmp_path / "b.jsonl", rows)))
    with pytest.raises(FileNotFoundError, match="data.path"):
        load_sft_messages(DataParams(source="messages_jsonl", path=str(tmp_path / "missing.jsonl")))
    with pytest.raises(ValueError, match="not an SFT source"):
        load_sft_messages(DataParams(source="dclm"))


def test_chat_template_trains_the_end_of_turn(tok):
    assert tok.chat_template == CHATML_TEMPLATE_WITH_GENERATION and tok.eos_token == "<|im_end|>"
    msgs = [{"role": "user", "content": "1+1"}, {"role": "assistant", "content": "2"}]
    enc = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    trained = tok.decode([t for t, m in zip(enc["input_ids"], enc["assistant_masks"]) if m])
    assert trained == "2<|im_end|>"
    assert tok.decode(enc["input_ids"]) == "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
    prompt = tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_ensure_chat_template_requires_chatml_tokens():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel()
    raw.train_from_iterator(["plain text"] * 5, trainers.BpeTrainer(vocab_size=50, special_tokens=["</s>"]))
    with pytest.raises(ValueError, match="ChatML special tokens"):
        ensure_chat_template(PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>"))


@pytest.mark.parametrize("streamed", [False, True])
def test_long_examples_are_dropped_and_counted(tmp_path, tok, streamed):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "7 " * n}]}
            for n in (1, 2, 200, 3, 500)]
    ds = load_sft_messages(DataParams(source="messages_jsonl", path=write_jsonl(tmp_path / "m.jsonl", rows)))
    if streamed:
        ds = ds.to_iterable_dataset()
    out, counter = tokenize_sft(ds, tok, max_length=64)
    kept = list(out)
    assert len(kept) == 3 and all(len(r["input_ids"]) <= 64 for r in kept)
    assert counter.as_dict() == {"max_length": 64, "examples_seen": 5, "dropped_too_long": 2,
                                 "skipped_missing_question": 0, "kept": 3}
    labels = kept[0]["labels"]
    assert labels[0] == -100 and labels[-2] == tok.convert_tokens_to_ids("<|im_end|>")  # last token is "\n"
    assert labels[-1] == -100


def test_pretrain_text_from_dclm_sample(tok):
    data = DataParams(source="text_jsonl", path=str(DCLM_SAMPLE / "agreement_data.jsonl"), max_examples=20)
    ds = load_pretrain_text(data)
    assert ds.column_names == ["text"] and len(ds) == 20
    out = tokenize_pretrain(ds, tok)
    row = out[0]
    assert row["input_ids"] == row["labels"] and row["input_ids"][-1] == tok.eos_token_id
    assert len(load_pretrain_text(DataParams(source="text_jsonl", path=str(DCLM_SAMPLE)))) == 281 + 499
    with pytest.raises(ValueError, match="not a pre-training source"):
        load_pretrain_text(DataParams(source="messages_jsonl", path=str(DCLM_SAMPLE)))
