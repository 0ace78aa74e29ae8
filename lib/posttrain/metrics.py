"""Benchmark scores: the unbiased pass@k estimator, per-benchmark aggregation, and bootstrap confidence intervals.

pass@k is the Codex/HumanEval estimator over all n samples of a problem, 1 - C(n-c, k)/C(n, k), written in the
product form 1 - prod_{i=n-c+1}^{n} (1 - k/i) that LiveCodeBench and lighteval use (no huge binomials, no
cancellation). Aggregates are means over problems; their 95% intervals come from a percentile bootstrap that
resamples *problems* (the unit that varies between benchmark draws), never samples within a problem.

`bootstrap_stat` resamples several per-problem arrays jointly (same problem indices for every array), which is
what a paired statistic needs, e.g. the gap closure (arm - floor) / (ceiling - floor) of three models graded on the
same problems. numpy only; no torch.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["pass_at_k", "per_problem_pass_at_k", "score_problems", "bootstrap_ci", "bootstrap_stat",
           "bootstrap_ratio_ci", "bootstrap_over_seeds", "joint_bootstrap_gap", "joint_bootstrap_gap_over_seeds",
           "bootstrap_stat_clustered"]


def _as_int(name: str, value: Any) -> int:
    # operator.index accepts int and numpy integers but rejects floats (2.0 samples is a caller bug).
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer count, got a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one problem with `c` correct out of `n` samples.

    Equals 1 - C(n-c, k) / C(n, k): the probability that a random k-subset of the n samples holds at least one
    correct one. Raises ValueError for negative counts, k < 1, c > n or k > n.
    """
    n, c, k = _as_int("n", n), _as_int("c", c), _as_int("k", k)
    if n < 0 or c < 0:
        raise ValueError(f"pass_at_k: counts must be non-negative, got n={n}, c={c}")
    if k < 1:
        raise ValueError(f"pass_at_k: k must be >= 1, got k={k}")
    if c > n:
        raise ValueError(f"pass_at_k: more correct samples than samples (c={c} > n={n})")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}; pass@{k} needs at least {k} "
                         f"samples per problem")
    if c == 0:
        return 0.0
    if n - c < k:  # every k-subset contains a correct sample
        return 1.0
    # prod over i in (n-c, n] of (1 - k/i) = C(n-c, k)/C(n, k); each factor is in (0, 1), so no overflow.
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def _normalize_counts(results: Sequence[Any]) -> list[tuple[int, int]]:
    """(n, c) per problem from either (n, c) tuples or per-problem sequences of per-sample correctness."""
    counts = []
    for i, item in enumerate(results):
        # A 2-tuple of plain ints is a count pair; anything else (a list, an array, a tuple of bools) is a list of
        # per-sample outcomes. Bools are ints in Python, hence the explicit bool check.
        if (isinstance(item, tuple) and len(item) == 2
                and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in item)):
            n, c = int(item[0]), int(item[1])
        else:
            try:
                outcomes = [bool(v) for v in item]
            except TypeError:
                raise ValueError(f"problem {i}: expected an (n, c) tuple or a sequence of per-sample booleans, "
                                 f"got {type(item).__name__}") from None
            n, c = len(outcomes), sum(outcomes)
        if n < 0 or c < 0 or c > n:
            raise ValueError(f"problem {i}: invalid counts n={n}, c={c}")
        counts.append((n, c))
    return counts


def per_problem_pass_at_k(results: Sequence[Any], k: int) -> np.ndarray:
    """pass@k of every problem (same input forms as `score_problems`); ValueError if a problem has < k samples."""
    counts = _normalize_counts(results)
    short = [i for i, (n, _) in enumerate(counts) if n < k]
    if short:
        raise ValueError(f"pass@{k} needs >= {k} samples per problem; {len(short)} problem(s) have fewer "
                         f"(first: index {short[0]} with n={counts[short[0]][0]})")
    return np.array([pass_at_k(n, c, k) for n, c in counts], dtype=float)


