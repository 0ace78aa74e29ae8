"""The package's modules import each other one way only: data flows params -> runs -> records -> report.

Every import counts, at module level or inside a function (a deferred import is still a dependency). An import of
`posttrain.x.y` is an edge to the module `posttrain.x.y` itself; the parents it implies are not counted, or every
package __init__ that re-exports its modules would form a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG_ROOT = Path(__file__).resolve().parents[1] / "lib" / "posttrain"


def module_name(path: Path) -> str:
    parts = ["posttrain", *path.relative_to(PKG_ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package's own modules that `path` imports, resolving relative imports and `from pkg import module`."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import submodule` depends on the submodule; `from pkg import name` on pkg itself.
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PKG_ROOT.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, known) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path = path + [node]
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path)):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [])):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_relative_and_from_imports_are_resolved(tmp_path, monkeypatch):
    pkg = tmp_path / "posttrain"
    (pkg / "sub").mkdir(parents=True)
    for f in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py"):
        (pkg / f).write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\nfrom posttrain.sub import b\ndef f():\n    import posttrain.a\n    from posttrain.sub import helper\n")
    monkeypatch.setattr(__import__(__name__), "PKG_ROOT", pkg)
    known = {"posttrain", "posttrain.a", "posttrain.sub", "posttrain.sub.b"}
    assert imported_modules(pkg / "sub" / "b.py", known) == {"posttrain.a", "posttrain.sub"}


def test_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 10, "the package's modules were not found"
    cycle = find_cycle(graph)
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_no_module_outside_grading_and_mini_is_over_500_lines():
    """Short files, one obvious place per stage: a module past 500 lines is doing two jobs (grading/ and mini/ hold
    rule tables and generators that are long by nature)."""
    long = {str(p.relative_to(PKG_ROOT)): n for p in PKG_ROOT.rglob("*.py")
            if p.relative_to(PKG_ROOT).parts[0] not in ("grading", "mini")
            and (n := len(p.read_text().splitlines())) > 500}
    assert not long, long
