"""The import graph of harness/: levels, imports, upward imports and circles, read from the source with ast.

Every `import` and `from ... import` counts, at module level and inside functions (a function-level import
hides a circle from Python, not from this graph). A node is a module (a package is its __init__); an edge is
one module importing another of harness/, counted once however often it is written. `from harness.x import y`
is an edge to harness.x.y when that is a module of its own, else to harness.x.

Levels: a module that imports nothing of harness/ is on level 1, any other one level above the highest module
it imports; the modules of one circle share a level. Upward: an import of a module in a higher layer than the
importer's (LAYERS below, mirrored in the README's layout section; tests/unit/test_import_layers.py fails
on any upward import or circle).

    python3 bench/import_graph.py              # the figures
    python3 bench/import_graph.py --edges      # and every edge, level by level
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The layers of harness/, lowest first: a module imports only from its own layer or a lower one, and no two
# modules import each other, however indirectly. A name ending in "." is a package and everything in it.
# The README's layout section lists the same layers (tests/unit/test_import_layers.py holds them equal).
LAYERS: list[tuple[str, list[str]]] = [
    ("shared", ["harness", "harness.precision", "harness.cpusets", "harness.crosscheck", "harness.records"]),
    ("worker", ["harness.probe."]),
    ("rules", ["harness.paths", "harness.spec", "harness.tasks.", "harness.stats", "harness.scoring",
               "harness.submission", "harness.results", "harness.safe_files", "harness.warmup_inputs",
               "harness.timed_inputs",
               "harness.progress", "harness.check", "harness.console", "harness.report", "harness.split_report",
               "harness.sample_batches", "harness.onnx_providers", "harness.settings"]),
    ("machine", ["harness.gpu", "harness.slots", "harness.box", "harness.device_activity", "harness.freezing",
                 "harness.data_files", "harness.kernel_memory"]),
    ("workers", ["harness.backends.", "harness.worker_link", "harness.replies", "harness.time_split",
                 "harness.timekeeper", "harness.measurement"]),
    ("runs", ["harness.config", "harness.pipeline", "harness.row_flags", "harness.calibration", "harness.engine",
              "harness.local_engine", "harness.batch", "harness.cleanup", "harness.doctor"]),
    ("front", ["harness.ray_engine", "harness.cli"]),
]


def module_names(root: Path) -> dict[str, Path]:
    """Every module under root (the package folder), by dotted name."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The dotted name a (possibly relative) `from` names, seen from `importer`."""
    if not level:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of `modules` that module `name` imports, anywhere in its source."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(_known(alias.name, modules) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _absolute(node.module, node.level, name, is_package)
            for alias in node.names:
                whole = f"{target}.{alias.name}"
                found.add(whole if whole in modules else _known(target, modules))
    found.discard("")
    found.discard(name)
    return found


def _known(dotted: str, modules: dict[str, Path]) -> str:
    """The longest prefix of `dotted` that is one of `modules` ("" when none is)."""
    parts = dotted.split(".")
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = REPO / "harness") -> dict[str, set[str]]:
    """Every module of the package at root and the package modules it imports."""
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def levels(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's level (1: imports nothing of the package); a circle's modules share one."""
    group = {node: node for node in graph}
    for component in circles(graph):
        for member in component:
            group[member] = component[0]
    level: dict[str, int] = {}

    def level_of(node: str) -> int:
        head = group[node]
        if head not in level:
            level[head] = 0     # a circle's own edges do not lift it
            members = [m for m in graph if group[m] == head]
            below = [level_of(t) for m in members for t in graph[m] if group[t] != head]
            level[head] = 1 + max(below, default=0)
        return level[head]

    return {node: level_of(node) for node in graph}


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int:
    """The index of the layer whose most specific pattern names `module` (a pattern is a module or a package
    prefix ending in '.'); ValueError when no layer names it."""
    best = (-1, -1)
    for position, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if module == pattern.rstrip(".") or (pattern.endswith(".") and module.startswith(pattern)):
                best = max(best, (len(pattern), position))
    if best[1] < 0:
        raise ValueError(f"{module} is in no layer")
    return best[1]


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(importer, imported) for every import of a module in a higher layer than the importer's."""
    return sorted((source, target) for source, targets in graph.items() for target in targets
                  if layer_of(target, layers) > layer_of(source, layers))


def figures(graph: dict[str, set[str]], layers: list[tuple[str, list[str]]] | None) -> dict[str, object]:
    """The summary figures: modules, levels, imports, upward imports (with layers), circles."""
    out: dict[str, object] = {"modules": len(graph), "levels": max(levels(graph).values(), default=0),
                              "imports": sum(len(targets) for targets in graph.values()),
                              "circles": circles(graph)}
    if layers is not None:
        out["upward"] = upward_imports(graph, layers)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO / "harness")
    parser.add_argument("--edges", action="store_true", help="print every edge, level by level")
    args = parser.parse_args()
    graph = import_graph(args.root)
    found = figures(graph, LAYERS)
    print(f"modules: {found['modules']}  levels: {found['levels']}  imports: {found['imports']}")
    if "upward" in found:
        print(f"upward imports: {len(found['upward'])}")
        for source, target in found["upward"]:
            print(f"  {source} -> {target}")
    print(f"circles: {len(found['circles'])}")
    for component in found["circles"]:
        print("  " + " <-> ".join(component))
    if args.edges:
        level = levels(graph)
        for node in sorted(graph, key=lambda n: (level[n], n)):
            print(f"{level[node]:>3} {node}: {', '.join(sorted(graph[node]))}")


if __name__ == "__main__":
    main()