def _percentile_interval(replicates: np.ndarray, alpha: float) -> tuple[float, float]:
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if _as_int("n_boot", n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) interval of the mean of `values` (one value per problem).

    Problems are resampled with replacement `n_boot` times with numpy's default_rng(seed), so the result is
    reproducible. Empty input gives (nan, nan).
    """
    _check_boot_args(n_boot, alpha)
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    return _percentile_interval(x[idx].mean(axis=1), alpha)


def bootstrap_stat(arrays: Sequence[Sequence[float]], stat_fn: Callable[..., float], n_boot: int = 1000,
                   seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Point estimate and percentile-bootstrap interval of `stat_fn(*arrays)`, resampling problems jointly.

    `arrays` are per-problem arrays of equal length, aligned by problem (row i of every array is problem i).
    Each replicate draws one set of problem indices and applies it to *every* array, keeping the pairing, then
    calls `stat_fn(*resampled)`. Replicates that are not finite (e.g. a ratio whose denominator resampled to 0)
    are dropped before taking quantiles; if none is finite the interval is (nan, nan).

    Example, gap closure of an arm between a floor and a ceiling model graded on the same problems::

        point, lo, hi = bootstrap_stat([floor, arm, ceiling],
                                       lambda f, a, c: (a.mean() - f.mean()) / (c.mean() - f.mean()))

    Returns (point, lo, hi); all nan when the arrays are empty.
    """
    _check_boot_args(n_boot, alpha)
    xs = [np.asarray(a, dtype=float) for a in arrays]
    if not xs:
        raise ValueError("bootstrap_stat needs at least one array")
    sizes = {x.shape[0] if x.ndim else -1 for x in xs}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"bootstrap_stat: arrays must be 1-d and of equal length (one entry per problem), got "
                         f"lengths {[x.shape[0] if x.ndim else None for x in xs]}")
    size = sizes.pop()
    if size == 0:
        return math.nan, math.nan, math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(stat_fn(*xs))
        rng = np.random.default_rng(seed)
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            idx = rng.integers(0, size, size=size)
            replicates[b] = float(stat_fn(*(x[idx] for x in xs)))
    lo, hi = _percentile_interval(replicates, alpha)
    return point, lo, hi


