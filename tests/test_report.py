"""posttrain.report on a synthetic study (results table + generation records written to tmp_path), and the
claims check on records whose per-problem scores are set by hand.

Run: .venv/bin/python -m pytest tests/test_report.py -x -q
"""
import numpy as np
import pandas as pd
import pytest

from posttrain import report
from posttrain.mini.gates import check_gates
from posttrain.eval_sets import BENCHMARK_DOMAIN, get_spec
from posttrain.records import Record, records_relpath, write_records

MINI_BENCHES = {"math": ["mini_math", "mini_math_competition"], "code": ["mini_code"]}
ARM_SKILL = {"Base": 0.1, "0%-Pre": 0.2, "short-Pre": 0.45, "100%-Pre": 0.8}
N_SAMPLES, N_PROBLEMS = 5, 12


def _write_model(run_dir, rows, rng, model, arm, size, train_domain, step, benchmarks, with_records=True):
    for bench in benchmarks:
        domain = BENCHMARK_DOMAIN[bench]
        skill = ARM_SKILL[arm] * (1.0 if domain == train_domain or arm == "Base" else 0.3) * (0.5 + step / 40)
        correct = rng.random((N_PROBLEMS, N_SAMPLES)) < min(skill, 1.0)
        # the checkpoint folder's name says nothing about the step: the report must follow `records`
        relpath = records_relpath(model, f"ckpt-{step}", bench)
        if with_records:
            _write_records(run_dir / relpath, bench, correct)
        p1 = correct.mean(1)
        rows.append({"model": model, "arm": arm, "size": size, "train_domain": train_domain, "step": step,
                     "benchmark": bench, "domain": domain, "n": N_SAMPLES, "num_problems": N_PROBLEMS,
                     "num_ungradable": 0, "pass@1": p1.mean(), "pass@1_lo": max(p1.mean() - 0.1, 0),
                     "pass@1_hi": min(p1.mean() + 0.1, 1), "pass@5": correct.any(1).mean(),
                     "pass@5_lo": 0.0, "pass@5_hi": 1.0, "truncation_rate": 0.0, "path": f"/weights/{model}",
                     "grader": get_spec(bench).grader_label, "records": relpath})


def _write_records(path, bench, correct):
    path.parent.mkdir(parents=True, exist_ok=True)
    n = correct.shape[1]
    write_records(path, [Record(f"{bench}-{i}", bench, f"Problem {i} of {bench}?",
                                [f"reasoning ... answer {j}" for j in range(n)], ["stop"] * n, [10] * n, "h",
                                correct=c.tolist(), statuses=["ok"] * n, grader=get_spec(bench).grader_label)
                         for i, c in enumerate(correct)])


@pytest.fixture
def mini_run(tmp_path):
    """Sizes s1 (complete) and s2 (0%-Pre code-SFT never ran; short-Pre math has no competition result)."""
    rng, rows, run_dir = np.random.default_rng(0), [], tmp_path / "run"
    for size in ("s1", "s2"):
        _write_model(run_dir, rows, rng, f"base_{size}", "Base", size, "", 0,
                     [b for bs in MINI_BENCHES.values() for b in bs])
        for arm in ("0%-Pre", "short-Pre", "100%-Pre"):
            for domain, other in (("math", "code"), ("code", "math")):
                if (size, arm, domain) == ("s2", "0%-Pre", "code"):
                    continue
                model = f"{domain}_{arm[:-4].rstrip('%')}_{size}"
                benches = MINI_BENCHES[domain]
                if (size, arm, domain) == ("s2", "short-Pre", "math"):
                    benches = ["mini_math"]
                _write_model(run_dir, rows, rng, model, arm, size, domain, 10, benches)
                _write_model(run_dir, rows, rng, model, arm, size, domain, 20, benches + MINI_BENCHES[other])
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    results = pd.DataFrame(rows)
    results.to_csv(run_dir / "eval" / "results.csv", index=False)
    return run_dir, results


def _value(results, arm, size, domain, bench, metric="pass@1", step=20):
    r = results[(results.arm == arm) & (results["size"] == size) & (results.benchmark == bench)]
    if arm != "Base":
        r = r[(r.train_domain == domain) & (r.step == step)]
    assert len(r) == 1
    return r[metric].iloc[0]


