"""Training data: SFT chats (OpenMathReasoning, OpenCodeReasoning-II, local JSONL) and pre-training text (DCLM).

Hub datasets stream; a local file (DataParams.path) loads map-style, so the miniature and tests have a reproducible
order for resume. SFT rows are rendered with the prompts their datasets were built with (posttrain.prompts), then
tokenized here with a ChatML template carrying `{% generation %}` markers; examples longer than max_length are
dropped (never truncated: a cut reasoning trace teaches the model not to finish) and counted. Tests: tests/test_data.py.
"""
from __future__ import annotations

import glob
import logging
from collections import Counter
from pathlib import Path

import datasets
from datasets import Dataset, IterableDataset

from posttrain.ocr_join import join_questions, question_of
from posttrain.params import DataParams
from posttrain.prompts import code_sft_messages, math_sft_messages

log = logging.getLogger(__name__)

HUB_IDS = {"open_math_reasoning": "nvidia/OpenMathReasoning", "open_code_reasoning_2": "nvidia/OpenCodeReasoning-2",
           "dclm": "mlfoundations/dclm-baseline-1.0"}
DEFAULT_SPLITS = {"open_math_reasoning": "cot", "dclm": "train", "messages_jsonl": "train", "text_jsonl": "train"}
SFT_SOURCES = {"open_math_reasoning", "open_code_reasoning_2", "messages_jsonl"}
PRETRAIN_SOURCES = {"dclm", "text_jsonl"}
# OpenCodeReasoning-II leaves `question` as "-": its text is joined from the source dataset (posttrain.ocr_join); a
# row whose text could not be found keeps the placeholder and is skipped, counted.
OCR_MISSING_QUESTION = {"", "-"}
SHUFFLE_BUFFER = 10_000
ROLES = {"system", "user", "assistant"}

# Qwen2.5's ChatML, no default system turn, with generation markers around the assistant content *and* its
# <|im_end|>, so assistant-only loss trains the model to stop (open-r1 #603, TRL #2059).
CHATML_TEMPLATE_WITH_GENERATION = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
END_OF_TURN = "<|im_end|>"


