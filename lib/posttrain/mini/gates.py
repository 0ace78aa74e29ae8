"""The miniature's gates: checks made before any comparison is read (docs/miniature.md §8). A failed gate turns the
claims that need it (paper_claims.yaml `needs_gates`) into "cannot decide". Paper-scale studies have none."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from posttrain.mini.probes import FILL_IN_RESULT
from posttrain.params import GateParams
from posttrain.report.claims import GATE_COLUMNS, load_claims
from posttrain.report.select import ReportSpec, scores_at
from posttrain.runs import read_loss_log


def check_gates(results: pd.DataFrame, spec: ReportSpec, run_dir, study=None, claims: list[dict] | None = None,
                thresholds: GateParams | None = None) -> pd.DataFrame:
    """The miniature's gates, one row each per size: learning floor (0%-Pre's last math checkpoint >= 30%), off
    the ceiling (100%-Pre's first <= 95%), instruments (Base <= 5% on the in-domain math set), transfer sanity
    (100%-Pre's SFT loss at the end of warmup not above 0%-Pre's), storage (Base's fill-in accuracy >= 80% on seen and
    held-out towns; eval/fill_in.json from notebook 03). Empty for paper-scale studies."""
    if spec.layout != "miniature" or "math" not in spec.domains:
        return pd.DataFrame(columns=GATE_COLUMNS)
    t = thresholds or getattr(getattr(study, "report", None), "gates", None) or GateParams()
    needs = {number: c["needs_gates"] for number, c in enumerate(claims or load_claims(), 1)}  # claim numbers
    bench, rows = spec.domains["math"][0], []

    def add(gate, size, what, value, threshold, passed):
        needed = [n for n, gates in needs.items() if gate in gates]
        label = (("claim " if len(needed) == 1 else "claims ") + ", ".join(map(str, needed)) if needed else
                 {"storage": "the knowledge probe"}.get(gate, "no claim (a warning)"))
        rows.append({"gate": gate, "size": size, "what": what, "value": value, "threshold": threshold,
                     "passed": passed, "needed by": label})

    for size in spec.sizes:
        zero, full = (scores_at(results, a, size, "math", bench) for a in ("0%-Pre", "100%-Pre"))
        base = scores_at(results, "Base", size, "math", bench)
        if len(zero):
            v = zero["pass@1"].iloc[-1]
            add("learning floor", size, f"0%-Pre pass@1 on {bench}, step {zero['step'].iloc[-1]}", v, f">= {t.learning_floor:.0%}",
                bool(v >= t.learning_floor))
        if len(full):
            v = full["pass@1"].iloc[0]
            add("off the ceiling", size, f"100%-Pre pass@1 on {bench}, step {full['step'].iloc[0]}", v,
                f"<= {t.off_the_ceiling:.0%}", bool(v <= t.off_the_ceiling))
        if len(base):
            v = base["pass@1"].iloc[0]
            add("instruments", size, f"Base pass@1 on {bench}", v, f"<= {t.instruments:.0%}", bool(v <= t.instruments))
        if study is not None:
            # The first logged step after warmup: at step 1 a pretrained model that never saw the chat markers
            # can sit above a random init's ln(vocab) (pilot world 1002: 7.44 vs 6.96), which says nothing about
            # transfer.
            first = {r.arm: [x for x in read_loss_log(r.output_dir) if x["step"] >= r.training.warmup_steps][:1]
                     for r in study.sft if r.domain == "math" and r.size == size and r.arm in ("0%-Pre", "100%-Pre")}
            if all(first.get(a) for a in ("0%-Pre", "100%-Pre")):
                f, z = first["100%-Pre"][0], first["0%-Pre"][0]
                add("transfer sanity", size, f"math SFT loss at step {f['step']} (end of warmup), 100%-Pre vs "
                    "0%-Pre", f"{f['loss']:.3g} vs {z['loss']:.3g}", "not above", bool(f["loss"] <= z["loss"]))
    fill_in = Path(run_dir) / "eval" / FILL_IN_RESULT
    if fill_in.is_file():
        f = json.loads(fill_in.read_text())
        v = min(x for x in (f.get("seen"), f.get("held_out")) if x is not None)
        add("storage", "—", f"Base fill-in accuracy, {f['facts']} facts (seen towns {100 * f['seen']:.1f}%, held-out "
            f"{100 * f['held_out']:.1f}%)",
            v, f">= {t.storage:.0%}", bool(v >= t.storage))
    return pd.DataFrame(rows, columns=GATE_COLUMNS)
