"""Committed notebooks carry no outputs, and running or saving one leaves the repository clean (scripts/strip_notebooks.py
as a git filter, registered by scripts/setup_env.sh)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "strip_notebooks.py"
sys.path.insert(0, str(SCRIPT.parent))
import strip_notebooks  # noqa: E402

GIT = shutil.which("git")


def _git(*args, cwd) -> str:
    return subprocess.run([GIT, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _committed_notebooks() -> dict[str, str]:
    """Each tracked notebook as git stores it (the index: what a commit takes), or the files outside a checkout."""
    if GIT and subprocess.run([GIT, "rev-parse"], cwd=REPO, capture_output=True).returncode == 0:
        names = _git("ls-files", "--", "notebooks/*.ipynb", cwd=REPO).split()
        return {n: _git("show", f":{n}", cwd=REPO) for n in names}
    return {str(p.relative_to(REPO)): p.read_text() for p in sorted((REPO / "notebooks").glob("*.ipynb"))}


def test_committed_notebooks_carry_no_outputs_and_are_their_stripped_form():
    notebooks = _committed_notebooks()
    assert len(notebooks) >= 5, sorted(notebooks)
    for name, text in notebooks.items():
        code = [c for c in json.loads(text)["cells"] if c["cell_type"] == "code"]
        assert code and not any(c["outputs"] for c in code), f"{name} holds outputs"
        assert all(c["execution_count"] is None for c in code), f"{name} holds execution counts"
        assert strip_notebooks.stripped_text(text) == text, (
            f"{name} holds run state or is not in JupyterLab's JSON layout: python3 scripts/strip_notebooks.py {name}")


def _ran(nb: dict) -> dict:
    """`nb` as JupyterLab saves it after Run All: outputs, counts, timings, widget state, the kernel's language."""
    nb = json.loads(json.dumps(nb))
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]
        cell["metadata"]["execution"] = {"iopub.status.busy": "2026-12-07T21:00:00.000Z"}
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb["metadata"]["language_info"] = {"name": "python", "version": "3.11.7"}
    return nb


def _checkout(tmp_path: Path, notebook: str) -> tuple[Path, Path, str]:
    """A git checkout with this project's filter files and one notebook, the project one folder below its top (the
    filter must still run); the filter registered as scripts/setup_env.sh registers it. (top, notebook, its name)"""
    top = tmp_path / "clone"
    project = top / "sub"
    (project / "notebooks").mkdir(parents=True)
    shutil.copytree(SCRIPT.parent, project / "scripts")
    shutil.copy(REPO / ".gitattributes", project)
    shutil.copy(REPO / "notebooks" / notebook, project / "notebooks")
    _git("init", "-q", cwd=top)
    for key, value in (("user.email", "t@example.com"), ("user.name", "t")):
        _git("config", key, value, cwd=top)
    proc = subprocess.run([sys.executable, str(project / "scripts" / "strip_notebooks.py"), "--install"],
                          capture_output=True, text=True, check=True)
    assert "registered" in proc.stdout
    _git("add", ".", cwd=top)
    _git("commit", "-q", "-m", "notebooks", cwd=top)
    return top, project / "notebooks" / notebook, f"sub/notebooks/{notebook}"


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_the_git_filter_keeps_run_state_out_of_diffs_and_commits(tmp_path):
    top, path, name = _checkout(tmp_path, "00_explore_data.ipynb")
    nb = json.loads(path.read_text())
    path.write_text(strip_notebooks.dumps(_ran(nb)))
    assert _git("diff", cwd=top) == ""
    _git("add", ".", cwd=top)  # stores nothing new; git status is clean again (see post_save_hook)
    assert _git("status", "--porcelain", cwd=top) == ""

    nb = _ran(nb)
    nb["cells"][0]["source"] = ["# an edit a researcher made\n"]
    path.write_text(strip_notebooks.dumps(nb))
    assert _git("status", "--porcelain", cwd=top).split() == ["M", name]
    _git("add", ".", cwd=top)
    staged = _git("show", f":{name}", cwd=top)
    assert json.loads(staged)["cells"][0]["source"] == ["# an edit a researcher made\n"]
    assert strip_notebooks.stripped_text(staged) == staged and '"outputs": []' in staged and "widgets" not in staged


@pytest.mark.skipif(GIT is None, reason="git is not installed")
def test_saving_in_jupyter_after_a_run_leaves_git_status_clean(tmp_path):
    """Jupyter's own contents manager, configured by the file `make lab` passes, saves a notebook after Run All."""
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from traitlets.config.loader import PyFileConfigLoader

    top, path, name = _checkout(tmp_path, "01_pretrain.ipynb")
    config = PyFileConfigLoader("jupyter_lab_config.py", str(path.parents[1] / "scripts")).load_config()
    manager = FileContentsManager(config=config, root_dir=str(top))
    ran = _ran(json.loads(path.read_text()))
    manager.save({"type": "notebook", "format": "json", "content": ran}, name)
    assert json.loads(path.read_text())["cells"] == ran["cells"]  # the researcher keeps the outputs on disk
    assert _git("status", "--porcelain", "--", name, cwd=top) == ""
    ran["cells"][0]["source"] = ["# an edit\n"]
    manager.save({"type": "notebook", "format": "json", "content": ran}, name)
    assert _git("status", "--porcelain", "--", name, cwd=top).split() == ["M", name]  # an edit stays an edit
    assert _git("diff", "--cached", cwd=top) == ""  # and is not staged by the hook


def test_install_is_a_no_op_outside_a_checkout_or_without_git(tmp_path):
    assert strip_notebooks.install(tmp_path).startswith("not a git checkout")
    env = {"PATH": str(tmp_path)}  # no git on it
    proc = subprocess.run([sys.executable, str(SCRIPT), "--install"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and "git not found" in proc.stdout


def test_check_names_a_notebook_with_outputs(tmp_path):
    path = tmp_path / "x.ipynb"
    path.write_text(strip_notebooks.dumps(_ran(json.loads((REPO / "notebooks" / "01_pretrain.ipynb").read_text()))))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "x.ipynb" in proc.stderr
    assert subprocess.run([sys.executable, str(SCRIPT), str(path)]).returncode == 0  # strips in place
    assert subprocess.run([sys.executable, str(SCRIPT), "--check", str(path)]).returncode == 0