def test_tables_match_inputs_and_missing_runs_are_gaps(mini_run, tmp_path):
    run_dir, results = mini_run
    out = report.write_report(run_dir=run_dir, figures_dir=tmp_path / "figs", n_boot=200)
    t1 = out["tables"]["table1"]
    assert list(t1.index) == [(s, a) for s in ("s1", "s2") for a in ("Base", "0%-Pre", "short-Pre", "100%-Pre")]
    assert list(t1.columns.get_level_values(0).unique()) == ["mini_math", "mini_math_competition", "mini_code"]
    for arm in ("0%-Pre", "short-Pre", "100%-Pre"):
        # in-domain final checkpoint (step 20, not 10)
        assert t1.loc[("s1", arm), ("mini_math", "pass@1")] == pytest.approx(_value(results, arm, "s1", "math",
                                                                                    "mini_math"))
        assert t1.loc[("s1", arm), ("mini_code", "pass@5")] == pytest.approx(_value(results, arm, "s1", "code",
                                                                                   "mini_code", "pass@5"))
    assert t1.loc[("s1", "Base"), ("mini_code", "pass@1")] == pytest.approx(_value(results, "Base", "s1", "",
                                                                                  "mini_code"))
    # Table 3: a math model on code, next to Base
    t3 = out["tables"]["table3_math_sft_on_code"]
    assert t3.loc[("s1", "100%-Pre"), ("mini_code", "pass@1")] == pytest.approx(
        _value(results, "100%-Pre", "s1", "math", "mini_code"))
    # missing runs: gaps with notes, not errors
    assert np.isnan(t1.loc[("s2", "0%-Pre"), ("mini_code", "pass@1")])
    assert np.isnan(t1.loc[("s2", "short-Pre"), ("mini_math_competition", "pass@1")])
    md = (run_dir / "report" / "table1.md").read_text()
    assert "—" in md and "0%-Pre s2 code-SFT on mini_code" in md
    assert "short-Pre s2 math-SFT on mini_math_competition" in md
    # honest names: a sentence maps the miniature's sets to the paper's benchmarks and names the graders
    assert "mini_math stands in for the paper's MATH-500" in md and "mini_code: code:lcb" in md
    assert "MATH-500" in out["captions"]["table1"] and "LiveCodeBench" in out["captions"]["table3_math_sft_on_code"]
    tex = (run_dir / "report" / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "stands in for" in tex
    row = next(line for line in md.splitlines() if line.startswith("| s1 | 100%-Pre"))
    assert f"{100 * _value(results, '100%-Pre', 's1', 'math', 'mini_math'):.1f}" in row


def test_gap_closure_arithmetic_and_figures(mini_run, tmp_path):
    run_dir, results = mini_run
    out = report.write_report(run_dir=run_dir, figures_dir=tmp_path / "figs", n_boot=300)
    gaps = out["tables"]["gap_closure"].set_index(["size", "benchmark"])
    z, s, f = (_value(results, a, "s1", "math", "mini_math") for a in ("0%-Pre", "short-Pre", "100%-Pre"))
    g = gaps.loc[("s1", "mini_math")]
    assert g["zero"] == pytest.approx(z) and g["full"] == pytest.approx(f)
    assert g["gap_closure"] == pytest.approx((s - z) / (f - z))
    assert g["gap_lo"] <= g["gap_closure"] <= g["gap_hi"]
    assert "missing runs: short" in gaps.loc[("s2", "mini_math_competition"), "note"]
    md = (run_dir / "report" / "gap_closure.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| s1 | mini_math |"))
    assert f"{100 * g['gap_closure']:.1f} [{100 * g['gap_lo']:.1f}, {100 * g['gap_hi']:.1f}]" in row
    assert "missing runs: zero" in gaps.loc[("s2", "mini_code"), "note"]
    names = {p.name for p in out["figures"]}
    for stem in ("headline", "gap_closure", "curves_math_s1", "curves_code_s1", "curves_math_s2"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in out["figures"])
    ex = out["examples"]
    assert set(ex["arm"]) == {"Base", "0%-Pre", "short-Pre", "100%-Pre"}
    assert (ex.groupby(["size", "benchmark", "arm"]).size() == 2).all()
    assert (run_dir / "report" / "examples.md").is_file()


def test_joint_bootstrap_gap_is_defined_only_for_a_positive_gap():
    rng = np.random.default_rng(1)
    same = rng.random(50)
    stats = report.joint_bootstrap_gap(same, rng.random(50), same + rng.normal(0, 0.01, 50), n_boot=300)
    assert not stats["defined"] and np.isnan(stats["gap_closure"]) and np.isnan(stats["gap_lo"])
    assert "not above 0" in stats["reason"]
    # 100%-Pre clearly *below* 0%-Pre: the ratio would be a positive number, but there is no gap to close
    zero, short, full = np.ones(40), np.r_[np.ones(30), np.zeros(10)], np.r_[np.ones(10), np.zeros(30)]
    stats = report.joint_bootstrap_gap(zero, short, full, n_boot=300)
    assert stats["denominator_hi"] < 0 and not stats["defined"] and np.isnan(stats["gap_closure"])
    zero, full = np.zeros(40), np.ones(40)
    short = np.r_[np.ones(10), np.zeros(30)]
    stats = report.joint_bootstrap_gap(zero, short, full, n_boot=300)
    assert stats["defined"] and stats["gap_closure"] == pytest.approx(0.25) and stats["reason"] == ""
    assert stats["gap_lo"] < 0.25 < stats["gap_hi"]


