"""JupyterLab as `make lab` starts it (--config=scripts/jupyter_lab_config.py): saving a notebook that changed only
by running it leaves `git status` clean (strip_notebooks.post_save_hook; the nbstrip git filter keeps it out of
diffs and commits)."""
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the server's path, not the kernels'
from strip_notebooks import post_save_hook  # noqa: E402

c.ContentsManager.post_save_hook = post_save_hook  # noqa: F821 - `c` is the config object Jupyter provides
# The server applies this config twice (its own and JupyterLab's) and warns that the hook replaced itself.
warnings.filterwarnings("ignore", message="Overriding existing post_save_hook")
