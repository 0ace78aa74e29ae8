"""Overlap between SFT data and benchmarks (the exploration around it: posttrain.explore).

Two measures per benchmark problem, against one SFT set streamed row by row:
- n-gram overlap (13-grams on normalized word tokens by default): does any SFT row share an n-gram with the problem,
  and the max containment = shared distinct n-grams / the problem's distinct n-grams, over rows;
- nearest neighbour: the SFT row with the highest Jaccard similarity of word-trigram sets.

The index is built from the BENCHMARK side (small): sorted arrays of 64-bit n-gram hashes with posting lists of
problems. The SFT side streams through it in batches, hashed with vectorized rolling hashes, so time is O(rows) and
memory is bounded by the batch and the benchmark index — millions of rows work (see benchmarks/overlap.py).
Written against iterables of strings or dicts, so it does not depend on any particular loader.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xxhash

from posttrain.progress import bar as progress_bar

# Alphanumeric runs and single symbols. LaTeX formatting ("$", "\", "{", "}") and sentence punctuation (.,;:!?)
# differ between copies of the same problem, so they are dropped. Operators and brackets stay: "37 + 45" and
# "37 - 45" must not look identical.
_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9$\\{}.,;:!?]")
_BASE = np.uint64(0x100000001B3)  # rolling-hash multiplier (FNV prime); arithmetic wraps mod 2**64
_LENGTH_MIX = 0x9E3779B97F4A7C15  # mixes the gram length in, so a 4-gram and a 13-gram never collide by design
_WORD_CACHE_MAX = 2_000_000


def normalize_tokens(text: str) -> list[str]:
    """Lower-cased word and symbol tokens of `text` (the unit n-grams are made of)."""
    return _TOKEN_RE.findall(text.lower())


class _WordHasher:
    """word → uint64 via xxh64, cached; the cache is cleared when full so memory stays bounded on huge corpora."""

    def __init__(self):
        self.cache: dict[str, int] = {}

    def __call__(self, tokens: list[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > _WORD_CACHE_MAX:
            cache.clear()
        for tok in set(tokens).difference(cache):
            cache[tok] = xxhash.xxh64_intdigest(tok.encode())
        return np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))


def _window_hashes(words: np.ndarray, row_of: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of `length` tokens that stays inside one row. Returns (row index, hash) arrays."""
    num_windows = len(words) - length + 1
    if num_windows <= 0:
        return np.empty(0, np.int64), np.empty(0, np.uint64)
    hashes = np.zeros(num_windows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(length):
            hashes = hashes * _BASE + words[i:i + num_windows]
        hashes ^= np.uint64((length * _LENGTH_MIX) % 2**64)
    inside = row_of[:num_windows] == row_of[length - 1:]
    return row_of[:num_windows][inside], hashes[inside]


class _GramIndex:
    """Benchmark n-grams (hashes) → posting lists of problem indices, with a short-problem fallback.

    A problem with fewer than n tokens contributes one gram, its whole token sequence, so it can still be found
    verbatim inside an SFT row. Grams found in more than `max_postings` problems are boilerplate ("what is the"):
    they are dropped from both sides, like stop words, so a verbatim copy still scores 1.
    """

    def __init__(self, token_hashes: list[np.ndarray], n: int, max_postings: int):
        self.n = n
        per_problem = []
        for p, words in enumerate(token_hashes):
            length = min(n, len(words))
            if length == 0:
                per_problem.append(np.empty(0, np.uint64))
                continue
            _, h = _window_hashes(words, np.zeros(len(words), np.int64), length)
            per_problem.append(np.unique(h))
        self.num_grams = np.array([len(h) for h in per_problem], dtype=np.int64)
        self.lengths = sorted({min(n, len(w)) for w in token_hashes if len(w)})
        grams = np.concatenate(per_problem) if per_problem else np.empty(0, np.uint64)
        probs = np.repeat(np.arange(len(per_problem)), self.num_grams)
        order = np.argsort(grams, kind="stable")
        grams, probs = grams[order], probs[order]
        uniq, start, counts = np.unique(grams, return_index=True, return_counts=True)
        keep = counts <= max_postings
        keep_rows = np.repeat(keep, counts)
        self.grams = uniq[keep]
        self.problems = probs[keep_rows]
        self.offsets = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
        self.pruned = uniq[~keep]
        pruned_per_problem = np.bincount(probs[~keep_rows], minlength=len(per_problem))
        self.num_grams = self.num_grams - pruned_per_problem  # distinct grams that take part, per problem

    def row_gram_counts(self, words: np.ndarray, row_of: np.ndarray, num_rows: int) -> np.ndarray:
        """Distinct non-boilerplate n-grams per row (the row's side of a Jaccard union)."""
        rows, hashes = _window_hashes(words, row_of, self.n)
        if len(self.pruned):
            pos = np.searchsorted(self.pruned, hashes).clip(max=len(self.pruned) - 1)
            keep = self.pruned[pos] != hashes
            rows, hashes = rows[keep], hashes[keep]
        order = np.lexsort((hashes, rows))
        rows, hashes = rows[order], hashes[order]
        first = np.r_[True, (rows[1:] != rows[:-1]) | (hashes[1:] != hashes[:-1])]
        counts = np.bincount(rows[first], minlength=num_rows)
        return np.maximum(counts, 1)  # a row shorter than n still counts as one (whole-text) gram

    def shared_counts(self, words: np.ndarray, row_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distinct grams shared by each (row, problem) pair of a batch: (rows, problems, counts), pairs with ≥1."""
        rows_parts, gram_parts = [], []
        for length in self.lengths:
            rows, hashes = _window_hashes(words, row_of, length)
            if len(self.grams) == 0 or len(hashes) == 0:
                continue
            pos = np.searchsorted(self.grams, hashes).clip(max=len(self.grams) - 1)
            hit = self.grams[pos] == hashes
            rows_parts.append(rows[hit])
            gram_parts.append(pos[hit])
        if not rows_parts or sum(len(r) for r in rows_parts) == 0:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        rows, gram_idx = np.concatenate(rows_parts), np.concatenate(gram_parts)
        pair = np.unique(rows * len(self.grams) + gram_idx)  # a gram repeated in a row counts once
        rows, gram_idx = pair // len(self.grams), pair % len(self.grams)
        starts, ends = self.offsets[gram_idx], self.offsets[gram_idx + 1]
        sizes = ends - starts
        rep_rows = np.repeat(rows, sizes)
        within = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        problems = self.problems[np.repeat(starts, sizes) + within]
        num_problems = len(self.num_grams)
        keys, counts = np.unique(rep_rows * num_problems + problems, return_counts=True)
        return keys // num_problems, keys % num_problems, counts


@dataclass(frozen=True)
class BenchmarkProblem:
    benchmark: str
    problem_id: str
    text: str


def _as_problem(item, i: int) -> BenchmarkProblem:
    if isinstance(item, BenchmarkProblem):
        return item
    if isinstance(item, Mapping):
        missing = [k for k in ("benchmark", "problem_id", "text") if k not in item]
        if missing:
            raise ValueError(f"benchmark problem #{i}: missing field(s) {missing}; need benchmark, problem_id, text")
        item = (item["benchmark"], item["problem_id"], item["text"])
    if not (isinstance(item, tuple) and len(item) == 3 and isinstance(item[2], str)):
        raise ValueError(f"benchmark problem #{i}: expected (benchmark, problem_id, text) or a dict with those keys, "
                         f"got {type(item).__name__}")
    return BenchmarkProblem(str(item[0]), str(item[1]), item[2])


class OverlapIndex:
    """Index benchmark problems once; `scan` streams one SFT set through it and returns per-problem overlap."""

    def __init__(self, problems: Iterable, ngram: int = 13, nn_ngram: int = 3,
                 ngram_max_df: float = 0.5, nn_max_df: float = 0.05, min_postings: int = 10):
        self.problems = [_as_problem(item, i) for i, item in enumerate(problems)]
        if not self.problems:
            raise ValueError("OverlapIndex: no benchmark problems given")
        self.ngram, self.nn_ngram = ngram, nn_ngram
        self._hasher = _WordHasher()
        token_hashes = [self._hasher(normalize_tokens(p.text)) for p in self.problems]
        cap = lambda frac: max(min_postings, int(frac * len(self.problems)))  # noqa: E731
        self.ngrams = _GramIndex(token_hashes, ngram, cap(ngram_max_df))
        self.nn = _GramIndex(token_hashes, nn_ngram, cap(nn_max_df))

    def scan(self, rows: Iterable, source: str, text_key: str = "text", id_key: str | None = None,
             batch_size: int = 512, max_rows: int | None = None, progress: bool = True) -> pd.DataFrame:
        """Stream SFT rows (strings, or dicts holding `text_key`) and return one row per benchmark problem.

        Columns: source, benchmark, problem_id, num_ngrams, rows_sharing_ngram, max_containment, containment_row,
        nn_similarity, nn_row, nn_excerpt. Row ids are `row[id_key]` or the row's position in the stream.
        """
        num_problems = len(self.problems)
        rows_sharing = np.zeros(num_problems, np.int64)
        best_shared = np.zeros(num_problems, np.int64)
        best_shared_row = np.full(num_problems, None, dtype=object)
        best_sim = np.zeros(num_problems, np.float64)
        best_sim_row = np.full(num_problems, None, dtype=object)
        best_sim_text = np.full(num_problems, "", dtype=object)
        iterator = iter(rows) if max_rows is None else itertools.islice(rows, max_rows)
        bar = progress_bar(enabled=progress, desc=f"overlap {source}", unit="rows")
        position = 0
        while batch := list(itertools.islice(iterator, batch_size)):
            texts, ids = [], []
            for row in batch:
                text, row_id = self._row_text(row, position, text_key, id_key)
                texts.append(text)
                ids.append(row_id)
                position += 1
            tokens = [normalize_tokens(t) for t in texts]
            lengths = np.array([len(t) for t in tokens], np.int64)
            words = self._hasher(list(itertools.chain.from_iterable(tokens)))
            row_of = np.repeat(np.arange(len(texts)), lengths)

            r, p, c = self.ngrams.shared_counts(words, row_of)
            np.add.at(rows_sharing, p, 1)
            self._update_best(best_shared, best_shared_row, None, r, p, c, ids, texts)

            r, p, c = self.nn.shared_counts(words, row_of)
            if len(r):
                row_grams = self.nn.row_gram_counts(words, row_of, len(texts))[r]
                union = self.nn.num_grams[p] + row_grams - c
                self._update_best(best_sim, best_sim_row, best_sim_text, r, p, c / np.maximum(union, 1), ids, texts)
            bar.update(len(batch))
        bar.close()
        with np.errstate(invalid="ignore", divide="ignore"):
            containment = np.where(self.ngrams.num_grams > 0, best_shared / self.ngrams.num_grams, np.nan)
        return pd.DataFrame({
            "source": source,
            "benchmark": [p.benchmark for p in self.problems],
            "problem_id": [p.problem_id for p in self.problems],
            "num_ngrams": self.ngrams.num_grams,
            "rows_sharing_ngram": rows_sharing,
            "max_containment": containment,
            "containment_row": best_shared_row,
            "nn_similarity": best_sim.clip(max=1.0),
            "nn_row": best_sim_row,
            "nn_excerpt": best_sim_text,
        })

    @staticmethod
    def _row_text(row, position: int, text_key: str, id_key: str | None) -> tuple[str, object]:
        if isinstance(row, str):
            return row, position
        if isinstance(row, Mapping):
            if text_key not in row or not isinstance(row[text_key], str):
                raise ValueError(f"SFT row {position}: field {text_key!r} missing or not a string "
                                 f"(fields: {sorted(row)})")
            return row[text_key], (row[id_key] if id_key else position)
        raise ValueError(f"SFT row {position}: expected a string or a dict, got {type(row).__name__}")

    @staticmethod
    def _update_best(best, best_row, best_text, rows, problems, values, ids, texts):
        """Keep, per problem, the max of `values` over this batch's (row, problem) pairs and which row gave it."""
        if len(rows) == 0:
            return
        order = np.lexsort((values, problems))  # ascending value within each problem: the last one is the max
        last = order[np.r_[problems[order][1:] != problems[order][:-1], True]]
        better = last[values[last] > best[problems[last]]]
        if len(better) == 0:
            return
        p, r = problems[better], rows[better]
        best[p] = values[better]
        best_row[p] = np.array(ids, dtype=object)[r]
        if best_text is not None:
            best_text[p] = [texts[k][:300] for k in r]


def summarize_overlap(per_problem: pd.DataFrame, containment_threshold: float = 0.5,
                      similarity_threshold: float = 0.8) -> pd.DataFrame:
    """Per (source, benchmark): problems, fraction with any shared n-gram, containment and neighbour statistics."""
    grouped = per_problem.groupby(["source", "benchmark"], sort=False)
    return pd.DataFrame({
        "num_problems": grouped.size(),
        "frac_any_ngram": grouped["rows_sharing_ngram"].apply(lambda s: float((s > 0).mean())),
        f"frac_containment_ge_{containment_threshold:g}":
            grouped["max_containment"].apply(lambda s: float((s >= containment_threshold).mean())),
        "max_containment": grouped["max_containment"].max(),
        "mean_max_containment": grouped["max_containment"].mean(),
        "median_nn_similarity": grouped["nn_similarity"].median(),
        "max_nn_similarity": grouped["nn_similarity"].max(),
        f"frac_nn_ge_{similarity_threshold:g}":
            grouped["nn_similarity"].apply(lambda s: float((s >= similarity_threshold).mean())),
    }).reset_index()


# ---------------------------------------------------------------------------------------------- SFT rows


def _sft_prompt_prefixes() -> list[re.Pattern]:
    """Regexes of the SFT datasets' prompt text before the problem slot (posttrain.prompts), to strip it."""
    from posttrain.prompts import OCR_CODE_PROMPT, OMR_MATH_PROMPT

    patterns = []
    for template, slot in ((OMR_MATH_PROMPT, "{problem}"), (OCR_CODE_PROMPT, "{question}")):
        prefix = template.split(slot)[0].replace("{{", "{").replace("}}", "}")
        parts = re.split(r"\{[a-z_]+\}", prefix)  # {language}, {fence}: any text
        patterns.append(re.compile(".*?".join(map(re.escape, parts)), re.S))
    return patterns


def sft_rows(dataset, limit: int | None = None):
    """Stream rows of an SFT dataset with a `messages` column as {"index", "problem", "messages"}, skipping rows
    the loader marked `skip`. problem = the first user turn without the dataset's prompt boilerplate, which every
    row shares and which would otherwise dominate neighbour similarities."""
    prefixes = _sft_prompt_prefixes()
    for i, row in enumerate(itertools.islice(dataset, limit)):
        if row.get("skip"):
            continue
        user = next((m["content"] for m in row["messages"] if m["role"] == "user"), None)
        if user is None:
            raise ValueError(f"SFT row {i}: no user turn in messages")
        for pattern in prefixes:
            if found := pattern.match(user):
                user = user[found.end():]
                break
        yield {"index": i, "problem": user, "messages": row["messages"]}
