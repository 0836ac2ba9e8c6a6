"""No import circles in ``entity_etl``: which of its modules each module imports, as a graph.

Two graphs. The full one counts every import: those made when a module loads, those inside a function
(made when it runs: how the DAG file stays light to parse) and those under ``if TYPE_CHECKING:``; it must
have no circle, since a lazy import hides a circle from Python but not from the design. The load-time
one counts only module-level imports (including those under a module-level ``if``/``try``/``with``).
``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from support.entity_files import ROOT

PACKAGE = "entity_etl"


def modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (under ``root``) by dotted name; a package by its ``__init__.py``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
            ):
                yield from _module_level(node.orelse)
                continue
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _module_level(block)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def _everywhere(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    for statement in body:
        yield from (node for node in ast.walk(statement) if isinstance(node, ast.Import | ast.ImportFrom))


def imports_of(name: str, path: Path, known: dict[str, Path], package: str, *, lazy: bool) -> set[str]:
    """The modules of ``package`` that module ``name`` imports (``lazy``: in its functions too)."""
    is_package = path.name == "__init__.py"
    edges = set()
    body = ast.parse(path.read_text(), str(path)).body
    for node in _everywhere(body) if lazy else _module_level(body):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        edges |= {t for t in targets if t == package or t.startswith(package + ".")}
    return {t for t in edges if t in known and t != name}


def import_graph(root: Path, package: str, *, lazy: bool = True) -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports_of(name, path, known, package, lazy=lazy) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle (as a path that returns to its start) per strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_circle(graph, set(group)) for group in groups]


def _circle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path through ``group`` from its first module back to it."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    raise AssertionError(f"no circle through {sorted(group)}")


def test_entity_etl_has_no_import_circle() -> None:
    graph = import_graph(ROOT / "plugins", PACKAGE)
    assert len(graph) > 50  # the whole package was read
    assert graph["entity_etl.orchestration.stage_operator"] >= {
        "entity_etl.orchestration.batch.surface",
        "entity_etl.orchestration.batch.job_spec",
        "entity_etl.orchestration.batch.provider_job",  # inside execute()
        "entity_etl.orchestration.connections",
    }
    found = cycles(graph)
    assert found == [], "import circles: " + "; ".join(" -> ".join(c) for c in found)


def test_the_batch_backends_provider_job_is_imported_only_when_a_stage_runs() -> None:
    graph = import_graph(ROOT / "plugins", PACKAGE, lazy=False)
    assert [name for name, targets in graph.items() if "entity_etl.orchestration.batch.provider_job" in targets] == []
    assert cycles(graph) == []


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_a_circle_through_a_lazy_import_is_found_and_named(tmp_path: Path) -> None:
    # The Batch backend's old circle: the job module imported a constant from the operator's module,
    # which imported the job module back inside a method (and under TYPE_CHECKING).
    write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/ops/__init__.py": "",
            "pkg/ops/stage.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.ops.job import Job\n"
                "ACTIVE = ()\n"
                "def run():\n    from pkg.ops import job\n"
            ),
            "pkg/ops/job.py": "from .stage import ACTIVE\n",
            "pkg/ops/light.py": "import os\nimport pkg.ops.stage\n",
        },
    )
    loading = import_graph(tmp_path, "pkg", lazy=False)
    assert loading["pkg.ops.job"] == {"pkg.ops.stage"}  # a relative import, resolved
    assert loading["pkg.ops.stage"] == set()  # nothing at load time
    assert loading["pkg.ops.light"] == {"pkg.ops.stage"}
    assert cycles(loading) == []
    full = import_graph(tmp_path, "pkg")
    assert full["pkg.ops.stage"] == {"pkg.ops.job"}
    assert cycles(full) == [["pkg.ops.job", "pkg.ops.stage", "pkg.ops.job"]]