def test_paper_layout_competition_average_and_no_records(tmp_path):
    benches = ["math500", "aime24", "aime25", "hmmt_feb25", "hmmt_nov25", "lcb_v5", "lcb_v6"]
    rng, rows = np.random.default_rng(2), []
    for arm in ("Base", "0%-Pre", "0.1%-Pre", "100%-Pre"):
        for b in benches:
            domain = BENCHMARK_DOMAIN[b]
            for train_domain in ([""] if arm == "Base" else ["math", "code"]):
                v = rng.random()
                rows.append({"model": f"{arm}-{train_domain}", "arm": arm, "size": "1.5B",
                             "train_domain": train_domain, "step": 0 if arm == "Base" else 50000, "benchmark": b,
                             "domain": domain, "n": 10, "num_problems": 30, "num_ungradable": 0, "pass@1": v,
                             "pass@1_lo": v, "pass@1_hi": v, "pass@5": v, "pass@5_lo": v, "pass@5_hi": v,
                             "truncation_rate": 0, "path": "", "grader": get_spec(b).grader_label, "records": ""})
    results = pd.DataFrame(rows)
    (tmp_path / "eval").mkdir()
    results.to_csv(tmp_path / "eval" / "results.csv", index=False)
    out = report.write_report(run_dir=tmp_path, figures_dir=tmp_path / "figs", n_boot=100)
    t1, t2 = out["tables"]["table1"], out["tables"]["table2"]
    assert list(t1.columns.get_level_values(0).unique()) == ["MATH-500", "Comp. Math avg", "LCB v5", "LCB v6"]
    comps = ["aime24", "aime25", "hmmt_feb25", "hmmt_nov25"]
    r = results[(results.arm == "0.1%-Pre") & (results.train_domain == "math")].set_index("benchmark")
    assert t1.loc[("1.5B", "0.1%-Pre"), ("Comp. Math avg", "pass@1")] == pytest.approx(r.loc[comps, "pass@1"].mean())
    assert t2.loc[("1.5B", "0.1%-Pre"), ("HMMT Nov 25", "pass@1")] == pytest.approx(r.loc["hmmt_nov25", "pass@1"])
    code = results[(results.arm == "0.1%-Pre") & (results.train_domain == "code")].set_index("benchmark")
    assert t1.loc[("1.5B", "0.1%-Pre"), ("LCB v6", "pass@1")] == pytest.approx(code.loc["lcb_v6", "pass@1"])
    assert "mean of aime24, aime25, hmmt_feb25, hmmt_nov25" in out["captions"]["table1"]
    # without per-problem records there is no CI for the gap, so gap closure is undefined, with the reason
    gaps = out["tables"]["gap_closure"].set_index("benchmark")
    assert np.isnan(gaps.loc["aime24", "gap_closure"]) and "no per-problem records" in gaps.loc["aime24", "note"]
    claims = out["tables"]["claims"].set_index("claim")
    assert claims.loc[1, "verdict"] == "undetermined (no CI)"


def test_empty_or_absent_results_still_render(tmp_path):
    out = report.write_report(run_dir=tmp_path, figures_dir=tmp_path / "figs")
    assert out["figures"] == [] and out["manifest"].is_file()


def test_figures_an_earlier_run_wrote_are_not_left_as_this_runs(mini_run, tmp_path):
    """Only the files this study's previous report listed in its manifest are removed; a file of the same name
    pattern that no report of this run wrote (a committed figure, the user's own) stays."""
    (run_dir, _), figs = mini_run, tmp_path / "figs"
    first = report.write_report(run_dir=run_dir, figures_dir=figs, n_boot=50)
    assert first["figures"] and all(p.is_file() for p in first["figures"])
    for name in ("gap_closure_from_someone.png", "headline_old.pdf", "my_notes.png"):
        (figs / name).write_bytes(b"not ours")
    (run_dir / "eval" / "results.csv").unlink()
    out = report.write_report(run_dir=run_dir, figures_dir=figs)
    assert out["figures"] == []
    assert sorted(p.name for p in figs.iterdir()) == ["gap_closure_from_someone.png", "headline_old.pdf",
                                                      "my_notes.png"]


def test_a_study_without_a_run_deletes_nothing(tmp_path):
    figs = tmp_path / "figs"
    figs.mkdir()
    for name in ("headline.png", "headline.pdf", "sft_scale_math_L.png"):  # committed figures of a study not run here
        (figs / name).write_bytes(b"committed")
    report.write_report(run_dir=tmp_path / "never_ran", figures_dir=figs)
    assert sorted(p.name for p in figs.iterdir()) == ["headline.pdf", "headline.png", "sft_scale_math_L.png"]


