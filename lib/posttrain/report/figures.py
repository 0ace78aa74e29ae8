"""The report's figures, one style and one colour per arm: Table 1's bars, curves over training, SFT scale, gap
closure. Each plot_* returns its matplotlib Figure (a notebook shows it inline); save_figure writes PNG + PDF with
no timestamps in their metadata, so a rerun rewrites identical files."""
from __future__ import annotations

import re

import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from posttrain.eval_sets import PROBES
from posttrain.figstyle import figure_style, new_figure, save_figure  # noqa: F401  (save_figure: re-exported)
from posttrain.records import ARM_ORDER
from posttrain.report.select import ARM_LABELS, ReportSpec, final_checkpoints, is_pooled
from posttrain.report.tables import short_number

_PALETTE = sns.color_palette("colorblind")


ARM_COLORS = {"Base": _PALETTE[7], "0%-Pre": _PALETTE[1], "0.1%-Pre": _PALETTE[2], "short-Pre": _PALETTE[2],
              "100%-Pre": _PALETTE[0]}


def plot_headline(bars: pd.DataFrame):
    """Grouped bars of Table 1's pass@1 with 95% CI error bars: a panel per size, a group per column, a bar per arm."""
    sizes, cols = list(dict.fromkeys(bars["size"])), list(dict.fromkeys(bars["column"]))
    arms = [a for a in ARM_ORDER if a in set(bars["arm"])]
    width = 0.8 / max(len(arms), 1)
    fig, axes = new_figure(1, len(sizes), panel=(1.2 + 1.6 * len(cols), 3.6))
    with figure_style():
        for ax, size in zip(axes[0], sizes):
            for i, arm in enumerate(arms):
                sub = bars[(bars["size"] == size) & (bars["arm"] == arm)].set_index("column").reindex(cols)
                y = 100 * sub["pass@1"].to_numpy(float)
                err = np.vstack([y - 100 * sub["lo"].to_numpy(float), 100 * sub["hi"].to_numpy(float) - y])
                x = np.arange(len(cols)) + i * width
                ax.bar(x, y, width, label=ARM_LABELS[arm], color=ARM_COLORS[arm])
                has_ci = np.isfinite(err).all(axis=0) & np.isfinite(y)  # an average column has no CI
                if has_ci.any():
                    ax.errorbar(x[has_ci], y[has_ci], yerr=err[:, has_ci], fmt="none", ecolor="0.2", elinewidth=1,
                                capsize=3)
            ax.set_xticks(np.arange(len(cols)) + width * (len(arms) - 1) / 2, cols, rotation=10)
            ax.set_title(f"size {size}")
            ax.set_ylabel("pass@1 (%), 95% CI")
            top = np.nanmax(100 * bars["hi"].fillna(bars["pass@1"]).to_numpy(float), initial=0.0)
            ax.set_ylim(0, max(10.0, 1.15 * top))  # all-zero runs (smoke) still get a readable axis
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def plot_curves(results: pd.DataFrame, spec: ReportSpec) -> tuple[dict, list[str]]:
    """pass@1 over training steps: a figure per domain × size ({file stem: Figure}), a panel per benchmark, a line
    per arm (CI band); and notes naming the curves that have no evaluated checkpoints."""
    figs, notes = {}, []
    sft = results[results["arm"] != "Base"]
    base = final_checkpoints(results[results["arm"] == "Base"])
    for domain, benches in spec.domains.items():
        for size in spec.sizes:
            rows = sft[(sft["train_domain"] == domain) & (sft["size"] == size) & sft["benchmark"].isin(benches)]
            if rows.empty:
                notes.append(f"no training curve for {domain}-SFT size {size}: no evaluated checkpoints")
                continue
            fig, axes = new_figure(1, len(benches), panel=(3.4, 3.0))
            with figure_style():
                for ax, bench in zip(axes[0], benches):
                    _curve_panel(ax, rows[rows["benchmark"] == bench], base[(base["size"] == size) &
                                                                            (base["benchmark"] == bench)], spec)
                    ax.set_title(bench)
                axes[0][0].set_ylabel("pass@1 (%)")
                axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
                fig.suptitle(f"{domain}-SFT, size {size} (95% CI)")
            figs[f"curves_{domain}_{file_stem(size)}"] = fig
    return figs, notes


def _curve_panel(ax, rows: pd.DataFrame, base: pd.DataFrame, spec: ReportSpec) -> None:
    arms = [a for a in spec.arms if a != "Base" and a in set(rows["arm"])]
    steps = sorted(set(rows["step"]))
    dodge = 0.03 * max(steps[-1] - steps[0], 1) if steps else 0  # arms at one step would hide each other's bars
    for i, arm in enumerate(arms):
        line = rows[rows["arm"] == arm].sort_values("step")
        x = line["step"].to_numpy(float) + (i - (len(arms) - 1) / 2) * dodge
        y = 100 * line["pass@1"].to_numpy(float)
        lo, hi = 100 * line["pass@1_lo"].to_numpy(float), 100 * line["pass@1_hi"].to_numpy(float)
        ax.plot(x, y, marker="o", label=ARM_LABELS[arm], color=ARM_COLORS[arm])
        if len(line) > 1:
            ax.fill_between(x, lo, hi, alpha=0.2, color=ARM_COLORS[arm])
        else:  # one checkpoint: a band would be invisible
            ax.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="none", ecolor=ARM_COLORS[arm], capsize=3)
    if len(base):
        ax.axhline(100 * base["pass@1"].iloc[0], color=ARM_COLORS["Base"], linestyle="--", label=ARM_LABELS["Base"])
    if len(steps) <= 8:
        ax.set_xticks(steps)
    ax.set_xlabel("SFT step")
    ax.set_ylim(0, max(10.0, 1.1 * np.nanmax(100 * rows["pass@1_hi"].to_numpy(float), initial=0.0)))  # pass@1 in %


