"""posttrain.report on a synthetic study (results table + generation records written to tmp_path).

Run: PYTHONPATH=lib .venv/bin/python -m pytest tests/test_report.py -x -q
"""
import json

import numpy as np
import pandas as pd
import pytest

from posttrain import report

MINI_BENCHES = {"math": ["mini_math", "mini_math_competition"], "code": ["mini_code"]}
ARM_SKILL = {"Base": 0.1, "0%-Pre": 0.2, "short-Pre": 0.45, "100%-Pre": 0.8}
N_SAMPLES, N_PROBLEMS = 5, 12


def _write_model(run_dir, rows, rng, model, arm, size, train_domain, step, benchmarks, with_records=True):
    for bench in benchmarks:
        domain = report.BENCHMARK_DOMAIN[bench]
        skill = ARM_SKILL[arm] * (1.0 if domain == train_domain or arm == "Base" else 0.3) * (0.5 + step / 40)
        correct = rng.random((N_PROBLEMS, N_SAMPLES)) < min(skill, 1.0)
        path = run_dir / "eval" / model / f"checkpoint-{step}" / f"{bench}.jsonl"
        if with_records:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as f:
                for i, c in enumerate(correct):
                    f.write(json.dumps({
                        "problem_id": f"{bench}-{i}", "benchmark": bench, "prompt": f"Problem {i} of {bench}?",
                        "responses": [f"reasoning ... answer {j}" for j in range(N_SAMPLES)],
                        "finish_reasons": ["stop"] * N_SAMPLES, "num_tokens": [10] * N_SAMPLES,
                        "correct": c.tolist(), "statuses": ["ok"] * N_SAMPLES, "params_hash": "h"}) + "\n")
        p1 = correct.mean(1)
        rows.append({"model": model, "arm": arm, "size": size, "train_domain": train_domain, "step": step,
                     "benchmark": bench, "domain": domain, "n": N_SAMPLES, "num_problems": N_PROBLEMS,
                     "num_ungradable": 0, "pass@1": p1.mean(), "pass@1_lo": max(p1.mean() - 0.1, 0),
                     "pass@1_hi": min(p1.mean() + 0.1, 1), "pass@5": correct.any(1).mean(),
                     "pass@5_lo": 0.0, "pass@5_hi": 1.0, "truncation_rate": 0.0, "path": str(path)})


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
    assert list(t1.columns.get_level_values(0).unique()) == ["MATH-500", "Competition avg", "LCB"]
    for arm in ("0%-Pre", "short-Pre", "100%-Pre"):
        # in-domain final checkpoint (step 20, not 10)
        assert t1.loc[("s1", arm), ("MATH-500", "pass@1")] == pytest.approx(_value(results, arm, "s1", "math",
                                                                                   "mini_math"))
        assert t1.loc[("s1", arm), ("LCB", "pass@5")] == pytest.approx(_value(results, arm, "s1", "code",
                                                                              "mini_code", "pass@5"))
    assert t1.loc[("s1", "Base"), ("LCB", "pass@1")] == pytest.approx(_value(results, "Base", "s1", "", "mini_code"))
    # Table 3: a math model on code, next to Base
    t3 = out["tables"]["table3_math_sft_on_code"]
    assert t3.loc[("s1", "100%-Pre"), ("LCB", "pass@1")] == pytest.approx(
        _value(results, "100%-Pre", "s1", "math", "mini_code"))
    # missing runs: gaps with notes, not errors
    assert np.isnan(t1.loc[("s2", "0%-Pre"), ("LCB", "pass@1")])
    assert np.isnan(t1.loc[("s2", "short-Pre"), ("Competition avg", "pass@1")])
    md = (run_dir / "report" / "table1.md").read_text()
    assert "—" in md and "0%-Pre s2 code-SFT on mini_code" in md and "short-Pre s2 math-SFT on mini_math_competition" in md
    assert "\\begin{tabular}" in (run_dir / "report" / "table1.tex").read_text()
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
    assert "missing runs: zero" in gaps.loc[("s2", "mini_code"), "note"]
    names = {p.name for p in out["figures"]}
    for stem in ("headline", "gap_closure", "curves_math_s1", "curves_code_s1", "curves_math_s2"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert all(p.stat().st_size > 1000 for p in out["figures"])
    ex = out["examples"]
    assert set(ex["arm"]) == {"Base", "0%-Pre", "short-Pre", "100%-Pre"}
    assert (ex.groupby(["size", "benchmark", "arm"]).size() == 2).all()
    assert (run_dir / "report" / "examples.md").is_file()


def test_joint_bootstrap_undefined_when_denominator_ci_has_zero():
    rng = np.random.default_rng(1)
    same = rng.random(50)
    stats = report.joint_bootstrap_gap(same, rng.random(50), same + rng.normal(0, 0.01, 50), n_boot=300)
    assert not stats["defined"] and np.isnan(stats["gap_closure"]) and np.isnan(stats["gap_lo"])
    zero, full = np.zeros(40), np.ones(40)
    short = np.r_[np.ones(10), np.zeros(30)]
    stats = report.joint_bootstrap_gap(zero, short, full, n_boot=300)
    assert stats["defined"] and stats["gap_closure"] == pytest.approx(0.25)
    assert stats["gap_lo"] < 0.25 < stats["gap_hi"]


def test_paper_layout_competition_average_and_no_records(tmp_path):
    benches = ["math500", "aime24", "aime25", "hmmt_feb25", "hmmt_nov25", "lcb_v5", "lcb_v6"]
    rng, rows = np.random.default_rng(2), []
    for arm in ("Base", "0%-Pre", "0.1%-Pre", "100%-Pre"):
        for b in benches:
            domain = report.BENCHMARK_DOMAIN[b]
            for train_domain in ([""] if arm == "Base" else ["math", "code"]):
                v = rng.random()
                rows.append({"model": f"{arm}-{train_domain}", "arm": arm, "size": "1.5B",
                             "train_domain": train_domain, "step": 0 if arm == "Base" else 50000, "benchmark": b,
                             "domain": domain, "n": 10, "num_problems": 30, "num_ungradable": 0, "pass@1": v,
                             "pass@1_lo": v, "pass@1_hi": v, "pass@5": v, "pass@5_lo": v, "pass@5_hi": v,
                             "truncation_rate": 0, "path": ""})
    results = pd.DataFrame(rows)
    (tmp_path / "eval").mkdir()
    results.to_csv(tmp_path / "eval" / "results.csv", index=False)
    out = report.write_report(run_dir=tmp_path, figures_dir=tmp_path / "figs", n_boot=100)
    t1, t2 = out["tables"]["table1"], out["tables"]["table2"]
    assert list(t1.columns.get_level_values(0).unique()) == ["MATH-500", "Competition avg", "LCB v5", "LCB v6"]
    comps = ["aime24", "aime25", "hmmt_feb25", "hmmt_nov25"]
    r = results[(results.arm == "0.1%-Pre") & (results.train_domain == "math")].set_index("benchmark")
    assert t1.loc[("1.5B", "0.1%-Pre"), ("Competition avg", "pass@1")] == pytest.approx(r.loc[comps, "pass@1"].mean())
    assert t2.loc[("1.5B", "0.1%-Pre"), ("HMMT Nov25", "pass@1")] == pytest.approx(r.loc["hmmt_nov25", "pass@1"])
    code = results[(results.arm == "0.1%-Pre") & (results.train_domain == "code")].set_index("benchmark")
    assert t1.loc[("1.5B", "0.1%-Pre"), ("LCB v6", "pass@1")] == pytest.approx(code.loc["lcb_v6", "pass@1"])
    gaps = out["tables"]["gap_closure"].set_index("benchmark")
    z, s, f = (results[(results.arm == a) & (results.train_domain == "math") & (results.benchmark == "aime24")]
               ["pass@1"].iloc[0] for a in ("0%-Pre", "0.1%-Pre", "100%-Pre"))
    assert gaps.loc["aime24", "gap_closure"] == pytest.approx((s - z) / (f - z))
    assert "no records" in gaps.loc["aime24", "note"]


def test_empty_or_absent_results_still_render(tmp_path):
    out = report.write_report(run_dir=tmp_path, figures_dir=tmp_path / "figs")
    assert out["figures"] == [] and out["manifest"].is_file()


def test_bad_results_rows_are_named(tmp_path):
    bad = pd.DataFrame([{c: 0 for c in report.RESULT_COLUMNS} | {"arm": "50%-Pre", "model": "m", "size": "1"}])
    with pytest.raises(ValueError, match="row 0: arm '50%-Pre'"):
        report.check_results(bad)
    with pytest.raises(ValueError, match="missing column"):
        report.check_results(bad.drop(columns=["pass@5"]))