def test_figure_files_are_byte_identical_when_redrawn(mini_run, tmp_path):
    run_dir, _ = mini_run
    a = {p.name: p.read_bytes() for p in report.write_report(run_dir=run_dir, figures_dir=tmp_path / "a",
                                                              n_boot=50)["figures"]}
    b = {p.name: p.read_bytes() for p in report.write_report(run_dir=run_dir, figures_dir=tmp_path / "b",
                                                              n_boot=50)["figures"]}
    assert a and a == b, "no timestamps in PNG/PDF metadata: a rerun must not dirty committed figures"


def test_bad_results_rows_are_named(tmp_path):
    bad = pd.DataFrame([{c: 0 for c in report.RESULT_COLUMNS} | {"arm": "50%-Pre", "model": "m", "size": "1"}])
    with pytest.raises(ValueError, match="missing column.*'records'.*rerun notebooks/03_evaluate"):
        report.check_results(bad.drop(columns=["records"]))
    with pytest.raises(ValueError, match="row 0: arm '50%-Pre'"):
        report.check_results(bad)
    with pytest.raises(ValueError, match="missing column"):
        report.check_results(bad.drop(columns=["pass@5"]))


# ---------------------------------------------------------------------------------------------- claims


@pytest.mark.parametrize("lo,hi,region,verdict", [
    (12, 30, {"above": 10}, "holds"),
    (-3, 8, {"above": 10}, "does not hold"),
    (5, 14, {"above": 10}, "undetermined (CI too wide)"),
    (10, 14, {"above": 10}, "undetermined (CI too wide)"),  # open bound: touching it is not inside
    (0.0, 0.0, {"above": 0, "below": 25}, "does not hold"),
    (26, 40, {"above": 0, "below": 25}, "does not hold"),
    (20, 30, {"above": 0, "below": 25}, "undetermined (CI too wide)"),
    (0.0, 4.9, {"below": 5}, "holds"),
    (np.nan, np.nan, {"below": 5}, "undetermined (no CI)"),
])
def test_case_verdict_rule(lo, hi, region, verdict):
    assert report.case_verdict(lo, hi, region) == verdict


def test_claim_verdict_combines_cases():
    assert report.claim_verdict(["holds", "holds"]) == "holds"
    assert report.claim_verdict(["holds", "undetermined (CI too wide)", "does not hold"]) == "does not hold"
    assert report.claim_verdict(["holds", "undetermined (gap closure undefined)"]) == \
        "undetermined (gap closure undefined)"
    assert report.claim_verdict([]) == "not checked (runs missing)"


def _claims_run(tmp_path, per_problem: dict, n_samples=4, size="mini", check=True):
    """One size, mini_math + mini_code; per_problem[(arm, train_domain, bench)] = correct samples per problem
    (a 4th key element, when given, is the checkpoint step; default 1)."""
    rows = []
    for key, counts in per_problem.items():
        (arm, domain, bench), step = key[:3], (key[3] if len(key) > 3 else 1)
        model = ("base" if arm == "Base" else f"{domain}_{arm}") + ("" if size == "mini" else f"_{size}")
        correct = np.array([[j < c for j in range(n_samples)] for c in counts])
        relpath = records_relpath(model, f"checkpoint-{step}", bench)
        _write_records(tmp_path / relpath, bench, correct)
        p1 = correct.mean(1).mean()
        rows.append({"model": model, "arm": arm, "size": size, "train_domain": domain, "step": step,
                     "benchmark": bench, "domain": BENCHMARK_DOMAIN[bench], "n": n_samples,
                     "num_problems": len(counts), "num_ungradable": 0, "pass@1": p1, "pass@1_lo": p1,
                     "pass@1_hi": p1, "pass@5": np.nan, "pass@5_lo": np.nan, "pass@5_hi": np.nan,
                     "truncation_rate": 0.0, "path": "", "grader": get_spec(bench).grader_label, "records": relpath})
    if not check:
        return pd.DataFrame(rows)
    results = report.check_results(pd.DataFrame(rows))
    return results, report.spec_from(results)


def _seed_replicates(tmp_path, leads: dict):
    """Sizes s0, s1 (training-seed replicates, group "S"): 0%-Pre solves 5 of 10 samples of each of 40 math
    problems; 100%-Pre solves 5 + leads[size] (its lead in samples, the same on every problem); Base none."""
    frames = [_claims_run(tmp_path, {("Base", "", "mini_math"): [0] * 40, ("0%-Pre", "math", "mini_math"): [5] * 40,
                                     ("100%-Pre", "math", "mini_math"): [5 + lead] * 40}, n_samples=10, size=size,
                          check=False)
              for size, lead in leads.items()]
    results = report.check_results(pd.concat(frames, ignore_index=True))
    spec = report.spec_from(results)
    spec.seed_groups = {"S": list(leads)}
    return results, spec


