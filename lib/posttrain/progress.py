"""Progress bars: live in JupyterLab (tqdm.auto renders a widget there), absent from headless runs.

posttrain.pipeline runs the notebooks with TQDM_DISABLE=1: nobody watches them, and a saved bar is either its first
frame (a widget reading 0%) or hundreds of text redraws. tqdm honours that variable for its text bars only when a bar
does not pass `disable=` itself, and never for its notebook widgets (the kind a papermill kernel gets); `bar` honours
it for both. Stages print a one-line summary when their work is done, which is what a saved notebook keeps.
"""
from __future__ import annotations

import os


def bars_disabled() -> bool:
    """True when TQDM_DISABLE asks for no progress bars (the pipeline sets it for headless notebooks)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")


def bar(enabled: bool = True, **tqdm_kwargs):
    """A tqdm.auto bar, off when `enabled` is False or TQDM_DISABLE is set."""
    from tqdm.auto import tqdm
    return tqdm(disable=not enabled or bars_disabled(), **tqdm_kwargs)
