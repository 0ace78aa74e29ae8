"""The whole chain end to end at its smallest size (params/smoke.yaml), as `make smoke` runs it, and the notebooks
on that run as a JupyterLab user runs them.

Slow (a few minutes): it trains tiny models, samples with vLLM on the CPU, grades, and renders the report. The chain
runs once per session (`smoke_run`); the notebook tests reuse its run directory. SMOKE_RUN_DIR=<a finished copy of a
smoke run> skips the chain and tests that run instead (the notebook tests write into it: point it at a copy).
"""
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from posttrain.params import REPO_ROOT, load_study
from posttrain.pipeline import NOTEBOOK_DIR, NOTEBOOK_STAGES, STAGES

pytestmark = pytest.mark.slow
MAX_OUTPUT_LINES = 50  # per cell, in an executed notebook: more is a log, not a report
LAB_KERNEL = "posttrain"  # the kernel `make lab` offers (scripts/setup_env.sh installs it)


def _pipeline(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "posttrain.pipeline", str(REPO_ROOT / "params/smoke.yaml"), "--run-dir", str(run_dir)]


def test_smoke_chain(smoke_run):
    run_dir = smoke_run
    study = load_study(REPO_ROOT / "params/smoke.yaml", str(run_dir))
    assert (run_dir / "setup" / "setup.json").is_file()  # the mini_setup stage
    for stage in NOTEBOOK_STAGES:
        assert (run_dir / "notebooks" / f"{stage}.ipynb").is_file()
        assert (run_dir / "notebooks" / f"{stage}.html").is_file()
    assert (run_dir / "index.html").is_file()

    rows = list(csv.DictReader(open(run_dir / "eval" / "results.csv")))
    arms = {r["arm"] for r in rows}
    assert {"Base", "0%-Pre", "100%-Pre"} <= arms
    for r in rows:
        assert 0.0 <= float(r["pass@1"]) <= 1.0 and float(r["pass@1_lo"]) <= float(r["pass@1"]) <= float(r["pass@1_hi"])
    # every SFT run was evaluated, and cross-domain pairs exist
    trained = {(r["model"], r["benchmark"]) for r in rows if r["train_domain"]}
    assert len({m for m, _ in trained}) == len(study.sft)
    assert any(r["train_domain"] == "math" and r["domain"] == "code" for r in rows)
    # the miniature's own outputs: the storage gate's clozes, the gates, and the SFT-scale axis (checkpoints 6, 12)
    assert set(json.loads((run_dir / "eval" / "fill_in.json").read_text())) >= {"all", "seen", "held_out"}
    assert "learning floor" in (run_dir / "report" / "gates.md").read_text()
    scale = (run_dir / "report" / "sft_scale.md").read_text()
    assert "| 100%-Pre − 0%-Pre | 6 |" in scale and "| 100%-Pre − 0%-Pre | 12 |" in scale
    assert (REPO_ROOT / "figures" / "smoke" / "sft_scale_math_mini.png").is_file()

    # every claim names the gates it needs: where the learning floor failed (every smoke model scores ~0), no claim
    # holds or fails -- "no cross-domain transfer" was once reported as holding, trivially, with nothing learned
    claims = list(csv.DictReader(open(run_dir / "report" / "claims.csv")))
    assert len(claims) == 5
    floor_failed = "| learning floor | mini |" in (gates := (run_dir / "report" / "gates.md").read_text()) and \
        "**no**" in next(line for line in gates.splitlines() if line.startswith("| learning floor"))
    assert floor_failed, "the smoke run's tiny models learn nothing: its learning floor must fail"
    assert all(c["verdict"].startswith("cannot decide (gate failed: learning floor") for c in claims), claims

    # a second run skips every stage: nothing is recomputed for the same params
    again = subprocess.run(_pipeline(run_dir), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and again.stdout.count("skipped") == len(STAGES), again.stdout[-2000:]


# ---------------------------------------------------------------------------------------------- saved outputs


def rendered_lines(text: str) -> int:
    """Lines a reader sees of a stream: a carriage return redraws its line (tqdm), so only the last draw counts."""
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return len(lines)


def cell_output_lines(cell: dict) -> int:
    """Lines one code cell's saved outputs show: streams as rendered (per stream name, joined first: a progress bar
    arrives in many chunks), text/plain of displays and results, tracebacks; a widget or an image counts one."""
    streams: dict[str, str] = {}
    count = 0
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            streams[out["name"]] = streams.get(out["name"], "") + "".join(out["text"])
        elif kind == "error":
            count += sum(rendered_lines(line) for line in out["traceback"])
        else:
            text = "".join(out["data"].get("text/plain", ""))
            count += max(1, rendered_lines(text))
    return count + sum(rendered_lines(text) for text in streams.values())


@pytest.mark.parametrize("outputs, lines", [
    ([{"output_type": "stream", "name": "stderr", "text": ["  0%|   | 0/9\r", " 50%|  | 4/9\r", "100%| | 9/9\n"]}], 1),
    ([{"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
      {"output_type": "stream", "name": "stdout", "text": "c\n"}], 3),
    ([{"output_type": "display_data", "data": {"text/plain": "<Figure>", "image/png": "..."}}], 1),
    ([{"output_type": "execute_result", "data": {"text/plain": "  x\n0 1\n1 2"}}], 3),
])
def test_cell_output_lines(outputs, lines):
    assert cell_output_lines({"outputs": outputs}) == lines


def test_executed_notebooks_are_short(smoke_run):
    """Saved notebooks are the shared report: no cell may carry a log (progress redraws, per-step dicts)."""
    longest = {}
    for stage in NOTEBOOK_STAGES:
        nb = json.loads((smoke_run / "notebooks" / f"{stage}.ipynb").read_text())
        counts = [(cell_output_lines(c), i) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
        longest[stage] = max(counts)
    too_long = {stage: f"cell {i}: {n} lines" for stage, (n, i) in longest.items() if n > MAX_OUTPUT_LINES}
    assert not too_long, f"saved outputs over {MAX_OUTPUT_LINES} lines: {too_long}"


def test_executed_notebooks_show_no_machine_paths(smoke_run):
    """Paths in outputs are relative to the repository; a shared report must not carry this machine's layout."""
    found = []
    for stage in NOTEBOOK_STAGES:
        cells = json.loads((smoke_run / "notebooks" / f"{stage}.ipynb").read_text())["cells"]
        for i, cell in enumerate(cells):
            # outputs, and the source too: papermill's injected parameters cell is part of the shared report
            text = json.dumps(cell.get("outputs", [])) + "".join(cell.get("source", ""))
            if (at := text.find(str(REPO_ROOT))) >= 0:
                found.append(f"{stage} cell {i}: ...{text[max(0, at - 60):at + 60]}...")
    assert not found, f"outputs show {REPO_ROOT}:\n" + "\n".join(found)


# ---------------------------------------------------------------------------------------------- JupyterLab


def as_lab_user_would(notebook: Path, run_dir: Path):
    """The notebook with its parameters cell edited as a user would in JupyterLab (the smoke params, by their
    repository-relative path; this run's directory), and no papermill cell injected."""
    import nbformat
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    source, n = re.subn(r'^params_path = "params/mini.yaml"', 'params_path = "params/smoke.yaml"', cell.source,
                        flags=re.M)
    source, m = re.subn(r"^run_dir = None", f"run_dir = {str(run_dir)!r}", source, flags=re.M)
    assert n == m == 1, f"{notebook.name}: parameters cell no longer sets params_path/run_dir defaults:\n{cell.source}"
    cell.source = source
    return nb


def error_outputs(nb) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"cell {i}: {out.ename}: {out.evalue}")
            elif out.output_type == "stream" and out.name == "stderr" and "Traceback" in out.text:
                found.append(f"cell {i}: traceback on stderr: {out.text[-500:]}")
    return found


def test_report_notebook_computes_its_own_sections():
    """04 holds the analysis: tables and figures are built in its own cells, not by one call that does it all."""
    import nbformat
    nb = nbformat.read(NOTEBOOK_DIR / "04_report.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert not any("write_report(" in c for c in code)
    for step in ("check_gates(", "check_claims(", "build_tables(", "sft_scale(", "plot_sft_scale(", "plot_headline(",
                 "plot_curves(", "gap_closure(", "example_outputs(", "write_report_files("):
        assert sum(bool(re.search(r"\b" + re.escape(step), c)) for c in code) == 1, \
            f"04_report: {step} should be computed in one cell of its own"
    assert all(len(c.splitlines()) <= 25 for c in code), "a cell longer than a screen is a function that wants to move"


def test_report_on_a_study_never_run_deletes_nothing(tmp_path):
    """04 pointed at a study with no local run (the README's large tier) stops with what to do, and leaves its
    committed figures alone."""
    import hashlib

    from nbclient import NotebookClient
    figures = REPO_ROOT / "figures" / "mini_large"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in figures.iterdir()}
    nb = as_lab_user_would(NOTEBOOK_DIR / "04_report.ipynb", tmp_path / "never_ran")
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace('"params/smoke.yaml"', '"params/mini_large.yaml"')
    NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    errors = error_outputs(nb)
    # Run All in JupyterLab stops at the first error; nbclient here runs on, so later cells fail for want of `results`
    assert errors and "NoResultsYet" in errors[0] and "make demo PARAMS=params/mini_large.yaml" in errors[0]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in figures.iterdir()} == before


@pytest.mark.parametrize("stage", NOTEBOOK_STAGES)
def test_notebook_runs_in_jupyterlab(smoke_run, stage):
    """Run All from a fresh kernel, as `make lab` runs it: kernel `posttrain`, working directory notebooks/."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient
    try:
        KernelSpecManager().get_kernel_spec(LAB_KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no Jupyter kernel {LAB_KERNEL!r}: scripts/setup_env.sh installs it (make setup)")
    nb = as_lab_user_would(NOTEBOOK_DIR / f"{stage}.ipynb", smoke_run)
    NotebookClient(nb, kernel_name=LAB_KERNEL, timeout=600, allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    errors = error_outputs(nb)
    assert not errors, f"{stage} in JupyterLab:\n" + "\n".join(errors)