def test_a_seed_group_is_decided_by_its_pooled_case(tmp_path):
    # each seed alone is decisive (a paired difference of exactly +10 or -10 points), but the seeds disagree
    results, spec = _seed_replicates(tmp_path / "disagree", {"s0": 1, "s1": -1})
    summary, cases = report.check_claims(results, spec, tmp_path / "disagree", pd.DataFrame(), n_boot=400)
    lead = cases[cases["claim"] == 2].set_index("case")
    assert lead.loc["mini_math (s0)", "value"] == pytest.approx(10)
    assert lead.loc["mini_math (s1)", "value"] == pytest.approx(-10)
    assert lead.loc["mini_math (s0)", "verdict"] == "one seed of S (the pooled case decides)"
    pooled = lead.loc["mini_math (S, 2 seeds)"]
    assert (pooled["value"], pooled["lo"], pooled["hi"]) == pytest.approx((0, -10, 10))
    assert "s0 +10.0, s1 -10.0" in pooled["note"]
    verdicts = summary.set_index("claim")["verdict"]
    assert verdicts[2] == "undetermined (CI too wide)"  # not "does not hold", which seed s1 alone would say
    assert "S, 2 seeds" in summary.set_index("claim").loc[2, "this run (95% CI)"]
    assert verdicts[1] == "holds"  # 0%-Pre is 50 points above Base in both seeds

    scale = report.sft_scale(results, spec, tmp_path / "disagree", n_boot=400)
    pooled = scale[scale["size"] == "S (2 seeds)"].set_index("arm")
    assert pooled.loc["0%-Pre", "pass@1"] == pytest.approx(0.5)
    assert pooled.loc["100%-Pre", ["pass@1", "pass@1_lo", "pass@1_hi"]].tolist() == pytest.approx([0.5, 0.4, 0.6])
    gap = pooled.loc["100%-Pre − 0%-Pre"]
    assert (gap["gap"], gap["gap_lo"], gap["gap_hi"], gap["problems"]) == pytest.approx((0, -10, 10, 80))
    paths = _saved(report.plot_sft_scale(scale), tmp_path / "fig")
    assert "sft_scale_math_S_2_seeds.png" in {p.name for p in paths}
    assert report._main_scale_figure(paths, tmp_path) == "fig/sft_scale_math_S_2_seeds.png"

    results, spec = _seed_replicates(tmp_path / "agree", {"s0": 1, "s1": 1})
    summary, cases = report.check_claims(results, spec, tmp_path / "agree", pd.DataFrame(), n_boot=400)
    assert summary.set_index("claim").loc[2, "verdict"] == "holds"
    spec.seed_groups = {}  # without the group each seed decides on its own, as before
    summary, cases = report.check_claims(results, spec, tmp_path / "agree", pd.DataFrame(), n_boot=400)
    assert set(cases[cases["claim"] == 2]["case"]) == {"mini_math (s0)", "mini_math (s1)"}


def test_seed_groups_are_checked_against_the_study(tmp_path):
    from posttrain.params import ReportParams
    with pytest.raises(ValueError, match="needs >= 2 distinct sizes"):
        ReportParams(seed_groups={"L": ["L-seed0"]})
    with pytest.raises(ValueError, match="more than one group"):
        ReportParams(seed_groups={"A": ["a", "b"], "B": ["b", "c"]})


def test_claims_on_a_run_that_reproduces_the_paper(tmp_path):
    m = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4] * 4  # 40 problems of mixed difficulty; 4 samples each
    runs = {("Base", "", "mini_math"): [0] * 40, ("Base", "", "mini_code"): [0] * 40}
    for domain, bench, other in (("math", "mini_math", "mini_code"), ("code", "mini_code", "mini_math")):
        for arm in ("0%-Pre", "short-Pre", "100%-Pre"):
            runs[(arm, domain, other)] = [0] * 40
        runs[("0%-Pre", domain, bench)] = [min(c, 2) + 1 for c in m]  # far above Base (0)
        runs[("100%-Pre", domain, bench)] = [min(c, 2) + 2 - i % 2 for i, c in enumerate(m)]  # +25 on half: +12.5
        runs[("short-Pre", domain, bench)] = [min(c, 2) + 1 + (i % 4 == 0) for i, c in enumerate(m)]  # half of it
    results, spec = _claims_run(tmp_path, runs)
    gaps, _ = report.gap_closure(results, spec, tmp_path, n_boot=300)
    summary, cases = report.check_claims(results, spec, tmp_path, gaps, n_boot=300)
    assert list(summary["verdict"]) == ["holds", "holds", "holds", "holds", "not checked (runs missing)"]
    lead = cases[(cases["claim"] == 2) & (cases["case"] == "mini_math (mini)")].iloc[0]
    # paired: every problem's difference is 0 or 25 points, so the CI is the resampled mean of those
    assert lead["value"] == pytest.approx(12.5) and 0 < lead["lo"] < 12.5 < lead["hi"] < 25
    closure = cases[(cases["claim"] == 3) & (cases["case"] == "mini_code (mini)")].iloc[0]
    assert closure["value"] == pytest.approx(50.0)
    assert "12.5 [" in summary.loc[1, "this run (95% CI)"] and "Table 1" in summary.loc[1, "source"]


