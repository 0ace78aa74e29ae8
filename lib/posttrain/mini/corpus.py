"""A general-text pre-training corpus that exists offline on any machine.

Half of the character budget goes to web text from the DCLM sample in ../shared/data/dclm_sample (when present),
the rest to the Python standard library's sources (docstrings and code), read in sorted order so the corpus is the
same on every machine with the same Python. Documents are cut at line boundaries to at most `max_doc_chars`.
"Pre-training" here means general text: the generated tasks are never part of it.
"""
from __future__ import annotations

import json
import random
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from posttrain.params import REPO_ROOT

DCLM_DIR = REPO_ROOT.parent / "shared" / "data" / "dclm_sample"


def split_document(text: str, max_doc_chars: int) -> Iterator[str]:
    """Cut a text into pieces of at most max_doc_chars, at line ends where possible."""
    piece = ""
    for line in text.splitlines(keepends=True):
        while len(line) > max_doc_chars:  # one overlong line: hard cut
            if piece:
                yield piece
                piece = ""
            yield line[:max_doc_chars]
            line = line[max_doc_chars:]
        if len(piece) + len(line) > max_doc_chars:
            yield piece
            piece = ""
        piece += line
    if piece.strip():
        yield piece


def dclm_documents(dclm_dir: Path = DCLM_DIR) -> Iterator[str]:
    """The "text" field of every row of dclm_dir/*.jsonl (sorted files); nothing if the folder is absent."""
    for path in sorted(Path(dclm_dir).glob("*.jsonl")) if Path(dclm_dir).is_dir() else []:
        with open(path) as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    text = json.loads(line)["text"]
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"{path} row {i}: expected JSON with a 'text' field ({e})") from None
                if isinstance(text, str) and text.strip():
                    yield text


def stdlib_documents(stdlib_dir: str | Path | None = None) -> Iterator[str]:
    """Sources of the standard library's .py files, sorted by path; tests and site-packages left out."""
    root = Path(stdlib_dir or sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in ("site-packages", "dist-packages", "test", "tests", "idle_test") for p in rel):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib files are deliberately not UTF-8
        if text.strip():
            yield text


def build_corpus(max_chars: int, seed: int = 0, max_doc_chars: int = 4000, dclm_dir: Path = DCLM_DIR,
                 stdlib_dir: str | Path | None = None) -> list[str]:
    """Documents totalling at most max_chars: DCLM first up to half the budget, stdlib for the rest, shuffled."""
    docs: list[str] = []
    total = 0
    for source, budget in ((dclm_documents(dclm_dir), max_chars // 2), (stdlib_documents(stdlib_dir), max_chars)):
        for text in source:
            for piece in split_document(text, max_doc_chars):
                if total + len(piece) > budget:
                    break
                docs.append(piece)
                total += len(piece)
            if total + 200 > budget:  # budget reached (up to a small piece)
                break
    if not docs:
        raise ValueError("the corpus is empty: no DCLM sample and no readable standard library sources")
    random.Random(seed).shuffle(docs)
    return docs
