"""One figure style for every notebook and the report: sized for a JupyterLab page at 100% zoom (at most 10 inches
wide at 100 dpi), one font scale, seaborn's colourblind palette; files written without timestamps, so a rerun that
draws the same figure rewrites the same bytes and leaves a committed figure unchanged."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

MAX_WIDTH = 10.0  # inches; at figure.dpi 100 that is the width of a JupyterLab output area
STYLE = {
    "figure.dpi": 100, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12,
    "axes.grid": True, "grid.color": "0.88", "axes.edgecolor": "0.6", "axes.spines.top": False,
    "axes.spines.right": False, "lines.markersize": 5, "svg.hashsalt": "posttrain",
}
# Matplotlib stamps these into files by default (a creation date in PDFs, its version in both): dropped.
_NO_STAMPS = {".pdf": {"CreationDate": None, "Producer": None, "Creator": None}, ".png": {"Software": None}}


class NotebookFigure(Figure):
    """A Figure that shows itself in a notebook when returned or display()-ed, at the page's scale (100 dpi): it is
    made outside pyplot, so no backend draws it twice, and nothing depends on `%matplotlib inline` being set up."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        with figure_style():
            self.savefig(buf, format="png", dpi=STYLE["figure.dpi"], bbox_inches="tight")
        return buf.getvalue()


@contextlib.contextmanager
def figure_style():
    """Artists made inside take the house style (rcParams are read when an artist is created), on matplotlib's
    defaults: whatever the session set globally (the notebook backend's transparent face colour, a user's style)
    must not reach the files, or a figure drawn in JupyterLab would differ from the same one drawn headless."""
    with matplotlib.rc_context():
        matplotlib.rcdefaults()  # keeps the backend
        matplotlib.rcParams.update(STYLE)
        yield


def new_figure(nrows: int = 1, ncols: int = 1, panel: tuple[float, float] = (4.0, 3.0), min_width: float = 6.0,
               **subplots_kw):
    """(fig, axes[nrows][ncols]) with panels of about `panel` inches, shrunk to fit MAX_WIDTH (and widened to
    `min_width`: a lone panel beside an outside legend would be a sliver). A Figure outside pyplot: nothing is
    drawn twice in a notebook, nothing needs closing; a notebook shows it by returning it."""
    width = min(MAX_WIDTH, max(min_width, panel[0] * ncols))
    height = panel[1] * nrows * min(1.0, width / (panel[0] * ncols)) ** 0.5  # keep panels from getting flat when shrunk
    with figure_style():
        fig = NotebookFigure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplots_kw)
    return fig, axes


def save_figure(fig: Figure, folder: str | Path, stem: str, formats=(".png", ".pdf")) -> list[Path]:
    """Write `fig` as PNG and PDF under `folder` (made if missing), with no timestamps; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with figure_style():
        for suffix in formats:
            path = folder / f"{stem}{suffix}"
            fig.savefig(path, metadata=_NO_STAMPS.get(suffix), bbox_inches="tight")
            paths.append(path)
    return paths