def plot_gap_closure(gaps: pd.DataFrame):
    """Gap closure per benchmark with its CI, in the short arm's colour, a marker per size; undefined ones are left
    out (the table says why)."""
    benches = list(dict.fromkeys(gaps["benchmark"]))
    color = ARM_COLORS[gaps["short_arm"].iloc[0]]
    fig, axes = new_figure(1, 1, panel=(1.2 * max(len(benches), 3) + 2, 3.3))
    ax = axes[0][0]
    with figure_style():
        for i, (size, sub) in enumerate(gaps.groupby("size", sort=False)):
            x = np.array([benches.index(b) for b in sub["benchmark"]]) + 0.1 * i
            y = 100 * sub["gap_closure"].astype(float)
            err = np.vstack([y - 100 * sub["gap_lo"].astype(float), 100 * sub["gap_hi"].astype(float) - y])
            ax.errorbar(x, y, yerr=np.nan_to_num(err), fmt="osD^v"[i % 5], capsize=3, color=color,
                        label=f"{ARM_LABELS[gaps['short_arm'].iloc[0]]}, size {size}")
        ax.axhline(0, color="gray", lw=0.8)
        ax.axhline(100, color="gray", lw=0.8, linestyle="--")
        ax.set_xticks(range(len(benches)), benches, rotation=10)
        ax.set_ylabel("gap closed (%), 95% CI")
        ax.legend()
    return fig


def plot_sft_scale(scale: pd.DataFrame) -> dict:
    """Per size × domain: pass@1 against SFT tokens (log x), a line per arm with its CI band, one column per
    benchmark; beneath, the paired gap 100%-Pre − 0%-Pre with its CI."""
    figs = {}
    for (size, domain), part in scale.groupby(["size", "domain"], sort=False):
        benches = list(dict.fromkeys(part["benchmark"]))
        fig, axes = new_figure(2, len(benches), panel=(3.6, 2.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        with figure_style():
            for col, bench in enumerate(benches):
                top, bottom, rows = axes[0][col], axes[1][col], part[part["benchmark"] == bench]
                for arm in [a for a in ARM_ORDER if a in set(rows["arm"])]:
                    line = rows[rows["arm"] == arm]
                    x = line["sft_tokens"].to_numpy(float)
                    y, lo, hi = (100 * line[c].to_numpy(float) for c in ("pass@1", "pass@1_lo", "pass@1_hi"))
                    top.plot(x, y, marker="o", color=ARM_COLORS[arm], label=ARM_LABELS[arm])
                    if len(line) > 1:
                        top.fill_between(x, lo, hi, color=ARM_COLORS[arm], alpha=0.15)
                    else:  # one checkpoint: a band would be invisible
                        top.errorbar(x, y, yerr=np.vstack([y - lo, hi - y]), fmt="none", ecolor=ARM_COLORS[arm],
                                     capsize=3)
                gap = rows[rows["arm"] == "100%-Pre − 0%-Pre"]
                if len(gap):
                    x = gap["sft_tokens"].to_numpy(float)
                    y = gap["gap"].to_numpy(float)
                    err = np.vstack([y - gap["gap_lo"].to_numpy(float), gap["gap_hi"].to_numpy(float) - y])
                    bottom.errorbar(x, y, yerr=err, fmt="o-", color=ARM_COLORS["100%-Pre"], capsize=3)
                bottom.axhline(0, color="black", linewidth=0.8)
                top.set_xscale("log")
                top.set_ylim(0, max(10.0, 1.1 * np.nanmax(100 * rows["pass@1_hi"].to_numpy(float), initial=0.0)))
                top.set_title(bench + (" (probe)" if bench in PROBES else ""))
                bottom.set_xlabel("SFT tokens" if rows["sft_tokens"].max() > rows["step"].max() else "SFT step")
            ticks = sorted(set(part["sft_tokens"]))  # the budgets themselves, labelled 150k / 2.4M
            for ax in axes[1]:
                ax.set_xticks(ticks, [short_number(t) for t in ticks])
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
            axes[0][0].set_ylabel("pass@1 (%)")
            axes[1][0].set_ylabel("100%-Pre − 0%-Pre\n(points, paired 95% CI)")
            axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
            pooled = is_pooled(size)
            fig.suptitle(f"{domain}-SFT, size {size}: scores against SFT scale (95% CI"
                         + (" over training seeds and problems)" if pooled else ")"))
        figs[f"sft_scale_{domain}_{file_stem(size)}"] = fig
    return figs


def file_stem(label: str) -> str:
    """A size label as a file-name part: "L (4 seeds)" -> "L_4_seeds"; plain labels unchanged."""
    return re.sub(r"[^\w.-]+", "_", label).strip("_")


def plot_problem_pairs(arrays: dict, labels: tuple[str, str] = ("100%-Pre", "0%-Pre")):
    """One panel per (size, benchmark): each problem's accuracy under two arms (stats.problem_pairs), jittered so
    that equal points stay visible, with the diagonal."""
    fig, axes = new_figure(1, max(len(arrays), 1), panel=(3.4, 3.4))
    with figure_style():
        for ax, ((size, bench), (a, b)) in zip(axes[0], arrays.items()):
            jitter = np.random.default_rng(0).uniform(-0.03, 0.03, (2, len(b)))
            ax.scatter(b + jitter[0], a + jitter[1], s=8, alpha=0.5, color=ARM_COLORS[labels[0]])
            ax.plot([0, 1], [0, 1], color="0.5", linewidth=0.8)
            ax.set(title=f"{bench} ({size})", xlabel=f"{labels[1]} accuracy", ylabel=f"{labels[0]} accuracy")
    return fig
