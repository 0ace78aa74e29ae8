"""What evaluation writes and the report reads: the generation record, its JSONL files, and results.csv's columns.

One record per (model, checkpoint, benchmark, problem): the prompt, the n sampled responses and, once graded, one
verdict per response. The records of one benchmark live in `eval/<model>/<checkpoint>/<benchmark>.jsonl` under the
run dir (`records_path`); each results.csv row names its file in the `records` column (relative to the run dir), so
the report never guesses. `path` names the model weights that were evaluated, with the run dir and the
repository written as `{run_dir}` / `{repo}` (`posttrain.params.portable`): no machine path in the table.

Every JSONL file of the package (benchmark rows, generation shards, records) is read by `read_jsonl` and written by
`write_jsonl`.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import get_args

from posttrain.params import Arm

log = logging.getLogger(__name__)

# The arms in the paper's row order; the report sorts and colours by it.
ARM_ORDER: list[str] = list(get_args(Arm))

RESULT_COLUMNS = ["model", "arm", "size", "train_domain", "step", "benchmark", "domain", "n", "num_problems",
                  "num_ungradable", "pass@1", "pass@1_lo", "pass@1_hi", "pass@5", "pass@5_lo", "pass@5_hi",
                  "truncation_rate", "path", "grader", "records"]
RECORDS_DIR = "eval"  # under the run dir


# ----------------------------------------------------------------------------------------------- JSONL


def read_jsonl(path: str | Path, *, skip_unreadable: bool = False) -> list[dict]:
    """The JSON objects of a JSONL file, one per non-blank line.

    A line that is not valid JSON raises ValueError naming path:line, unless skip_unreadable: then it is dropped with
    a warning (a file appended to by a process that was killed mid-line ends in such a line).
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if not skip_unreadable:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({e})") from None
                log.warning("%s:%d: unreadable line dropped (interrupted write?)", path, line_no)
    return rows


def write_jsonl(path: str | Path, rows) -> None:
    """Write rows (dicts) as JSONL atomically: a kill leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------- records


@dataclass
class Record:
    """One problem's samples on one checkpoint. `correct`/`statuses` are None until graded; `grader` names what
    graded them ("math", "code:lcb", "code:strict"), so records graded another way are graded again."""
    problem_id: str
    benchmark: str
    prompt: str
    responses: list[str]
    finish_reasons: list[str]
    num_tokens: list[int]
    params_hash: str
    correct: list[bool] | None = None
    statuses: list[str] | None = None
    grader: str | None = None

    @property
    def graded(self) -> bool:
        return self.correct is not None

    @classmethod
    def from_dict(cls, row: dict, where: str = "record") -> Record:
        names = {f.name for f in fields(cls)}
        required = [f.name for f in fields(cls) if f.name not in ("correct", "statuses", "grader")]
        missing = [n for n in required if n not in row]
        if missing:
            raise ValueError(f"{where}: record lacks field(s) {missing}")
        rec = cls(**{k: v for k, v in row.items() if k in names})
        rec.problem_id = str(rec.problem_id)
        if rec.correct is not None and len(rec.correct) != len(rec.responses):
            raise ValueError(f"{where}: problem {rec.problem_id!r} has {len(rec.correct)} verdicts for "
                             f"{len(rec.responses)} responses")
        return rec

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def read_records(path: str | Path) -> list[Record]:
    """The records of one benchmark file, in file order; [] when the file does not exist yet. A line cut by a kill
    mid-write is dropped with a warning (evaluation redoes that problem)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [Record.from_dict(row, f"{path} record {i}")
            for i, row in enumerate(read_jsonl(path, skip_unreadable=True), 1)]


def write_records(path: str | Path, records) -> None:
    write_jsonl(path, (r.to_dict() for r in records))


def results_path(run_dir: str | Path) -> Path:
    """eval/results.csv: one row per model × checkpoint × benchmark, columns RESULT_COLUMNS."""
    return Path(run_dir) / RECORDS_DIR / "results.csv"


def records_dir(run_dir: str | Path, model: str, checkpoint: str) -> Path:
    """The folder of one checkpoint's records (one file per benchmark)."""
    return Path(run_dir) / RECORDS_DIR / model / checkpoint


def records_relpath(model: str, checkpoint: str, benchmark: str) -> str:
    """The records file of (model, checkpoint, benchmark) relative to the run dir, as results.csv names it."""
    return f"{RECORDS_DIR}/{model}/{checkpoint}/{benchmark}.jsonl"


def records_path(run_dir: str | Path, model: str, checkpoint: str, benchmark: str) -> Path:
    return Path(run_dir) / records_relpath(model, checkpoint, benchmark)


def records_reference(path: str | Path, run_dir: str | Path | None) -> str:
    """How results.csv names a records file: relative to the run dir when under it (a run dir can move)."""
    path = Path(path)
    if run_dir is not None:
        try:
            return path.resolve().relative_to(Path(run_dir).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def resolve_records(run_dir: str | Path, value) -> Path | None:
    """A results row's `records` value as a path (relative values are under the run dir); None when empty."""
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(run_dir) / path


def example_row(rec: Record, sample: int = 0) -> dict:
    """One sample of a record beside its verdict, for eyeballing outputs."""
    return {"problem_id": rec.problem_id, "prompt": rec.prompt, "response": rec.responses[sample],
            "finish": rec.finish_reasons[sample], "correct": rec.correct[sample] if rec.graded else None,
            "status": rec.statuses[sample] if rec.statuses else None}


def graded_examples(run_dir: str | Path, model: str, checkpoint: str, benchmark: str, k: int = 3) -> list[dict]:
    """The first k records of one benchmark, first sample only (prompt left out: it is long and the same per arm)."""
    rows = [example_row(r) for r in read_records(records_path(run_dir, model, checkpoint, benchmark))[:k]]
    return [{key: v for key, v in row.items() if key != "prompt"} for row in rows]
