"""Throughput of posttrain.overlap on synthetic rows: rows/s, tokens/s and peak memory while streaming.

The index holds `--problems` synthetic benchmark problems; `--rows` SFT rows of `--words` tokens stream through it
from a generator (a few of them quote a problem, which must be found). Peak RSS should stay flat as --rows grows.

Run: .venv/bin/python benchmarks/overlap.py --rows 200000 --words 120
"""
import argparse
import resource
import time

import numpy as np

from posttrain.overlap import OverlapIndex


def synthetic_text(rng: np.random.Generator, vocab: np.ndarray, num_words: int) -> str:
    # Zipf-distributed word ids, like natural text: common words repeat, rare ones make grams distinctive.
    ids = np.minimum(rng.zipf(1.3, size=num_words), len(vocab)) - 1
    return " ".join(vocab[ids])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--words", type=int, default=120, help="tokens per SFT row")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    problems = [("synthetic", str(i), synthetic_text(rng, vocab, 60)) for i in range(args.problems)]
    leaks = {int(r): int(p) for r, p in zip(rng.choice(args.rows, 10, replace=False),
                                            rng.choice(args.problems, 10, replace=False))}

    def rows(seed=1):
        rng = np.random.default_rng(seed)
        for i in range(args.rows):
            text = synthetic_text(rng, vocab, args.words)
            yield text + " " + problems[leaks[i]][2] if i in leaks else text

    start = time.perf_counter()
    for _ in rows():  # the synthetic generator's own cost, subtracted below
        pass
    generate = time.perf_counter() - start
    start = time.perf_counter()
    index = OverlapIndex(problems)
    built = time.perf_counter() - start
    start = time.perf_counter()
    per = index.scan(rows(), "synthetic", batch_size=args.batch_size, progress=False)
    elapsed = time.perf_counter() - start - generate
    found = per.set_index("problem_id").loc[[str(p) for p in leaks.values()], "max_containment"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"index: {args.problems} problems, {len(index.ngrams.grams)} 13-grams, built in {built:.2f}s")
    print(f"scan: {args.rows} rows x {args.words} tokens in {elapsed:.1f}s = {args.rows / elapsed:,.0f} rows/s, "
          f"{args.rows * args.words / elapsed / 1e6:.2f}M tokens/s (one core; row generation, {generate:.1f}s, excluded)")
    print(f"planted copies found: {(found == 1.0).sum()}/{len(leaks)}; other problems with a shared 13-gram: "
          f"{int((per['rows_sharing_ngram'] > 0).sum()) - int((found > 0).sum())}")
    print(f"peak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
