"""Tests for posttrain.metrics: pass@k against brute force and exact fractions, aggregation, bootstrap intervals."""
from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from posttrain.metrics import (bootstrap_ci, bootstrap_over_seeds, bootstrap_ratio_ci, bootstrap_stat, pass_at_k,
                               per_problem_pass_at_k, score_problems)


def _brute_force(n: int, c: int, k: int) -> Fraction:
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    hits = sum(any(samples[i] for i in s) for s in subsets)
    return Fraction(hits, len(subsets))


def _exact(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_subset_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(_brute_force(n, c, k)), rel=0, abs=1e-12)


@pytest.mark.parametrize("n", [10, 16, 64, 100, 257, 500, 999, 1000])
def test_pass_at_k_matches_exact_fractions(n):
    rng = np.random.default_rng(n)
    cases = {(c, k) for c in (0, 1, 2, n // 3, n // 2, n - 1, n) for k in (1, 2, 5, 10, n // 2, n)} | {
        (int(rng.integers(0, n + 1)), int(rng.integers(1, n + 1))) for _ in range(30)}
    for c, k in cases:
        if not 1 <= k <= n:
            continue
        exact = float(_exact(n, c, k))
        got = pass_at_k(n, c, k)
        assert got == pytest.approx(exact, rel=1e-12, abs=1e-15), (n, c, k)


def test_pass_at_k_tiny_probabilities_keep_relative_precision():
    # 1 correct of 1000, k=1: exactly 1/1000; k=2: 1 - C(999,2)/C(1000,2) = 2/1000.
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001, rel=1e-12)
    assert pass_at_k(1000, 1, 2) == pytest.approx(0.002, rel=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 5) == 1.0
    assert pass_at_k(10, 6, 5) == 1.0  # n - c = 4 < k: every 5-subset has a correct sample
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(np.int64(10), np.int64(2), np.int64(2)) == pytest.approx(float(_exact(10, 2, 2)))


@pytest.mark.parametrize("n,c,k,match", [
    (5, 2, 6, "exceeds"), (5, 6, 1, "more correct"), (-1, 0, 1, "non-negative"), (5, -1, 1, "non-negative"),
    (5, 2, 0, "k must be"), (5, 2, -3, "k must be"), (5.0, 2, 1, "integer"), (5, True, 1, "bool")])
def test_pass_at_k_rejects_bad_input(n, c, k, match):
    with pytest.raises(ValueError, match=match):
        pass_at_k(n, c, k)


def test_score_problems_hand_example():
    # Three problems with 5 samples: c = 5, 1, 0.
    res = score_problems([(5, 5), (5, 1), (5, 0)], ks=(1, 5), n_boot=200, seed=1)
    assert res["pass@1"] == pytest.approx((1 + 0.2 + 0) / 3)
    assert res["pass@5"] == pytest.approx((1 + 1 + 0) / 3)
    assert res["num_problems"] == 3
    for k in (1, 5):
        assert 0 <= res[f"pass@{k}_lo"] <= res[f"pass@{k}"] <= res[f"pass@{k}_hi"] <= 1


def test_score_problems_accepts_boolean_lists_and_matches_counts():
    bools = [[True, False, False, True], [False] * 4, [1, 1, 1, 1], np.array([0, 1, 0, 0], dtype=bool)]
    counts = [(4, 2), (4, 0), (4, 4), (4, 1)]
    a = score_problems(bools, ks=(1, 2, 4), n_boot=300, seed=3)
    b = score_problems(counts, ks=(1, 2, 4), n_boot=300, seed=3)
    assert a == b
    assert a["pass@1"] == pytest.approx((0.5 + 0 + 1 + 0.25) / 4)
    assert a["pass@2"] == pytest.approx((float(_exact(4, 2, 2)) + 0 + 1 + float(_exact(4, 1, 2))) / 4)
    assert a["pass@4"] == pytest.approx(3 / 4)


def test_score_problems_two_bools_are_samples_not_counts():
    # A list [True, False] is two samples (pass@1 = 0.5), not the pair (n=1, c=0).
    assert score_problems([[True, False]], ks=(1,), n_boot=10)["pass@1"] == 0.5


def test_score_problems_too_few_samples_raises():
    with pytest.raises(ValueError, match="pass@5 needs >= 5 samples"):
        score_problems([(10, 3), (4, 1)], ks=(1, 5))


def test_score_problems_empty_gives_nan():
    res = score_problems([], ks=(1, 5))
    assert res["num_problems"] == 0
    for key in ("pass@1", "pass@1_lo", "pass@1_hi", "pass@5", "pass@5_lo", "pass@5_hi"):
        assert math.isnan(res[key])


