"""Notebooks as they are committed: no outputs, no execution counts, none of the state that running or saving adds.

    python3 scripts/strip_notebooks.py < in.ipynb > out.ipynb   # the git filter (.gitattributes: filter=nbstrip)
    python3 scripts/strip_notebooks.py notebooks/*.ipynb        # strip files in place
    python3 scripts/strip_notebooks.py --check notebooks/*.ipynb  # exit 1 naming the files that are not stripped
    python3 scripts/strip_notebooks.py --install                # register the filter in this git checkout

scripts/setup_env.sh runs `--install` (`git config filter.nbstrip.clean ...`; a no-op without git or outside a
checkout), so `git add`, `git status` and `git diff` see a notebook without what a run left in it: running a
notebook in JupyterLab and saving it leaves the repository clean. The output is what JupyterLab writes (JSON, indent 1, sorted keys), so a stripped notebook is
byte-for-byte its own stripped form. Standard library only: the filter runs before any venv exists.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Added by running or saving, never by writing the notebook: execution timings (JupyterLab, papermill), scroll and
# collapse state, widget state, the kernel's language details (Python version).
CELL_KEYS = ("execution", "ExecuteTime", "papermill", "scrolled", "collapsed", "trusted")
NOTEBOOK_KEYS = ("widgets", "papermill", "language_info")


def strip(nb: dict) -> dict:
    """The notebook without outputs, execution counts and run state (a new dict; `nb` is unchanged)."""
    nb = json.loads(json.dumps(nb))
    for key in NOTEBOOK_KEYS:
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
    return nb


def dumps(nb: dict) -> str:
    """JSON as JupyterLab (nbformat) writes it."""
    return json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n"


def stripped_text(text: str, name: str = "<stdin>") -> str:
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as e:
        raise SystemExit(f"strip_notebooks: {name} is not a notebook (invalid JSON: {e})") from None
    return dumps(strip(nb))


def install(repo: Path = REPO) -> str:
    """Register the nbstrip filter in the git checkout holding `repo`; says what it did (never fails)."""
    git = shutil.which("git")
    if git is None:
        return "git not found: notebook filter not registered"
    prefix = subprocess.run([git, "rev-parse", "--show-prefix"], cwd=repo, capture_output=True, text=True)
    if prefix.returncode:
        return "not a git checkout: notebook filter not registered"
    # git runs the filter from the top of the checkout, where this project may be a subfolder.
    command = f"{shlex.quote(sys.executable)} {shlex.quote(prefix.stdout.strip() + 'scripts/strip_notebooks.py')}"
    for key, value in (("filter.nbstrip.clean", command), ("filter.nbstrip.smudge", "cat")):
        if subprocess.run([git, "config", key, value], cwd=repo, capture_output=True).returncode:
            return f"git config {key} failed: notebook filter not registered"
    return "notebook filter registered (filter.nbstrip)"


def post_save_hook(os_path: str, model: dict, **kwargs) -> None:
    """JupyterLab's post-save hook (scripts/jupyter_lab_config.py): when a saved notebook differs from git's copy
    only by what the filter strips, `git add` it (same content; only the size and time git keeps change), so
    `git status` stays clean too -- git lists a file whose size changed as modified until it is added again.
    Never raises: a failing hook would turn the save into an error in JupyterLab."""
    git = shutil.which("git")
    if model.get("type") != "notebook" or git is None:
        return
    try:
        def ok(*args: str) -> bool:
            return subprocess.run([git, *args, "--", os_path], cwd=os.path.dirname(os_path), capture_output=True,
                                  timeout=60).returncode == 0
        # tracked, and no difference once filtered (also false without the filter: the outputs then differ)
        if ok("ls-files", "--error-unmatch") and ok("diff", "--quiet"):
            ok("add")
    except (OSError, subprocess.SubprocessError):
        pass


def main(argv: list[str]) -> int:
    if argv == ["--install"]:
        print(f"strip_notebooks: {install()}")
        return 0
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"]
    if not paths:  # the git filter: stdin to stdout, UTF-8 whatever the locale
        sys.stdout.buffer.write(stripped_text(sys.stdin.buffer.read().decode("utf-8")).encode("utf-8"))
        return 0
    dirty = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        clean = stripped_text(text, str(path))
        if clean != text:
            dirty.append(path)
            if not check:
                path.write_text(clean, encoding="utf-8")
    if check and dirty:
        print("not stripped (run python3 scripts/strip_notebooks.py on them): "
              + ", ".join(map(str, dirty)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
