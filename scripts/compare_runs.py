"""Did a change alter what a study computes? Compare two finished run directories of the same params.

    .venv/bin/python scripts/compare_runs.py runs/smoke /tmp/smoke-before

Compares every training run's loss log, every evaluation record's sampled responses (by problem id) and the
score columns of eval/results.csv. Exit 0 when all match, 1 with a list of differences otherwise. Columns that
hold machine paths or were added later are ignored: only columns present in both tables are compared.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from posttrain.records import read_jsonl

SCORE_COLUMNS = ("pass@1", "pass@1_lo", "pass@1_hi", "pass@5", "pass@5_lo", "pass@5_hi", "truncation_rate",
                 "n", "num_problems", "num_ungradable")
ROW_KEY = ("model", "step", "benchmark")
LOSS_LOGS = "*/*/loss.jsonl"  # pretrain/<run>/loss.jsonl and sft/<run>/loss.jsonl


def _relative_files(root: Path, pattern: str) -> set[Path]:
    return {p.relative_to(root) for p in root.glob(pattern)}


def _compare_files(a: Path, b: Path, pattern: str, read, what: str) -> list[str]:
    """Each file matching `pattern` under either run: missing from one, or `read` giving different contents."""
    diffs = []
    for rel in sorted(_relative_files(a, pattern) | _relative_files(b, pattern)):
        if not (a / rel).exists() or not (b / rel).exists():
            diffs.append(f"{rel}: only in one run")
        elif read(a / rel) != read(b / rel):
            diffs.append(f"{rel}: {what} differ")
    return diffs


def _responses(path: Path) -> dict[str, list]:
    return {row["problem_id"]: row["responses"] for row in read_jsonl(path)}


def compare_losses(a: Path, b: Path) -> list[str]:
    return _compare_files(a, b, LOSS_LOGS, Path.read_text, "loss logs")


def compare_records(a: Path, b: Path) -> list[str]:
    return _compare_files(a, b, "eval/**/*.jsonl", _responses, "sampled responses")


def _results(path: Path) -> dict[tuple, dict]:
    with path.open() as f:
        return {tuple(row[k] for k in ROW_KEY): row for row in csv.DictReader(f)}


def compare_results(a: Path, b: Path) -> list[str]:
    ra, rb = _results(a / "eval" / "results.csv"), _results(b / "eval" / "results.csv")
    diffs = [f"results.csv row {key}: only in one run" for key in sorted(set(ra) ^ set(rb))]
    for key in sorted(set(ra) & set(rb)):
        for col in SCORE_COLUMNS:
            if col in ra[key] and col in rb[key] and ra[key][col] != rb[key][col]:
                diffs.append(f"results.csv row {key} {col}: {ra[key][col]} vs {rb[key][col]}")
    return diffs


def compare_runs(a: Path, b: Path) -> list[str]:
    return compare_losses(a, b) + compare_records(a, b) + compare_results(a, b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_a", type=Path)
    ap.add_argument("run_b", type=Path)
    args = ap.parse_args(argv)
    diffs = compare_runs(args.run_a, args.run_b)
    for d in diffs:
        print(d)
    n_loss = len(_relative_files(args.run_a, LOSS_LOGS))
    n_rec = len(_relative_files(args.run_a, "eval/**/*.jsonl"))
    print(f"compare_runs: {n_loss} loss logs, {n_rec} record files and results.csv compared: "
          f"{'all identical' if not diffs else f'{len(diffs)} differences'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