def test_paired_difference_is_exact_when_every_problem_moves_alike(tmp_path):
    m = [0, 1, 2, 3] * 10  # hard and easy problems: unpaired CIs of each arm are wide
    runs = {("Base", "", "mini_math"): m, ("0%-Pre", "math", "mini_math"): [c + 1 for c in m]}
    results, spec = _claims_run(tmp_path, runs, n_samples=5)
    summary, cases = report.check_claims(results, spec, tmp_path, pd.DataFrame(), n_boot=200)
    (case,) = cases[cases["claim"] == 1].itertuples()
    assert case.value == pytest.approx(20.0) and case.lo == pytest.approx(20.0) and case.hi == pytest.approx(20.0)
    assert case.verdict == "holds"
    assert summary.set_index("claim").loc[2, "verdict"] == "not checked (runs missing)"


def test_claims_where_the_gap_is_negative_are_undetermined_with_the_reason(tmp_path):
    m = [1, 2, 3] * 10
    runs = {("0%-Pre", "math", "mini_math"): [c + 1 for c in m], ("short-Pre", "math", "mini_math"): m,
            ("100%-Pre", "math", "mini_math"): [c - 1 for c in m], ("Base", "", "mini_math"): [0] * 30}
    results, spec = _claims_run(tmp_path, runs)
    gaps, notes = report.gap_closure(results, spec, tmp_path, n_boot=200)
    summary, cases = report.check_claims(results, spec, tmp_path, gaps, n_boot=200)
    verdicts = summary.set_index("claim")["verdict"]
    assert verdicts[2] == "does not hold"  # 100%-Pre is 25 points *below* 0%-Pre
    assert verdicts[3] == "undetermined (gap closure undefined)"
    assert "not above 0" in cases[cases["claim"] == 3]["note"].iloc[0] and "not above 0" in notes[0]


def test_claims_file_is_data_with_sources(tmp_path):
    claims = report.load_claims()
    assert [c["id"] for c in claims] == list(report._CLAIM_CASES)
    assert all(c["source"] and c["reference"] for c in claims)
    bad = tmp_path / "claims.yaml"
    bad.write_text("claims:\n  - id: scratch_sft_beats_base\n    claim: x\n")
    with pytest.raises(ValueError, match="claim 0 \\(scratch_sft_beats_base\\) lacks"):
        report.load_claims(bad)


def test_claims_table_leads_the_report_and_figures_share_arm_colours(mini_run, tmp_path):
    run_dir, _ = mini_run
    out = report.write_report(run_dir=run_dir, figures_dir=tmp_path / "figs", n_boot=100)
    md = (run_dir / "report" / "claims.md").read_text()
    assert md.startswith("| claim | paper |") and "Rule: A case holds" in md and "74.4 vs 2.4" in md
    assert len(out["tables"]["claims"]) == 5
    # the synthetic run (Base 10%, 0%-Pre 20% × step) fails the instruments and floor gates: its claims say so
    # (claim 4, no cross-domain transfer, needs the floor too: with nothing learned it would hold trivially)
    assert out["tables"]["claims"]["verdict"].str.startswith("cannot decide (gate failed").sum() == 5
    assert (run_dir / "report" / "gates.md").is_file() and (run_dir / "report" / "sft_scale.md").is_file()
    assert {p.name for p in out["figures"]} >= {"sft_scale_math_s1.png", "sft_scale_code_s2.png"}
    manifest = (run_dir / "report" / "manifest.json").read_text()
    assert '"claims_table": "report/claims.md"' in manifest and str(tmp_path) not in manifest.replace(
        str(tmp_path / "figs"), "")
    assert report.ARM_COLORS["short-Pre"] == report.ARM_COLORS["0.1%-Pre"]
    assert len({report.ARM_COLORS[a] for a in ("Base", "0%-Pre", "short-Pre", "100%-Pre")}) == 4
    bars = report.headline_bars(report.load_results(run_dir / "eval" / "results.csv"),
                                report.spec_from(report.load_results(run_dir / "eval" / "results.csv")))
    assert (bars["lo"] <= bars["pass@1"]).all() and (bars["pass@1"] <= bars["hi"]).all()


def test_examples_overview_puts_arms_side_by_side():
    examples = pd.DataFrame([{"size": "mini", "benchmark": "mini_math", "problem_id": "p1", "arm": arm, "verdict": v}
                             for arm, v in (("100%-Pre", "correct"), ("Base", "wrong (truncated)"))])
    table = report.examples_overview(examples)
    assert list(table.columns) == ["Base", "100%-Pre"], "arms in the paper's order"
    assert table.loc[("mini", "mini_math", "p1"), "100%-Pre"] == "correct"
    assert report.examples_overview(pd.DataFrame()).empty