def ensure_chat_template(tokenizer, set_eos: bool = True):
    """Install CHATML_TEMPLATE_WITH_GENERATION when the tokenizer's template lacks generation markers, and make
    <|im_end|> the eos token (Qwen base models otherwise never learn to stop). Returns the tokenizer."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in ("<|im_start|>", END_OF_TURN) if t not in vocab]
    if missing:
        raise ValueError(f"tokenizer lacks the ChatML special tokens {missing}; SFT needs <|im_start|> and <|im_end|> "
                         "in the vocabulary (train the miniature tokenizer with them as special tokens)")
    if "{% generation %}" not in (tokenizer.chat_template or ""):
        tokenizer.chat_template = CHATML_TEMPLATE_WITH_GENERATION
    if set_eos:
        tokenizer.eos_token = END_OF_TURN
    if tokenizer.pad_token is None:
        tokenizer.pad_token = "<|endoftext|>" if "<|endoftext|>" in vocab else tokenizer.eos_token
    return tokenizer


# ------------------------------------------------------------------------------------------------ raw loading


# Local data files by ending → the `datasets` builder that reads them. DCLM ships as .jsonl.zstd, read through the
# `zstandard` package; the hub datasets' own parquet shards can be given as they were downloaded.
LOCAL_FORMATS = {".jsonl": "json", ".jsonl.zst": "json", ".jsonl.zstd": "json", ".parquet": "parquet"}


def local_files(path: str, field: str = "data.path") -> tuple[str, list[str]]:
    """A file, a glob, or a directory (searched recursively: DCLM nests its shards two folders deep) →
    (builder, sorted files). One format per dataset."""
    p = Path(path)
    candidates = sorted(str(f) for f in p.rglob("*") if f.is_file()) if p.is_dir() else sorted(glob.glob(path))
    files = [f for f in candidates if any(f.endswith(end) for end in LOCAL_FORMATS)]
    if not files:
        raise FileNotFoundError(f"{field}: no data file ({', '.join(LOCAL_FORMATS)}) matches {path}")
    builders = {LOCAL_FORMATS[next(e for e in LOCAL_FORMATS if f.endswith(e))] for f in files}
    if len(builders) > 1:
        raise ValueError(f"{field}: {path} mixes JSONL and parquet files; give one format per dataset")
    return builders.pop(), files


def is_local(data: DataParams) -> bool:
    return data.path is not None and (Path(data.path).exists() or bool(glob.glob(data.path)))


def _load_raw(data: DataParams, split: str | None = None, streaming: bool | None = None) -> Dataset | IterableDataset:
    """Hub datasets stream (when data.streaming); local files load map-style for a reproducible order."""
    split = split or data.split or DEFAULT_SPLITS.get(data.source, "train")
    if is_local(data):
        builder, files = local_files(data.path)
        return datasets.load_dataset(builder, data_files=files, split="train")
    if data.source in ("messages_jsonl", "text_jsonl"):
        raise FileNotFoundError(f"data.path: {data.path!r} does not exist (source {data.source!r} reads local files)")
    streaming = data.streaming if streaming is None else streaming
    if data.path and data.path.startswith("hf://"):  # some of a hub dataset's files, e.g. DCLM shards by glob
        builder = next((b for end, b in LOCAL_FORMATS.items() if data.path.endswith(end)), "json")
        return datasets.load_dataset(builder, data_files=data.path, split="train", streaming=streaming)
    hub_id = data.path or HUB_IDS[data.source]
    return datasets.load_dataset(hub_id, data.subset, split=split, revision=data.revision, streaming=streaming)


def _limit_and_shuffle(ds: Dataset | IterableDataset, data: DataParams, shuffle: bool = True):
    if not shuffle and not data.max_examples:
        return ds
    if isinstance(ds, IterableDataset):
        ds = ds.shuffle(seed=data.seed, buffer_size=SHUFFLE_BUFFER)
        return ds.take(data.max_examples) if data.max_examples else ds
    ds = ds.shuffle(seed=data.seed)
    return ds.select(range(min(data.max_examples, len(ds)))) if data.max_examples else ds


def _require_str(row: dict, field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def _check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: messages[{i}] must be {{role: system|user|assistant, content: str}}, got {m!r}")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{where}: no assistant message (nothing to train on)")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _to_messages(source: str, language: str | None, questions: dict | None = None):
    """Row → {"messages", "skip"}; skip marks OCR-II rows whose question could not be joined (`questions`: the
    lookup from posttrain.ocr_join.join_questions; None: rows keep their own `question`)."""
    def convert(row: dict, idx: int) -> dict:
        where = f"{source}{'/' + language if language else ''} row {idx}"
        if source == "open_math_reasoning":
            problem = _require_str(row, "problem", where)
            solution = _require_str(row, "generated_solution", where)
            if not problem.strip() or not solution.strip():
                raise ValueError(f"{where}: empty 'problem' or 'generated_solution'")
            return {"messages": math_sft_messages(problem, solution), "skip": False}
        if source == "open_code_reasoning_2":
            question = _require_str(row, "question", where)
            if questions is not None:
                question = question_of(row, questions)[0]
            solution = _require_str(row, "r1_generation", where)
            if question.strip() in OCR_MISSING_QUESTION or not solution.strip():
                return {"messages": [], "skip": True}
            lang = row.get("language") or language or "python"
            return {"messages": code_sft_messages(question, solution, lang), "skip": False}
        return {"messages": _check_messages(row.get("messages"), where), "skip": False}
    return convert


def load_sft_messages(data: DataParams) -> Dataset | IterableDataset:
    """An SFT dataset with a `messages` column (plus `skip`: rows dropped later, with a count).

    OpenCodeReasoning-II on the hub has one split per language (data.languages, default python and cpp); a local file
    in its schema is one pass, with the language from a `language` column if present, else data.languages[0].
    Map-style OCR-II rows get their problem texts joined from the sources (posttrain.ocr_join); streamed ones
    cannot be joined and are skipped (counted): prepare them (posttrain.prepare)."""
    return load_sft_rows(data)[0]


def load_sft_rows(data: DataParams, num_proc: int | None = None, streaming: bool | None = None,
                  shuffle: bool = True) -> tuple[Dataset | IterableDataset, dict]:
    """load_sft_messages with `num_proc` processes and the hub's `streaming` overridden → (dataset, OCR-II join
    counts by status, {} for other sources). shuffle=False keeps the source's order (unless data.max_examples picks
    a random subset)."""
    if data.source not in SFT_SOURCES:
        raise ValueError(f"data.source {data.source!r} is not an SFT source ({sorted(SFT_SOURCES)})")
    languages = data.languages or ["python", "cpp"]
    splits = languages if data.source == "open_code_reasoning_2" and not is_local(data) else [None]
    parts, join_counts = [], Counter()
    for split in splits:
        ds = _load_raw(data, split=split, streaming=streaming)
        questions = None
        if data.source == "open_code_reasoning_2" and isinstance(ds, Dataset):
            questions, counts = join_questions(ds, data.join_sources)
            join_counts.update(counts["by_status"])
        elif data.source == "open_code_reasoning_2":
            log.warning("OpenCodeReasoning-II streamed: its questions cannot be joined, rows with question '-' are "
                        "skipped; prepare the data first (python -m posttrain.prepare)")
        language = split or (languages[0] if data.source == "open_code_reasoning_2" else None)
        kwargs = {"num_proc": num_proc} if isinstance(ds, Dataset) else {}
        ds = ds.map(_to_messages(data.source, language, questions), with_indices=True, remove_columns=ds.column_names,
                    **kwargs)
        parts.append(ds)
    if len(parts) == 1:
        ds = parts[0]
    elif isinstance(parts[0], IterableDataset):
        ds = datasets.interleave_datasets(parts, seed=data.seed, stopping_strategy="all_exhausted")
    else:
        ds = datasets.concatenate_datasets(parts)
    return _limit_and_shuffle(ds, data, shuffle), dict(join_counts)


def load_pretrain_text(data: DataParams, num_proc: int | None = None, streaming: bool | None = None,
                       shuffle: bool = True) -> Dataset | IterableDataset:
    """A pre-training dataset with a single `text` column (DCLM on the hub, or local files with a `text` field:
    JSONL, .jsonl.zst / .jsonl.zstd as DCLM ships, parquet). num_proc, streaming, shuffle: as in load_sft_rows."""
    if data.source not in PRETRAIN_SOURCES:
        raise ValueError(f"data.source {data.source!r} is not a pre-training source ({sorted(PRETRAIN_SOURCES)})")
    ds = _load_raw(data, streaming=streaming)

    def convert(row: dict, idx: int) -> dict:
        text = _require_str(row, "text", f"{data.source} row {idx}")
        return {"text": text}
    kwargs = {"num_proc": num_proc} if isinstance(ds, Dataset) else {}
    ds = ds.map(convert, with_indices=True, remove_columns=ds.column_names, **kwargs)
    return _limit_and_shuffle(ds, data, shuffle)


# ------------------------------------------------------------------------------------------------ tokenization


TOKEN_FEATURES = {"input_ids": datasets.List(datasets.Value("int32")), "labels": datasets.List(datasets.Value("int32"))}


class DropCounter:
    """Counts examples seen/kept/dropped while a (possibly streamed) dataset is tokenized and filtered."""

    def __init__(self, max_length: int):
        self.max_length = max_length
        self.seen = self.too_long = self.skipped = 0

    def keep(self, row: dict) -> bool:
        self.seen += 1
        if row["skip"]:
            self.skipped += 1
            return False
        if row["num_tokens"] > self.max_length:
            self.too_long += 1
            return False
        return True

    def as_dict(self) -> dict:
        return {"max_length": self.max_length, "examples_seen": self.seen, "dropped_too_long": self.too_long,
                "skipped_missing_question": self.skipped, "kept": self.seen - self.too_long - self.skipped}


def _tokenize_chat(tokenizer, assistant_only_loss: bool):
    def tokenize(row: dict) -> dict:
        if row["skip"]:
            return {"input_ids": [], "labels": [], "num_tokens": 0}
        enc = tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=assistant_only_loss)
        ids = list(enc["input_ids"])
        labels = ([t if m else -100 for t, m in zip(ids, enc["assistant_masks"])] if assistant_only_loss else ids)
        return {"input_ids": ids, "labels": labels, "num_tokens": len(ids)}
    return tokenize


def tokenize_sft(ds: Dataset | IterableDataset, tokenizer, max_length: int, assistant_only_loss: bool = True,
                 num_proc: int | None = None):
    """Tokenize `messages` with the tokenizer's chat template → input_ids/labels; drop examples longer than
    max_length. Returns (dataset, counter): for a map-style dataset the counts are final at return; for a streamed
    one they grow as training reads it. num_proc: tokenizing processes (map-style only)."""
    kwargs = {"num_proc": num_proc} if isinstance(ds, Dataset) else {}
    if "skip" not in (ds.column_names or ["skip"]):
        ds = ds.map(lambda row: {"skip": False}, **kwargs)
    if isinstance(ds, Dataset):  # token ids in int32: half the disk of int64 at paper scale
        kwargs["features"] = datasets.Features({**{c: ds.features[c] for c in ds.column_names if c != "messages"},
                                                **TOKEN_FEATURES, "num_tokens": datasets.Value("int64")})
    ds = ds.map(_tokenize_chat(tokenizer, assistant_only_loss), remove_columns=["messages"], **kwargs)
    counter = DropCounter(max_length)
    if isinstance(ds, Dataset):
        # Count from the columns (exact, before training) rather than through a filter callback.
        lengths, skip = ds["num_tokens"], ds["skip"]
        too_long = [n > max_length and not s for n, s in zip(lengths, skip)]
        counter.seen, counter.skipped, counter.too_long = len(ds), sum(skip), sum(too_long)
        # Keep the rows by index (no second pass through the rows, no second pool of processes).
        ds = ds.select([i for i, (n, s) in enumerate(zip(lengths, skip)) if not s and n <= max_length])
    else:
        ds = ds.filter(counter.keep)
    ds = ds.remove_columns(["skip", "num_tokens"])
    if counter.too_long or counter.skipped:
        log.warning("SFT data: dropped %d examples longer than %d tokens, skipped %d without question (of %d)",
                    counter.too_long, max_length, counter.skipped, counter.seen)
    return ds, counter


def tokenize_pretrain(ds: Dataset | IterableDataset, tokenizer, num_proc: int | None = None):
    """Tokenize `text` + eos → input_ids/labels (full-sequence loss); long documents are split by bfd_split packing,
    not dropped. num_proc: tokenizing processes (map-style only)."""
    eos = tokenizer.eos_token or ""

    def tokenize(row: dict) -> dict:
        ids = tokenizer(row["text"] + eos, add_special_tokens=False)["input_ids"]
        return {"input_ids": ids, "labels": ids}
    kwargs = {"num_proc": num_proc, "features": datasets.Features(TOKEN_FEATURES)} if isinstance(ds, Dataset) else {}
    return ds.map(tokenize, remove_columns=["text"], **kwargs)
