"""Prepare once, train from prepared data: raw rows → joined → chat-rendered → tokenized → packed → saved.

    python -m posttrain.prepare PARAMS [--run-dir DIR] [--num-proc N]   # PARAMS: a run's or a study's params file

For every run whose `data.prepared_dir` is set: the hub dataset (downloaded whole; streamed in part with
data.max_examples, and hub pre-training text up to the run's planned tokens) or local parquet / JSONL /
.jsonl.zst files, OpenCodeReasoning-II's questions joined from their sources (posttrain.ocr_join), rendered and
tokenized as posttrain.data does for the miniature (N processes: `datasets.map(num_proc=N)`), packed into rows of
max_length with TRL's packer (one process: packing is cheap, and the same rows whatever N), and written with
`datasets`' save_to_disk (Arrow, memory-mapped when read) to `<prepared_dir>/<source>-<key>/` with `manifest.json`:
source ids and revisions, rows seen / used / dropped by reason, join counts, tokens, content hash. The key hashes
what decides the rows (data params, stage, max_length, loss mask, the tokenizer's content and chat template), so
runs that share data share one preparation (the four Qwen2.5 sizes share a tokenizer) and a finished one is skipped.

Training reads it map-style (load_prepared) in the order PassPermutationSampler gives: resume at step k is index
arithmetic, every rank gets the same number of micro-batches per step. Tests: tests/test_prepare.py.
Speed: benchmarks/prepare_data.py.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
import torch
from datasets import Dataset

from posttrain.collate import pack_rows
from posttrain.data import (HUB_IDS, ensure_chat_template, is_local, load_pretrain_text, load_sft_rows,
                            local_files, tokenize_pretrain, tokenize_sft)
from posttrain.models import build_tokenizer
from posttrain.ocr_join import HUB_SOURCES
from posttrain.params import ParamsError, RunParams, StudyParams, load_run_params, load_study

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the prepared layout or the rendering changes: every key changes with it
MANIFEST = "manifest.json"
DATA_DIR = "data"


# ------------------------------------------------------------------------------------------------ keys and paths


def run_tokenizer(params: RunParams):
    """The tokenizer the run trains with, as the trainer sets it up. Never read from the start checkpoint: a
    0.1%-Pre run is prepared before its pre-training exists (its tokenizer is the pre-training's, same content)."""
    tokenizer = build_tokenizer(params.model.model_copy(update={"init": "pretrained", "checkpoint": None})
                                if params.model.init == "checkpoint" else params.model)
    if params.training.stage == "sft":
        ensure_chat_template(tokenizer)
    elif tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {params.model.name_or_path} has no eos token (pre-training separates "
                         "documents with it)")
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's content (vocabulary, merges, special tokens, normalizer), chat template and eos: equal for
    tokenizers that tokenize alike, whatever their name or folder."""
    content = json.dumps([tokenizer.backend_tokenizer.to_str(), tokenizer.chat_template, tokenizer.eos_token])
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _file_sizes(pattern: str) -> list:
    if pattern.startswith("hf://") or not (Path(pattern).exists() or glob.glob(pattern)):
        return []
    p = Path(pattern)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else sorted(map(Path, glob.glob(pattern)))
    return [[f.name, f.stat().st_size] for f in files]


def prepared_key(params: RunParams, tokenizer) -> str:
    d, t = params.data, params.training
    data = d.model_dump(exclude={"prepared_dir", "streaming", "seed"})
    if d.max_examples:  # the seed picks which rows; otherwise it only orders them (PassPermutationSampler)
        data["seed"] = d.seed
    local = {"path": _file_sizes(d.path) if d.path else [],
             "join_sources": {k: _file_sizes(v.replace("{split}", "*")) for k, v in sorted(d.join_sources.items())}}
    what = {"format": FORMAT_VERSION, "data": data, "local_files": local, "stage": t.stage, "max_length": t.max_length,
            "assistant_only_loss": t.assistant_only_loss if t.stage == "sft" else False,
            "tokenizer": tokenizer_fingerprint(tokenizer), "stream_budget": stream_budget(params)}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def prepared_path(params: RunParams, tokenizer) -> Path:
    if params.data.prepared_dir is None:
        raise ValueError(f"{params.name}: data.prepared_dir is not set (where prepared data is written and read)")
    return Path(params.data.prepared_dir) / f"{params.data.source}-{prepared_key(params, tokenizer)}"


def read_manifest(path: Path) -> dict | None:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def is_prepared(params: RunParams, tokenizer=None) -> bool:
    """The run's data is prepared with the same key and has rows to train on (loads the tokenizer if not given)."""
    if params.data.prepared_dir is None:
        return False
    manifest = read_manifest(prepared_path(params, tokenizer or run_tokenizer(params)))
    return manifest is not None and manifest.get("packed_rows", 0) > 0


def no_rows_message(manifest: dict) -> str:
    dropped = ", ".join(f"{n} {why}" for why, n in manifest["rows"]["dropped"].items() if n) or "none dropped"
    join = f"; OCR-II join: {manifest['join']}" if manifest.get("join") else ""
    return (f"data source {manifest['source']} ({', '.join(manifest['source_ids'])}): no usable rows — "
            f"{manifest['rows']['seen']} seen, dropped: {dropped}{join}")


# ------------------------------------------------------------------------------------------------ preparing


def _source_ids(params: RunParams) -> tuple[list[str], str | None]:
    d = params.data
    if is_local(d):
        return local_files(d.path)[1], None
    hub_id = d.path or HUB_IDS[d.source]
    revision = d.revision
    if revision is None:
        try:  # the commit the download came from; None where the hub cannot be asked
            from huggingface_hub import HfApi
            revision = HfApi().dataset_info(hub_id).sha
        except Exception:  # noqa: BLE001 (offline, or an id the hub does not know: the load itself will say)
            revision = None
    return [hub_id], revision


def _content_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            digest.update(f.relative_to(folder).as_posix().encode())
            with f.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def _token_counts(packed: Dataset) -> tuple[int, int]:
    """(tokens, tokens with a loss) from the Arrow columns, without Python loops over tokens."""
    import pyarrow.compute as pc
    table = packed.data.table
    tokens = pc.sum(pc.list_value_length(table["input_ids"])).as_py() or 0
    labels = pc.list_flatten(table["labels"])
    return tokens, (pc.sum(pc.not_equal(labels, -100).cast("int64")).as_py() or 0)


def _materialized(ds) -> Dataset:
    """A streamed dataset's rows as a map-style one (read once, in this process)."""
    if isinstance(ds, Dataset):
        return ds
    return Dataset.from_generator(_rows_of, gen_kwargs={"ds": ds})


def _rows_of(ds):
    yield from ds


def stream_budget(params: RunParams) -> int | None:
    """Tokens of hub pre-training text to stream in, where the source is not prepared whole (all of DCLM-Baseline is
    ~4T tokens): the run's planned tokens. None where the data is read whole, or data.max_examples rows of it."""
    d, t = params.data, params.training
    if t.stage != "pretrain" or is_local(d) or d.max_examples is not None or "*" in (d.path or ""):
        return None
    return t.token_budget or t.max_steps * t.tokens_per_step


def _documents_for(ds, tokenizer, tokens: int, sample: int = 2000):
    """Documents from a stream until they hold `tokens` tokens and 2% more: counted exactly for the first `sample`
    documents, then estimated from characters × the tokens per character measured on those."""
    total = sample_tokens = sample_chars = 0
    for i, row in enumerate(ds):
        yield row
        chars = len(row["text"]) + 1
        if i < sample:
            n = len(tokenizer(row["text"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"])
            sample_tokens, sample_chars, total = sample_tokens + n, sample_chars + chars, total + n
        else:
            total += chars * sample_tokens / sample_chars
        if total >= tokens * 1.02:
            return


def _tokenized(params: RunParams, tokenizer, num_proc: int | None) -> tuple[Dataset, dict, dict]:
    """→ (tokenized rows, rows {seen, used, dropped: {reason: n}}, join counts). Hub data downloads whole, except
    with data.max_examples (that many rows stream in, shuffled in a buffer) and hub pre-training text without a
    path glob (documents stream in until they hold the run's planned tokens): only those rows are stored."""
    t, d = params.training, params.data
    budget = stream_budget(params)
    if budget is not None:
        ds = load_pretrain_text(d, streaming=True, shuffle=False)
        ds = Dataset.from_generator(_documents_for, gen_kwargs={"ds": ds, "tokenizer": tokenizer, "tokens": budget})
        rows = {"seen": len(ds), "used": len(ds), "dropped": {}}
        return tokenize_pretrain(ds, tokenizer, num_proc=num_proc), rows, {}
    stream = not is_local(d) and d.max_examples is not None
    if t.stage == "sft":
        ds, join = load_sft_rows(d, num_proc=None if stream else num_proc, streaming=stream, shuffle=stream)
        ds = _materialized(ds)
        tokenized, counter = tokenize_sft(ds, tokenizer, t.max_length, t.assistant_only_loss, num_proc=num_proc)
        c = counter.as_dict()
        rows = {"seen": c["examples_seen"], "used": c["kept"],
                "dropped": {"too_long": c["dropped_too_long"], "missing_question": c["skipped_missing_question"]}}
        return tokenized, rows, join
    ds = _materialized(load_pretrain_text(d, num_proc=None if stream else num_proc, streaming=stream, shuffle=stream))
    # Long documents are split across packed rows (bfd_split), none is dropped.
    return tokenize_pretrain(ds, tokenizer, num_proc=num_proc), {"seen": len(ds), "used": len(ds), "dropped": {}}, {}


def prepare_run(params: RunParams, num_proc: int | None = None, tokenizer=None) -> Path:
    """Prepare one run's data unless prepared with the same key; returns the manifest's path. Raises (after writing
    the manifest) when no row is usable, naming the source and the drop reasons."""
    tokenizer = tokenizer or run_tokenizer(params)
    out = prepared_path(params, tokenizer)
    manifest = read_manifest(out)
    if manifest is not None:
        if manifest["packed_rows"] == 0:
            raise ValueError(f"{params.name}: {no_rows_message(manifest)} ({out / MANIFEST})")
        log.info("%s: prepared already (%s)", params.name, out)
        return out / MANIFEST
    start = time.monotonic()
    source_ids, revision = _source_ids(params)
    tokenized, rows, join = _tokenized(params, tokenizer, num_proc)
    strategy = "bfd_split" if params.training.stage == "pretrain" else "bfd"
    features = datasets.Features({"input_ids": datasets.List(datasets.Value("int32")),
                                  "labels": datasets.List(datasets.Value("int32")),
                                  "seq_lengths": datasets.List(datasets.Value("int32"))})
    if len(tokenized):
        packed = pack_rows(tokenized.select_columns(["input_ids", "labels"]), params.training.max_length, strategy)
        if packed.features != features:  # tokenized in int32 already (posttrain.data): no second copy
            packed = packed.cast(features, num_proc=num_proc)
    else:  # nothing usable: the manifest still records why
        packed = Dataset.from_dict({name: [] for name in features}, features=features)
    tokens, trained = _token_counts(packed)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    packed.save_to_disk(str(partial / DATA_DIR), num_proc=num_proc)
    manifest = {
        "format": FORMAT_VERSION, "key": out.name.rsplit("-", 1)[1], "run": params.name, "source": params.data.source,
        "source_ids": source_ids, "revision": revision,
        "join_sources": ({d: params.data.join_sources.get(d, HUB_SOURCES[d]) for d in HUB_SOURCES}
                         if params.data.source == "open_code_reasoning_2" else {}),
        "stage": params.training.stage, "max_length": params.training.max_length, "packing": strategy,
        "tokenizer": params.model.tokenizer or params.model.name_or_path,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "rows": rows, "join": join, "tokens": tokens, "trained_tokens": trained, "packed_rows": len(packed),
        "content_sha256": _content_sha256(partial / DATA_DIR), "num_proc": num_proc,
        "seconds": round(time.monotonic() - start, 1)}
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)  # complete or absent: a killed preparation leaves only the .partial folder
    log.info("%s: prepared %d rows, %d packed rows of %d tokens (%s)", params.name, rows["used"], len(packed),
             params.training.max_length, out)
    if len(packed) == 0:
        raise ValueError(f"{params.name}: {no_rows_message(manifest)} ({out / MANIFEST})")
    return out / MANIFEST


def prepare_study(study: StudyParams, num_proc: int | None = None) -> list[Path]:
    """Prepare every dataset the study's runs read from prepared data (runs with data.prepared_dir); runs sharing
    data share one preparation. Returns the manifests' paths, one per such run."""
    return [prepare_run(run, num_proc) for run in study.pretrain + study.sft if run.data.prepared_dir is not None]


# ------------------------------------------------------------------------------------------------ reading


def load_prepared(params: RunParams, tokenizer) -> tuple[Dataset, dict]:
    """The run's prepared rows (memory-mapped) and manifest; refuses data that is missing or has no usable rows."""
    path = prepared_path(params, tokenizer)
    manifest = read_manifest(path)
    if manifest is None:
        raise FileNotFoundError(f"{params.name}: data not prepared at {path} (data.prepared_dir); run "
                                f"`python -m posttrain.prepare <this run's or study's params>` first")
    if manifest["packed_rows"] == 0:
        raise ValueError(f"{params.name}: {no_rows_message(manifest)} ({path / MANIFEST})")
    t = params.training
    planned = t.token_budget or (t.max_steps or 0) * t.tokens_per_step
    if planned > manifest["tokens"]:
        log.warning("%s: %d tokens planned, %d prepared: about %.1f passes over the data", params.name, planned,
                    manifest["tokens"], planned / max(1, manifest["tokens"]))
    return datasets.load_from_disk(str(path / DATA_DIR)), {**manifest, "path": str(path)}


class PreparedCounts:
    """A prepared dataset's manifest in a DropCounter's place: data_stats.json and the done marker record which
    prepared data a run read and its counts."""

    def __init__(self, manifest: dict):
        self.manifest = manifest

    def as_dict(self) -> dict:
        m = self.manifest
        return {"prepared": m["path"], "key": m["key"], "source_ids": m["source_ids"], "revision": m["revision"],
                "rows": m["rows"], "join": m["join"], "tokens": m["tokens"], "packed_rows": m["packed_rows"]}


def pass_permutation(num_rows: int, seed: int, pass_index: int) -> np.ndarray:
    return np.random.default_rng([seed, pass_index]).permutation(num_rows)


class PassPermutationSampler(torch.utils.data.Sampler):
    """Row indices for a whole run: pass p is a permutation of all rows seeded by (seed, p), and passes follow each
    other without a break. The remainder of a pass is wrapped, not dropped: the next pass's first rows fill the step,
    so every row trains once per pass, the run never runs dry, and every rank gets the same number of micro-batches
    (a step takes rows_per_step = per-device batch × accumulation × world size rows; Accelerate deals them out in
    turn). Iteration starts at row `start_step() * rows_per_step`: resuming at step k computes one permutation and
    reads no earlier row, whatever k."""

    def __init__(self, num_rows: int, rows_per_step: int, max_steps: int, seed: int, start_step: Callable[[], int]):
        if num_rows <= 0:
            raise ValueError("no rows to sample from")
        self.num_rows, self.rows_per_step, self.max_steps, self.seed = num_rows, rows_per_step, max_steps, seed
        self.start_step = start_step

    def __len__(self) -> int:
        return self.max_steps * self.rows_per_step

    def __iter__(self):
        position, end = self.start_step() * self.rows_per_step, len(self)
        while position < end:
            pass_index, offset = divmod(position, self.num_rows)
            take = min(self.num_rows - offset, end - position)
            yield from pass_permutation(self.num_rows, self.seed, pass_index)[offset:offset + take].tolist()
            position += take


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("params", help="a run params YAML or a study params YAML")
    parser.add_argument("--run-dir", default=None, help="substituted for {run_dir}")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count(), help="tokenizing processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        manifests = prepare_study(load_study(args.params, args.run_dir), args.num_proc)
    except ParamsError as study_error:
        try:
            manifests = [prepare_run(load_run_params(args.params, args.run_dir), args.num_proc)]
        except ParamsError as run_error:
            raise SystemExit(f"{args.params} is neither a study nor a run params file:\n{study_error}\n{run_error}")
    for manifest in manifests:
        print(manifest, flush=True)


if __name__ == "__main__":
    main()