def bootstrap_over_seeds(groups: Sequence[Sequence[Sequence[float]]], stat_fn: Callable[..., float],
                         n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Two-level percentile bootstrap of `stat_fn` over training seeds, then problems within each seed.

    `groups` has one entry per training seed (a replicate run of the same configuration): that seed's per-problem
    arrays, aligned as in `bootstrap_stat` (every array of a group has one entry per problem; groups may differ in
    length). Each replicate draws as many seeds as there are, with replacement, then for each drawn seed one set of
    problem indices applied to all its arrays (the pairing between arms is kept), and calls `stat_fn` on the
    arrays concatenated over the drawn seeds. The point estimate pools every seed once.

    The interval so covers the variance between training runs as well as between problems, which resampling
    problems alone misses (docs/miniature.md §14: two training seeds moved an arm difference from −6 to +31 points
    with ±3–6-point problem intervals each). With few seeds it is wide by construction: with k seeds it cannot be
    narrower than what the seeds' own spread allows, and k = 1 reduces it to `bootstrap_stat`.

    Returns (point, lo, hi).
    """
    _check_boot_args(n_boot, alpha)
    groups = [[np.asarray(a, dtype=float) for a in g] for g in groups]
    if not groups:
        raise ValueError("bootstrap_over_seeds needs at least one seed's arrays")
    widths = {len(g) for g in groups}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(f"bootstrap_over_seeds: every seed needs the same number of arrays (>= 1), got "
                         f"{[len(g) for g in groups]}")
    for i, g in enumerate(groups):
        if len({x.shape[0] if x.ndim == 1 else -1 for x in g}) != 1 or g[0].ndim != 1 or g[0].shape[0] == 0:
            raise ValueError(f"bootstrap_over_seeds: seed {i}'s arrays must be 1-d, non-empty and of equal length, "
                             f"got lengths {[x.shape if x.ndim != 1 else x.shape[0] for x in g]}")
    width, k = widths.pop(), len(groups)

    def pooled(picks):
        return [np.concatenate([part[j] for part in picks]) for j in range(width)]

    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(stat_fn(*pooled(groups)))
        rng = np.random.default_rng(seed)
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            picks = []
            for s in rng.integers(0, k, size=k):
                idx = rng.integers(0, len(groups[s][0]), size=len(groups[s][0]))
                picks.append([x[idx] for x in groups[s]])
            replicates[b] = float(stat_fn(*pooled(picks)))
    lo, hi = _percentile_interval(replicates, alpha)
    return point, lo, hi


def bootstrap_ratio_ci(numerator: Sequence[float], denominator: Sequence[float], n_boot: int = 1000,
                       seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """(point, lo, hi) for mean(numerator) / mean(denominator), resampling problems jointly (paired)."""
    return bootstrap_stat([numerator, denominator], lambda a, b: a.mean() / b.mean(), n_boot=n_boot, seed=seed,
                          alpha=alpha)


def score_problems(results: Sequence[Any], ks: Sequence[int] = (1, 5), n_boot: int = 1000, seed: int = 0,
                   alpha: float = 0.05) -> dict[str, float]:
    """Benchmark scores with bootstrap intervals.

    `results` has one entry per problem: either an `(n, c)` tuple of ints (samples, correct samples) or a
    sequence of per-sample correctness values (bools or 0/1). For each k in `ks` the result holds
    `pass@k` (mean over problems of the unbiased per-problem pass@k; for k=1 that is the mean of c/n),
    `pass@k_lo` and `pass@k_hi` (the (1 - alpha) percentile-bootstrap interval over problems, the same resampled
    problem sets for every k), plus `num_problems`. A problem with fewer than k samples raises ValueError. An empty
    `results` gives nan scores and num_problems 0.
    """
    counts = _normalize_counts(results)
    ks = [_as_int("k", k) for k in ks]
    out: dict[str, float] = {}
    if not counts:
        for k in ks:
            out[f"pass@{k}"] = out[f"pass@{k}_lo"] = out[f"pass@{k}_hi"] = math.nan
        out["num_problems"] = 0
        return out
    _check_boot_args(n_boot, alpha)
    per_k = {k: per_problem_pass_at_k(counts, k) for k in ks}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(counts), size=(n_boot, len(counts)))  # shared across ks
    for k in ks:
        values = per_k[k]
        lo, hi = _percentile_interval(values[idx].mean(axis=1), alpha)
        out[f"pass@{k}"] = float(values.mean())
        out[f"pass@{k}_lo"] = lo
        out[f"pass@{k}_hi"] = hi
    out["num_problems"] = len(counts)
    return out


# Paired arm statistics on per-problem pass@1 arrays aligned on the same problems (the report's differences and gap
# closure of the short pre-training).


def gap_closure_stat(zero, short, full):
    return (short.mean() - zero.mean()) / (full.mean() - zero.mean())


def difference_stat(a, b):
    return a.mean() - b.mean()


def joint_bootstrap_gap(zero: np.ndarray, short: np.ndarray, full: np.ndarray, n_boot: int = 1000, seed: int = 0,
                        alpha: float = 0.05) -> dict:
    """Gap closure (short − zero) / (full − zero) of per-problem pass@1 arrays aligned on the same problems, with
    percentile CIs from resampling problems jointly (metrics.bootstrap_stat). Defined only where the gap
    full − zero is positive with its CI above 0; otherwise gap_closure is NaN and `reason` says why."""
    zero, short, full = (np.asarray(a, float) for a in (zero, short, full))
    if not (len(zero) == len(short) == len(full)) or len(zero) == 0:
        raise ValueError(f"joint_bootstrap_gap: need equal non-empty arrays, got {len(zero)}, {len(short)}, "
                         f"{len(full)}")
    return _gap_stats([[zero, short, full]], lambda groups, stat: bootstrap_stat(
        groups[0], stat, n_boot=n_boot, seed=seed, alpha=alpha))


def joint_bootstrap_gap_over_seeds(groups: list[list[np.ndarray]], n_boot: int = 1000, seed: int = 0,
                                   alpha: float = 0.05) -> dict:
    """joint_bootstrap_gap pooled over training seeds: `groups` holds one [zero, short, full] per seed, the CIs
    resample seeds and then problems within each (metrics.bootstrap_over_seeds)."""
    groups = [[np.asarray(a, float) for a in g] for g in groups]
    return _gap_stats(groups, lambda gs, stat: bootstrap_over_seeds(gs, stat, n_boot=n_boot, seed=seed, alpha=alpha))


def _gap_stats(groups: list[list[np.ndarray]], boot) -> dict:
    zero, short, full = (np.concatenate([g[i] for g in groups]) for i in range(3))
    denom, d_lo, d_hi = boot([[g[2], g[0]] for g in groups], difference_stat)
    out = {"zero": zero.mean(), "short": short.mean(), "full": full.mean(), "denominator": denom,
           "denominator_lo": d_lo, "denominator_hi": d_hi, "gap_closure": np.nan, "gap_lo": np.nan,
           "gap_hi": np.nan, "defined": bool(denom > 0 and d_lo > 0), "reason": ""}
    if out["defined"]:
        out["gap_closure"], out["gap_lo"], out["gap_hi"] = boot(groups, gap_closure_stat)
    else:
        out["reason"] = (f"undefined: 100%-Pre − 0%-Pre = {100 * denom:.1f} points, 95% CI [{100 * d_lo:.1f}, "
                         f"{100 * d_hi:.1f}], is not above 0: there is no gap to close")
    return out


def bootstrap_stat_clustered(arrays: Sequence[Sequence[float]], stat_fn: Callable[..., float],
                             cluster: Sequence[Any], n_boot: int = 1000, seed: int = 0,
                             alpha: float = 0.05) -> tuple[float, float, float]:
    """`bootstrap_stat` when problems come in clusters that are not independent draws (the miniature's code sets:
    ~30 tasks, each over several problems that differ only in their inputs, scored nearly all-or-nothing per task).
    `cluster[i]` labels problem i (e.g. its task id); each replicate draws as many clusters as there are, with
    replacement, and keeps every problem of each drawn cluster, applied jointly to all arrays (the pairing between
    arms is kept). With one problem per cluster, in order, it is `bootstrap_stat` draw for draw.

    Returns (point, lo, hi); all nan when the arrays are empty."""
    _check_boot_args(n_boot, alpha)
    xs = [np.asarray(a, dtype=float) for a in arrays]
    if not xs or len({x.shape for x in xs}) != 1 or xs[0].ndim != 1:
        raise ValueError(f"bootstrap_stat_clustered: arrays must be 1-d and of equal length (one entry per problem), "
                         f"got shapes {[x.shape for x in xs]}")
    if len(cluster) != xs[0].shape[0]:
        raise ValueError(f"bootstrap_stat_clustered: {len(cluster)} cluster labels for {xs[0].shape[0]} problems")
    if xs[0].shape[0] == 0:
        return math.nan, math.nan, math.nan
    _, inverse = np.unique(np.asarray(cluster), return_inverse=True)
    members = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(stat_fn(*xs))
        rng = np.random.default_rng(seed)
        replicates = np.empty(n_boot)
        for b in range(n_boot):
            idx = np.concatenate([members[c] for c in rng.integers(0, len(members), size=len(members))])
            replicates[b] = float(stat_fn(*(x[idx] for x in xs)))
    lo, hi = _percentile_interval(replicates, alpha)
    return point, lo, hi
