"""OpenCodeReasoning-II's problem texts, joined from the datasets they came from.

Every OCR-II row has `question == "-"`: the text lives in its source, found by the row's `dataset` (taco, apps,
code_contests, open-r1/codeforces), `split` and `index` (the row's position in that split). NVIDIA's own preparation
(NeMo-Skills, recipes/opencodereasoning) joins them the same way; the text is built from the fields the solutions were
generated from: TACO and APPS `question`, CodeContests `description`, Codeforces `description` with its input/output
formats, examples and note under plain headings.

Sources load from local copies (data.join_sources: a file pattern holding `{split}`, as the hub lays the files out)
or the hub (HUB_SOURCES). Only the splits and columns OCR-II points at are read. Tests: tests/test_ocr_join.py.
"""
from __future__ import annotations

import glob
from collections import Counter

import datasets
from datasets import Dataset

PLACEHOLDER = "-"
# Where each source's split lives on the hub, in the layout `hf://` patterns read without loading scripts (TACO
# and APPS ship scripts that datasets >= 4 no longer runs; their data files read directly).
HUB_SOURCES = {
    "taco": "hf://datasets/BAAI/TACO/ALL/{split}-*.parquet",
    "apps": "hf://datasets/codeparrot/apps/{split}.jsonl",
    "code_contests": "hf://datasets/deepmind/code_contests/data/{split}-*.parquet",
    "open-r1/codeforces": "hf://datasets/open-r1/codeforces/data/{split}-*.parquet",
}
SOURCE_COLUMNS = {
    "taco": ["question"], "apps": ["question"], "code_contests": ["description"],
    "open-r1/codeforces": ["description", "input_format", "output_format", "examples", "note"],
}
# join_status values besides "given" / "joined": why a row's text could not be found (the row is then dropped).
UNKNOWN_DATASET, INDEX_OUT_OF_RANGE, EMPTY_IN_SOURCE = "unknown_dataset", "index_out_of_range", "empty_in_source"


def problem_text(dataset: str, row: dict) -> str | None:
    """A source row → the problem statement as OCR-II's generations saw it; None when the source has no text."""
    if dataset in ("taco", "apps"):
        return row.get("question") or None
    if not row.get("description"):
        return None
    if dataset == "code_contests":
        return row["description"]
    parts = [row["description"]]
    for heading, field in (("Input", "input_format"), ("Output", "output_format")):
        if row.get(field):
            parts += [heading, row[field]]
    if row.get("examples"):
        parts.append("Examples")
        for example in row["examples"]:
            parts += [x for key, heading in (("input", "Input"), ("output", "Output")) if key in example
                      for x in (heading, example[key])]
    if row.get("note"):
        parts += ["Note", row["note"]]
    return "\n\n".join(parts)


def source_pattern(dataset: str, split: str, join_sources: dict[str, str]) -> str:
    pattern = join_sources.get(dataset, HUB_SOURCES[dataset])
    if "{split}" not in pattern:
        raise ValueError(f"data.join_sources.{dataset}: {pattern!r} must hold '{{split}}' (OCR-II names a split of "
                         f"each source), e.g. '/data/{dataset}/{{split}}-*.parquet'")
    return pattern.format(split=split)


def load_source_split(dataset: str, split: str, join_sources: dict[str, str]) -> Dataset:
    """One split of a source, rows in their published order (sorted shards), only the columns the text needs."""
    pattern = source_pattern(dataset, split, join_sources)
    if pattern.startswith("hf://"):
        files = [pattern]
    else:
        files = sorted(glob.glob(pattern))
        if not files:
            raise FileNotFoundError(f"data.join_sources.{dataset}: no file matches {pattern} (split {split!r})")
    builder = "parquet" if pattern.endswith(".parquet") else "json"
    kwargs = {"columns": SOURCE_COLUMNS[dataset]} if builder == "parquet" else {}
    try:
        ds = datasets.load_dataset(builder, data_files=files, split="train", **kwargs)
    except Exception as e:  # the hub unreachable, a file unreadable: say which source and how to give it
        raise RuntimeError(f"OpenCodeReasoning-II join: cannot load {dataset} split {split!r} from {pattern} "
                           f"({type(e).__name__}: {e}); give a local copy in data.join_sources.{dataset}") from e
    return ds.select_columns([c for c in SOURCE_COLUMNS[dataset] if c in ds.column_names])


def question_lookup(keys: set[tuple[str, str, int]], join_sources: dict[str, str]) -> dict[tuple, tuple[str, str]]:
    """{(dataset, split, index): ("joined", text) or (why not, "")} for every key of a known source."""
    found: dict[tuple, tuple[str, str]] = {}
    by_split: dict[tuple[str, str], set[int]] = {}
    for dataset, split, index in keys:
        if dataset in HUB_SOURCES:
            by_split.setdefault((dataset, split), set()).add(index)
    for (dataset, split), indices in sorted(by_split.items()):
        source = load_source_split(dataset, split, join_sources)
        wanted = sorted(i for i in indices if 0 <= i < len(source))
        found.update({(dataset, split, i): (INDEX_OUT_OF_RANGE, "") for i in indices.difference(wanted)})
        for index, row in zip(wanted, source.select(wanted)):
            text = problem_text(dataset, row)
            found[(dataset, split, index)] = ("joined", text) if text else (EMPTY_IN_SOURCE, "")
    return found


def _key(row: dict) -> tuple[str, str, int] | None:
    try:
        return row["dataset"], row["split"], int(row["index"])
    except (KeyError, TypeError, ValueError):
        return None


def join_questions(ocr: Dataset, join_sources: dict[str, str]) -> tuple[dict, dict]:
    """The problem texts OCR-II's placeholder rows point at → (lookup for `question_of`, counts of rows by status
    ("given": the row had its text, "joined", or why not) and by status and source dataset). Reads only the four key
    columns: the rows themselves are rewritten once, later, when they become chats (posttrain.data)."""
    for column in ("question", "dataset", "split", "index"):
        if column not in ocr.column_names:
            raise ValueError(f"open_code_reasoning_2: no column {column!r} (columns: {ocr.column_names}); the join "
                             "needs OCR-II's question/dataset/split/index")
    columns = ocr.select_columns(["question", "dataset", "split", "index"])
    keys = {k for row in _rows(columns) if str(row["question"]).strip() == PLACEHOLDER and (k := _key(row)) is not None}
    lookup = question_lookup(keys, join_sources)
    by_source = Counter((question_of(row, lookup)[1], row["dataset"]) for row in _rows(columns))
    by_status = Counter()
    for (status, _), n in by_source.items():
        by_status[status] += n
    return lookup, {"by_status": dict(by_status),
                    "by_source": {f"{status} {dataset}": n for (status, dataset), n in sorted(by_source.items())}}


def _rows(columns: Dataset):
    """Rows of a few short columns, read in large batches (millions of rows, without holding them all)."""
    for batch in columns.iter(batch_size=100_000):
        yield from (dict(zip(batch, values)) for values in zip(*batch.values()))


def question_of(row: dict, lookup: dict) -> tuple[str, str]:
    """(the row's problem text, its join status); the text stays the placeholder when the join failed."""
    if str(row["question"]).strip() != PLACEHOLDER:
        return row["question"], "given"
    status, text = lookup.get(_key(row), (UNKNOWN_DATASET, ""))
    return (text, status) if status == "joined" else (row["question"], status)