def test_score_problems_ci_contains_point_and_is_reproducible():
    rng = np.random.default_rng(0)
    results = [tuple(map(int, (10, c))) for c in rng.integers(0, 11, size=200)]
    a = score_problems(results, ks=(1, 5), n_boot=500, seed=7)
    b = score_problems(results, ks=(1, 5), n_boot=500, seed=7)
    c = score_problems(results, ks=(1, 5), n_boot=500, seed=8)
    assert a == b
    assert a["pass@1_lo"] != c["pass@1_lo"] or a["pass@1_hi"] != c["pass@1_hi"]
    for k in (1, 5):
        assert a[f"pass@{k}_lo"] < a[f"pass@{k}"] < a[f"pass@{k}_hi"]
    # The interval width is roughly 2 * 1.96 * standard error of the mean.
    per = per_problem_pass_at_k(results, 1)
    se = per.std(ddof=1) / math.sqrt(len(per))
    assert a["pass@1_hi"] - a["pass@1_lo"] == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_ci_basic():
    values = np.linspace(0, 1, 101)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert lo < 0.5 < hi
    assert (lo, hi) == bootstrap_ci(values, n_boot=2000, seed=0)
    assert bootstrap_ci([0.3] * 10) == (pytest.approx(0.3), pytest.approx(0.3))
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    with pytest.raises(ValueError):
        bootstrap_ci([1.0], alpha=1.5)


def test_bootstrap_stat_resamples_jointly():
    rng = np.random.default_rng(0)
    a = rng.random(300)
    # b - a is exactly 0.1 for every problem; a joint resample keeps it exactly 0.1, an independent one would not.
    point, lo, hi = bootstrap_stat([a, a + 0.1], lambda x, y: y.mean() - x.mean(), n_boot=300, seed=0)
    assert point == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)


def test_bootstrap_gap_closure_and_ratio():
    rng = np.random.default_rng(1)
    floor = (rng.random(400) < 0.2).astype(float)
    ceiling = np.maximum(floor, (rng.random(400) < 0.7).astype(float))
    arm = np.where(rng.random(400) < 0.5, ceiling, floor)
    stat = lambda f, a, c: (a.mean() - f.mean()) / (c.mean() - f.mean())  # noqa: E731
    point, lo, hi = bootstrap_stat([floor, arm, ceiling], stat, n_boot=500, seed=2)
    assert lo <= point <= hi and 0.3 < point < 0.7
    assert bootstrap_stat([floor, arm, ceiling], stat, n_boot=500, seed=2) == (point, lo, hi)
    r_point, r_lo, r_hi = bootstrap_ratio_ci(arm, ceiling, n_boot=500, seed=2)
    assert r_point == pytest.approx(arm.mean() / ceiling.mean()) and r_lo <= r_point <= r_hi
    # A denominator that is always zero gives non-finite replicates, which are dropped: nan interval, no crash.
    _, lo0, hi0 = bootstrap_ratio_ci([1.0, 2.0], [0.0, 0.0], n_boot=50)
    assert math.isnan(lo0) and math.isnan(hi0)
    with pytest.raises(ValueError, match="equal length"):
        bootstrap_stat([[1, 2], [1, 2, 3]], stat)


def test_bootstrap_over_seeds_covers_the_spread_between_training_seeds():
    # Two training seeds whose arm difference is +30 and -6 points on every problem: each seed alone gives a CI of
    # width 0, the seed-level interval spans both (replicates draw {s0, s0}, {s0, s1} or {s1, s1}).
    diff = lambda a, b: a.mean() - b.mean()  # noqa: E731
    s0 = [np.full(50, 0.8), np.full(50, 0.5)]
    s1 = [np.full(80, 0.44), np.full(80, 0.5)]
    assert bootstrap_stat(s0, diff, n_boot=200) == pytest.approx((0.3, 0.3, 0.3))
    point, lo, hi = bootstrap_over_seeds([s0, s1], diff, n_boot=400)
    assert point == pytest.approx((50 * 0.3 - 80 * 0.06) / 130)  # every problem of every seed once
    assert lo == pytest.approx(-0.06) and hi == pytest.approx(0.3)
    # seeds that agree give the problem-level interval back, not a wider one
    agree = bootstrap_over_seeds([s0, [a.copy() for a in s0]], diff, n_boot=200)
    assert agree == pytest.approx((0.3, 0.3, 0.3))


def test_bootstrap_over_seeds_keeps_pairs_within_a_seed_and_names_bad_input():
    rng = np.random.default_rng(1)
    a = rng.random(40)
    # b = a + 0.1 problem by problem: resampling pairs keeps the difference exact within and across seeds
    point, lo, hi = bootstrap_over_seeds([[a + 0.1, a], [a[:20] + 0.1, a[:20]]], lambda x, y: (x - y).mean(),
                                         n_boot=200)
    assert (point, lo, hi) == pytest.approx((0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match="same number of arrays"):
        bootstrap_over_seeds([[a, a], [a]], lambda x, y: 0.0)
    with pytest.raises(ValueError, match="seed 1's arrays"):
        bootstrap_over_seeds([[a, a], [a, a[:3]]], lambda x, y: 0.0)
    with pytest.raises(ValueError, match="at least one seed"):
        bootstrap_over_seeds([], np.mean)
