"""The README stays a five-minute read, and the links in it and in docs/ lead somewhere."""
import re

import pytest

from posttrain.params import REPO_ROOT

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_is_short():
    assert len((REPO_ROOT / "README.md").read_text()) <= 10_000


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    missing = [target for target in LINK.findall(doc.read_text())
               if not re.match(r"[a-z]+:", target) and not target.startswith("runs/")  # runs/: made by `make demo`
               and not (doc.parent / target).exists()]
    assert not missing, f"{doc.name}: links to missing files {missing}"