def _scale_run(tmp_path, zero_last=3, base=0):
    """0%-Pre and 100%-Pre math at steps 10 and 40: 100%-Pre solves every problem at both, 0%-Pre none at step 10
    and `zero_last` of 4 samples at step 40."""
    runs = {("Base", "", "mini_math"): [base] * 40}
    for step, zero in ((10, 0), (40, zero_last)):
        runs[("0%-Pre", "math", "mini_math", step)] = [zero] * 40
        runs[("100%-Pre", "math", "mini_math", step)] = [4] * 40
    return _claims_run(tmp_path, runs)


def test_sft_scale_points_and_paired_gaps(tmp_path):
    results, spec = _scale_run(tmp_path)
    spec.tokens_per_step = {"math_0%-Pre": 1000, "math_100%-Pre": 1000}
    scale = report.sft_scale(results, spec, tmp_path, n_boot=200)
    gaps = scale[scale["arm"] == "100%-Pre − 0%-Pre"].set_index("step")
    assert list(gaps.index) == [10, 40] and list(gaps["sft_tokens"]) == [10_000, 40_000]
    assert gaps.loc[10, "gap"] == pytest.approx(100) and gaps.loc[40, "gap"] == pytest.approx(25)
    assert gaps.loc[40, "gap_lo"] == pytest.approx(25) and gaps.loc[40, "problems"] == 40
    points = scale[scale["arm"] == "0%-Pre"]
    assert list(points["pass@1"]) == [0.0, 0.75]
    paths = _saved(report.plot_sft_scale(scale), tmp_path / "fig")
    assert {p.name for p in paths} == {"sft_scale_math_mini.png", "sft_scale_math_mini.pdf"}


def test_gap_narrows_claim_and_the_learning_floor_gate(tmp_path):
    results, spec = _scale_run(tmp_path)
    gates = check_gates(results, spec, tmp_path)
    assert dict(zip(gates["gate"], gates["passed"])) == {"learning floor": True, "off the ceiling": False,
                                                          "instruments": True}
    summary, cases = report.check_claims(results, spec, tmp_path, pd.DataFrame(), n_boot=200, gates=gates)
    narrows = cases[cases["claim"] == 5].iloc[0]
    assert narrows["value"] == pytest.approx(75) and narrows["verdict"] == "holds"
    # 100%-Pre is at 100% from the first checkpoint: no room to narrow, whatever the CI says
    assert summary.set_index("claim").loc[5, "verdict"] == "cannot decide (gate failed: off the ceiling)"
    assert summary.set_index("claim").loc[1, "verdict"] == "holds"  # 0%-Pre at 75 vs Base 0; its gates passed

    results, spec = _scale_run(tmp_path / "low", zero_last=1)  # 0%-Pre ends at 25%: below the floor
    gates = check_gates(results, spec, tmp_path / "low")
    summary, _ = report.check_claims(results, spec, tmp_path / "low", pd.DataFrame(), n_boot=200, gates=gates)
    assert summary.set_index("claim").loc[1, "verdict"] == "cannot decide (gate failed: learning floor)"
    assert summary.set_index("claim").loc[4, "verdict"] == "not checked (runs missing)"


def test_storage_gate_reads_the_fill_in_result(tmp_path):
    import json
    results, spec = _scale_run(tmp_path)
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "eval" / "fill_in.json").write_text(json.dumps({"facts": 8, "all": 0.75, "seen": 1.0,
                                                                 "held_out": 0.5}))
    row = check_gates(results, spec, tmp_path).set_index("gate").loc["storage"]
    assert row["value"] == 0.5 and not row["passed"] and row["needed by"] == "the knowledge probe"


def test_format_table_leaves_out_a_pass5_column_with_no_value():
    cols = pd.MultiIndex.from_tuples([("mini_math", "pass@1"), ("mini_math", "pass@5"), ("mini_code", "pass@5")])
    table = pd.DataFrame([[0.5, np.nan, 0.25], [0.1, np.nan, np.nan]], columns=cols,
                         index=pd.Index(["0%-Pre", "Base"], name="arm"))
    out = report.format_table(table)
    assert list(out.columns) == ["arm", "mini_math pass@1", "mini_code pass@5"]
    assert list(out["mini_code pass@5"]) == ["25.0", "—"]


def test_transfer_sanity_reads_the_loss_at_the_end_of_warmup(tmp_path):
    """At step 1 a pretrained model can sit above a random init (it never saw the chat markers); the gate reads
    the first logged loss at or after the warmup."""
    import json
    from types import SimpleNamespace
    results, spec = _scale_run(tmp_path)
    runs = []
    for arm, losses in (("0%-Pre", [6.9, 4.0, 1.5]), ("100%-Pre", [7.4, 3.0, 1.0])):
        out = tmp_path / arm
        out.mkdir()
        (out / "loss.jsonl").write_text("".join(json.dumps({"step": s, "loss": v}) + "\n"
                                                for s, v in zip((1, 10, 20), losses)))
        runs.append(SimpleNamespace(arm=arm, domain="math", size="mini", output_dir=str(out),
                                    training=SimpleNamespace(warmup_steps=10)))
    row = check_gates(results, spec, tmp_path, SimpleNamespace(sft=runs)).set_index("gate").loc[
        "transfer sanity"]
    assert row["passed"] and row["value"] == "3 vs 4" and "step 10" in row["what"]


