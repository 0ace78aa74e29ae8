"""The shareable report: executed notebooks → self-contained HTML, plus {run_dir}/index.html linking them.

index.html shows, in this order, whether the paper's claims held in this run (report/claims.md) and, for the
miniature, the gates they depend on (report/gates.md), the headline table (report/table1.md), the main figure and
the SFT-scale figure (embedded, so the page still works when copied elsewhere), all found through
report/manifest.json written by posttrain.report (its paths are relative to the run dir, or to the repository).
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import mistune
import nbformat
from nbconvert import HTMLExporter

from posttrain.params import REPO_ROOT

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f0f0; }} td {{ text-align: right; white-space: nowrap; }} img {{ max-width: 100%; }}
.claims td {{ text-align: left; white-space: normal; vertical-align: top; }} .claims p {{ font-size: 0.9em; }}
</style></head>
<body><h1>{title}</h1>
<h2>Did the paper's claims hold in this run?</h2><div class="claims">{claims}</div>{gates}
<h2>Notebooks</h2><ul>{links}</ul>
<h2>Headline results (Table 1, pass@1 / pass@5 in %)</h2>{table}
<h2>Main figure</h2>{figure}{scale}
</body></html>
"""


def export_notebook(notebook: Path, out: Path) -> Path:
    """One executed notebook → one self-contained HTML file (images embedded)."""
    exporter = HTMLExporter(embed_images=True)
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    out.write_text(body, encoding="utf-8")
    return out


def export_html(run_dir: str | Path, title: str | None = None) -> dict:
    """Export every {run_dir}/notebooks/*.ipynb to HTML beside it and write {run_dir}/index.html.

    Returns {"index": Path, "notebooks": [Path]}. A missing headline table or figure shows as a note on the page.
    """
    run_dir = Path(run_dir)
    notebooks = sorted((run_dir / "notebooks").glob("*.ipynb"))
    pages = [export_notebook(nb, nb.with_suffix(".html")) for nb in notebooks]
    links = "".join(f'<li><a href="{html.escape(str(p.relative_to(run_dir)))}">{html.escape(p.stem)}</a></li>'
                    for p in pages) or "<li>no executed notebooks yet</li>"

    manifest_path = run_dir / "report" / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    claims = _markdown_html(_locate(run_dir, manifest.get("claims_table") or "report/claims.md"),
                            "No claims table yet: run notebooks/04_report.ipynb.")
    table = _markdown_html(_locate(run_dir, manifest.get("headline_table") or "report/table1.md"),
                           "No Table 1 yet: run notebooks/04_report.ipynb.")
    gates = ""
    if manifest.get("gates_table"):  # the miniature: can this run decide anything?
        gates = ('<h3>Gates (checked before any comparison; a claim that needs a failed one cannot be decided)</h3>'
                 f'<div class="claims">{_markdown_html(_locate(run_dir, manifest["gates_table"]), "")}</div>')
    figure = _embedded(run_dir, manifest.get("headline_figure"), "Table 1 as bars") or "<p>No figure yet.</p>"
    scale = _embedded(run_dir, manifest.get("sft_scale_figure"), "pass@1 against SFT tokens per arm")
    scale = f"<h2>SFT scale</h2>{scale}" if scale else ""

    index = run_dir / "index.html"
    index.write_text(_PAGE.format(title=html.escape(title or f"Study report: {run_dir.name}"), claims=claims,
                                  gates=gates, links=links, table=table, figure=figure, scale=scale),
                     encoding="utf-8")
    return {"index": index, "notebooks": pages}


def _locate(run_dir: Path, path: str) -> Path:
    """A manifest path: absolute as is, else under the run dir, else under the repository (figures/<study>/)."""
    path = Path(path)
    if path.is_absolute():
        return path
    return run_dir / path if (run_dir / path).exists() else REPO_ROOT / path


def _embedded(run_dir: Path, path: str | None, alt: str) -> str:
    """An <img> carrying the PNG itself (the page works when copied elsewhere), or "" when there is none."""
    found = _locate(run_dir, path) if path else None
    if found is None or not found.is_file():
        return ""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(found.read_bytes()).decode()}">'


def _markdown_html(path: Path, missing: str) -> str:
    if not path.is_file():
        return f"<p>{html.escape(missing)}</p>"
    return mistune.create_markdown(plugins=["table"])(path.read_text())
