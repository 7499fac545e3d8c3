"""The package's layers (pyproject.toml's import-linter contracts) hold, and no import cycle
exists anywhere in moabench."""

import subprocess
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def import_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One cycle of direct imports between moabench's modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                return path[path.index(imported) :] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph.modules):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_module_imports_itself_through_others():
    assert import_cycle(grimp.build_graph("moabench")) is None


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")]:
        graph.add_import(importer=a, imported=b)
    assert import_cycle(graph) == ["p.a", "p.b", "p.c", "p.a"]


def test_the_import_linter_contracts_are_kept():
    result = subprocess.run(
        ["lint-imports", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