def test_gap_closure_pooled_over_seeds():
    zero, full = np.full(30, 0.2), np.full(30, 0.6)
    same = report.joint_bootstrap_gap_over_seeds([[zero, (zero + full) / 2, full]] * 2, n_boot=200)
    assert same["defined"] and (same["gap_closure"], same["gap_lo"], same["gap_hi"]) == pytest.approx((0.5,) * 3)
    # one seed has no gap at all: the pooled gap's CI reaches 0, so closure is undefined, with the reason
    flat = report.joint_bootstrap_gap_over_seeds([[zero, zero, full], [zero, zero, zero]], n_boot=200)
    assert not flat["defined"] and np.isnan(flat["gap_closure"]) and "not above 0" in flat["reason"]


def test_a_set_no_arm_solves_decides_no_difference(tmp_path):
    runs = {("Base", "", "mini_math"): [0] * 30, ("0%-Pre", "math", "mini_math"): [0] * 30,
            ("100%-Pre", "math", "mini_math"): [0] * 30}
    results, spec = _claims_run(tmp_path, runs)
    summary, cases = report.check_claims(results, spec, tmp_path, pd.DataFrame(), n_boot=100)
    verdicts = summary.set_index("claim")["verdict"]
    assert verdicts[1] == "undetermined (0%-Pre and Base at 0 on every problem)"
    assert verdicts[2] == "undetermined (100%-Pre and 0%-Pre at 0 on every problem)"


def test_cells_the_study_never_planned_are_not_called_missing(mini_run):
    _, results = mini_run
    spec = report.spec_from(results)
    spec.plan_known = True  # as with a study's params: its runs are the plan (s2 never had a 0%-Pre code run)
    _, notes = report.build_tables(results, spec)
    table1 = notes["table1"]
    assert not any("0%-Pre s2 code-SFT" in n for n in table1)
    assert "missing: short-Pre s2 math-SFT on mini_math_competition" in table1  # planned, result absent
    assert any(n.startswith("— also marks 1 arm × size × domain") for n in table1)


def _saved(figures: dict, folder) -> list:
    return [p for stem, fig in figures.items() for p in report.save_figure(fig, folder, stem)]


def test_a_run_short_of_its_planned_steps_is_flagged_and_decides_nothing(mini_run):
    """A cluster run still training (or stopped) is flagged "step k of N" in the tables and its cases do not decide
    a claim; finished sizes still do."""
    run_dir, results = mini_run
    results = report.check_results(results)
    spec = report.spec_from(results)
    planned = {m: 20 for m in results.loc[results["arm"] != "Base", "model"].unique()}
    spec.planned_steps = {**planned, **{m: 40 for m in planned if m.endswith("_s2")}}  # s2's runs stopped at 20/40
    _, notes = report.build_tables(results, spec)
    assert any("at step 20 of 40" in n for n in notes["table1"])
    summary, cases = report.check_claims(results, spec, run_dir, pd.DataFrame(), n_boot=100)
    s2 = cases[cases["case"].str.contains(r"\(s2\)")]
    assert len(s2) and s2["verdict"].str.startswith("unfinished run").all()
    s1 = cases[cases["case"].str.contains(r"\(s1\)")]
    assert len(s1) and not s1["verdict"].str.startswith("unfinished run").any()
    spec.planned_steps = {m: 40 for m in planned}  # every run unfinished: no claim is decided
    summary, _ = report.check_claims(results, spec, run_dir, pd.DataFrame(), n_boot=100)
    checked = summary[summary["verdict"] != "not checked (runs missing)"]  # claim 3: no gap-closure table given
    assert len(checked) == 4 and checked["verdict"].str.startswith("cannot decide (its runs are unfinished").all()


def test_problem_pairs_count_each_problem_once(mini_run):
    run_dir, results = mini_run
    results = report.check_results(results)
    spec = report.spec_from(results)
    arrays, counts = report.stats.problem_pairs(results, spec, run_dir)
    assert set(arrays) == {("s1", "mini_math"), ("s1", "mini_code"), ("s2", "mini_math")}  # s2 has no 0%-Pre code
    for row in counts.itertuples():
        a, b = arrays[(row.size, row.benchmark)]
        assert row.problems == len(a) == len(b) == N_PROBLEMS
        assert row._4 + row._5 + row.tied == row.problems and row._4 == int((a > b).sum())
    assert len(report.figures.plot_problem_pairs(arrays).axes) == 3
