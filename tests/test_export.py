"""posttrain.export: notebooks → HTML and index.html, checked as a reader would (headless Chromium screenshot).

Run: .venv/bin/python -m pytest tests/test_export.py -x -q
The Chromium checks are skipped where no chromium binary is installed (`apt-get install -y chromium`).
"""
import base64
import io
import shutil
import subprocess

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from PIL import Image

from posttrain import export, report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def run_dir(tmp_path):
    rows = []
    for arm, v in (("Base", 0.1), ("0%-Pre", 0.2), ("short-Pre", 0.4), ("100%-Pre", 0.7)):
        rows.append({"model": arm, "arm": arm, "size": "mini", "train_domain": "" if arm == "Base" else "math",
                     "step": 0 if arm == "Base" else 5, "benchmark": "mini_math", "domain": "math", "n": 4,
                     "num_problems": 10, "num_ungradable": 0, "pass@1": v, "pass@1_lo": v - 0.05,
                     "pass@1_hi": v + 0.05, "pass@5": v + 0.1, "pass@5_lo": v, "pass@5_hi": v + 0.2,
                     "truncation_rate": 0.0, "path": "", "grader": "math", "records": ""})
    (tmp_path / "eval").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "results.csv", index=False)
    report.write_report(run_dir=tmp_path, figures_dir=tmp_path / "figures", n_boot=50)
    (tmp_path / "notebooks").mkdir()
    image = new_output("display_data", data={"image/png": base64.b64encode(_png_bytes()).decode()})
    nb = new_notebook(cells=[new_markdown_cell("# Report notebook"),
                             new_code_cell("show()", outputs=[image], execution_count=1)])
    nbformat.write(nb, tmp_path / "notebooks" / "04_report.ipynb")
    return tmp_path


def test_export_writes_index_and_self_contained_pages(run_dir):
    out = export.export_html(run_dir)
    index = out["index"].read_text()
    assert 'href="notebooks/04_report.html"' in index
    assert "<table>" in index and "mini_math pass@1" in index and "70.0" in index  # Table 1 as HTML
    # the claims table comes first, with the paper's figure and a verdict per claim
    assert index.index("claims hold") < index.index("Headline results")
    assert "74.4 vs 2.4" in index and "Rule: A case holds" in index
    # this synthetic run's Base scores 10% and its 0%-Pre 20%: the gates say so, and the claims cannot be decided
    assert "cannot decide (gate failed: instruments, learning floor)" in index and "<h3>Gates" in index
    assert index.index("<h3>Gates") < index.index("Headline results")
    assert "data:image/png;base64," in index  # the main figure travels with the page
    page = (run_dir / "notebooks" / "04_report.html").read_text()
    assert "Report notebook" in page and "data:image/png;base64," in page


def test_export_without_report_still_writes_index(tmp_path):
    out = export.export_html(tmp_path)
    assert "No Table 1 yet" in out["index"].read_text() and out["notebooks"] == []
    assert "No claims table yet" in out["index"].read_text()


def _chromium(*args) -> subprocess.CompletedProcess:
    user_dir = subprocess.run(["mktemp", "-d"], capture_output=True, text=True).stdout.strip()
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync", f"--user-data-dir={user_dir}", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
@pytest.mark.parametrize("page", ["index.html", "notebooks/04_report.html"])
def test_pages_render_in_chromium(run_dir, page):
    export.export_html(run_dir)
    shot = run_dir / f"{page.replace('/', '_')}.png"
    _chromium(f"--screenshot={shot}", "--window-size=1280,2000", f"file://{run_dir / page}")
    assert shot.is_file()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 5, "screenshot is blank"
    dom = _chromium("--dump-dom", f"file://{run_dir / page}").stdout
    if page == "index.html":
        assert "mini_math pass@1" in dom and "short-Pre" in dom and "claims hold" in dom
    else:
        assert "Report notebook" in dom
